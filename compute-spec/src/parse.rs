//! Parsing specs and documents: a bare spec, the `{spec, compute_ctl_config}` envelope, either
//! of them, and any typed JSON with errors naming the field by its JSON path. No I/O here:
//! reading files, stdin and the control plane is the `compute-spec` binary's job.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ErrorKind, StageError};
use crate::spec::{ComputeConfig, ComputeCtlConfig, ComputeSpec};

const STAGE: &str = "compute-spec";

/// The embedded sample spec: no storage (initdb), a few roles and databases.
pub const EMBEDDED_SAMPLE_SPEC: &str = include_str!("sample-spec.json");

/// A loaded spec (none when the control plane has none yet) with its HTTP configuration.
#[derive(Clone, Debug)]
pub struct LoadedSpec {
    /// The spec; `None` means "no spec yet".
    pub spec: Option<ComputeSpec>,
    /// JWT keys and TLS.
    pub compute_ctl_config: ComputeCtlConfig,
    /// Requests made to a control plane.
    pub control_plane_attempts: u32,
    /// Each of them and its answer.
    pub requests: Vec<crate::error::PeerRequest>,
}

/// Decodes JSON text into `T`; a type error names the field by its JSON path
/// (`cluster.roles[0].name: invalid type: integer `5`, expected a string`), a syntax error
/// keeps serde_json's line and column.
pub fn decode<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(describe)?;
    deserializer.end().map_err(|error| error.to_string())?;
    Ok(value)
}

/// As [`decode`], from an already parsed JSON value.
pub fn decode_value<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(describe)
}

fn describe(error: serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = error.path().to_string();
    let inner = error.inner();
    let message = inner.to_string();
    if !inner.is_data() {
        return message;
    }
    // The path says where; the line and column serde_json adds say it less usefully.
    let message = match message.rfind(" at line ") {
        Some(at) if inner.line() > 0 => message[..at].to_string(),
        _ => message,
    };
    if path == "." || path.is_empty() {
        message
    } else {
        format!("{path}: {message}")
    }
}

fn invalid(origin: &str, error: impl std::fmt::Display) -> StageError {
    StageError::new(
        STAGE,
        ErrorKind::InvalidSpec,
        format!("{origin} is not a valid spec: {error}"),
    )
}

/// Parses a bare `ComputeSpec`.
pub fn parse_bare(text: &str, origin: &str) -> Result<LoadedSpec, StageError> {
    let spec: ComputeSpec = decode(text).map_err(|error| invalid(origin, error))?;
    Ok(LoadedSpec {
        spec: Some(spec),
        compute_ctl_config: ComputeCtlConfig::default(),
        control_plane_attempts: 0,
        requests: Vec::new(),
    })
}

/// Parses the `{spec, compute_ctl_config}` envelope.
pub fn parse_envelope(text: &str, origin: &str) -> Result<LoadedSpec, StageError> {
    let config: ComputeConfig = decode(text).map_err(|error| invalid(origin, error))?;
    Ok(LoadedSpec {
        spec: config.spec,
        compute_ctl_config: config.compute_ctl_config,
        control_plane_attempts: 0,
        requests: Vec::new(),
    })
}

/// Parses either form: an object with a `cluster` key is a bare spec, else an envelope.
pub fn parse_any(text: &str, origin: &str) -> Result<LoadedSpec, StageError> {
    let value: Value = serde_json::from_str(text).map_err(|error| invalid(origin, error))?;
    if value.get("cluster").is_some() {
        parse_bare(text, origin)
    } else {
        parse_envelope(text, origin)
    }
}
