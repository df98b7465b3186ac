//! The `spec_load` section, written by `compute-spec`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::open_enum::open_enum;

/// How the spec was obtained.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct SpecLoadSection {
    /// Where the spec came from.
    pub source: SpecLoadSource,
    /// Time spent obtaining the spec.
    pub spec_load_ms: u64,
    /// Requests made to the control plane (0 for other sources).
    #[serde(default)]
    pub control_plane_attempts: u32,
    /// Each request made to the control plane and its answer, in order (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<crate::error::PeerRequest>,
    /// The spans the stage recorded (compute-ctl exports and removes them); absent when it
    /// recorded none (no trace context given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<crate::trace::SpanRecord>,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_enum! {
    /// Where `compute-spec` got the spec from.
    pub enum SpecLoadSource {
        /// `-S/--spec-path`.
        SpecPath = "spec-path",
        /// `-s/--spec`, inline JSON.
        Spec = "spec",
        /// `-c/--config`, a `{spec, compute_ctl_config}` file.
        Config = "config",
        /// Standard input.
        Stdin = "stdin",
        /// The control plane (`--control-plane-uri` and `-i`).
        ControlPlane = "control-plane",
        /// The embedded sample spec.
        Embedded = "embedded",
    }
}
