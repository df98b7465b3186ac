//! JSON Schemas generated from the types: the compute document and the error envelope.
//! The committed copies under `docs/schema/` are checked against these by a test.

use crate::document::ComputeDocument;
use crate::error::ErrorEnvelope;

/// The JSON Schema of the compute document, pretty-printed.
pub fn document_schema() -> String {
    pretty(schemars::schema_for!(ComputeDocument))
}

/// The JSON Schema of the error envelope, pretty-printed.
pub fn error_schema() -> String {
    pretty(schemars::schema_for!(ErrorEnvelope))
}

fn pretty(schema: schemars::Schema) -> String {
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
