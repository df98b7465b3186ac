//! The `spec_load` section, written by `compute-spec`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How the spec was obtained.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct SpecLoadSection {
    /// `spec-path`, `spec`, `config`, `stdin`, `control-plane` or `embedded`.
    pub source: String,
    /// Time spent obtaining the spec.
    pub spec_load_ms: u64,
    /// Requests made to the control plane (0 for other sources).
    #[serde(default)]
    pub control_plane_attempts: u32,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
