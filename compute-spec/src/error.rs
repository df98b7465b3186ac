//! The error envelope every stage writes on failure, its kinds, and the exit codes.
//!
//! On failure a stage writes `{"error": {"stage", "kind", "message", "retryable"}}` on stdout,
//! a readable line on stderr, and exits with [`ErrorKind::exit_code`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The exit codes, also at `compute_spec::exit_code`.
pub use crate::exit_code;

/// What kind of failure a stage had. Adding a kind forces a decision on its exit code and on
/// whether it is retryable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Flags or arguments are wrong.
    Usage,
    /// The spec is malformed or fails validation.
    InvalidSpec,
    /// The document on stdin is not a compute document.
    InvalidDocument,
    /// A file or directory operation failed.
    Io,
    /// A refused operation that would destroy data (e.g. wiping a foreign directory).
    Refused,
    /// Could not reach a server.
    Network,
    /// A server answered with an error.
    Server,
    /// Authentication was rejected.
    Auth,
    /// Postgres or SQL failed.
    Postgres,
    /// A child process failed.
    Child,
    /// Something took too long.
    Timeout,
    /// An earlier stage failed; its error is passed through.
    UpstreamStage,
    /// A bug.
    Internal,
}

impl ErrorKind {
    /// The process exit code for this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Usage | ErrorKind::InvalidSpec | ErrorKind::InvalidDocument => {
                exit_code::USAGE
            }
            ErrorKind::Io
            | ErrorKind::Refused
            | ErrorKind::Network
            | ErrorKind::Server
            | ErrorKind::Auth
            | ErrorKind::Postgres
            | ErrorKind::Child
            | ErrorKind::Timeout
            | ErrorKind::UpstreamStage
            | ErrorKind::Internal => exit_code::RUNTIME,
        }
    }

    /// Whether running the same stage again may succeed.
    pub fn is_retryable(self) -> bool {
        match self {
            ErrorKind::Network | ErrorKind::Timeout => true,
            ErrorKind::Usage
            | ErrorKind::InvalidSpec
            | ErrorKind::InvalidDocument
            | ErrorKind::Io
            | ErrorKind::Refused
            | ErrorKind::Server
            | ErrorKind::Auth
            | ErrorKind::Postgres
            | ErrorKind::Child
            | ErrorKind::UpstreamStage
            | ErrorKind::Internal => false,
        }
    }
}

/// A stage's failure, as written in the envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[error("{stage}: {message}")]
pub struct StageError {
    /// The stage that failed (`compute-spec`, `pg-basebackup-fetch`, …).
    pub stage: String,
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What failed and what to do; never contains a secret.
    pub message: String,
    /// Whether running the stage again may succeed.
    pub retryable: bool,
    /// The requests the stage made to its peers before it failed (e.g. `compute-spec`'s to
    /// the control plane), for the caller's metrics; absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<PeerRequest>,
    /// The spans the stage recorded before it failed, for the caller to export; absent when
    /// none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<crate::trace::SpanRecord>,
}

/// One request a stage made to a peer, as a metric counts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PeerRequest {
    /// What was asked, by upstream's name (`GetConfig`: the spec from the control plane).
    pub rpc: String,
    /// The HTTP status with its reason phrase (`200 OK`), or `unknown` when no answer came.
    pub http_status: String,
}

impl StageError {
    /// An error of `kind` from `stage`, retryable as the kind says.
    pub fn new(stage: &str, kind: ErrorKind, message: impl Into<String>) -> StageError {
        StageError {
            stage: stage.to_string(),
            kind,
            message: message.into(),
            retryable: kind.is_retryable(),
            requests: Vec::new(),
            spans: Vec::new(),
        }
    }

    /// The exit code for this error.
    pub fn exit_code(&self) -> u8 {
        self.kind.exit_code()
    }
}

/// `{"error": {...}}`: what a failed stage writes on stdout.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ErrorEnvelope {
    /// The failure.
    pub error: StageError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_shape() {
        let envelope = ErrorEnvelope {
            error: StageError::new("compute-spec", ErrorKind::InvalidSpec, "cluster: missing"),
        };
        let json = serde_json::to_value(&envelope).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {
                "stage": "compute-spec", "kind": "invalid_spec",
                "message": "cluster: missing", "retryable": false
            }})
        );
        assert_eq!(envelope.error.exit_code(), exit_code::USAGE);
        assert!(StageError::new("x", ErrorKind::Network, "").retryable);
    }
}
