//! JSON Schemas generated from the types: the compute document, the error envelope and the
//! `pg-supervise` events.
//! The committed copies under `docs/schema/` are checked against these by a test.

use crate::document::ComputeDocument;
use crate::error::ErrorEnvelope;
use crate::event::SuperviseEvent;

/// The JSON Schema of the compute document, pretty-printed.
pub fn document_schema() -> String {
    pretty(schemars::schema_for!(ComputeDocument))
}

/// The JSON Schema of the error envelope, pretty-printed.
pub fn error_schema() -> String {
    pretty(schemars::schema_for!(ErrorEnvelope))
}

/// The JSON Schema of one `pg-supervise` event line, pretty-printed.
pub fn supervise_event_schema() -> String {
    pretty(schemars::schema_for!(SuperviseEvent))
}

fn pretty(schema: schemars::Schema) -> String {
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
