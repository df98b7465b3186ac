//! What can fail in a prewarm or an offload. The text of an [`Error`] is the `error` of a
//! failed state (`{"status":"failed","error":…}`), worded as upstream's where upstream has
//! the case; [`Error::kind`] is the error envelope's kind when the binary fails.

use std::path::PathBuf;

use compute_spec::ErrorKind;

/// What failed, and the message naming it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The compute has no document, or its document no spec.
    #[error("the compute has no spec yet")]
    NoSpec,
    /// The spec lacks what endpoint storage needs; each missing field is named.
    #[error("the spec lacks what endpoint storage needs: {}", missing.join(", "))]
    StorageSettings {
        /// The missing fields, each with the settings that may stand in for it.
        missing: Vec<&'static str>,
    },
    /// A value that names a part of the endpoint-storage path cannot be one path segment
    /// (`.`, `..`, empty).
    #[error("{field} {value:?} cannot name a part of an endpoint-storage path: {why}")]
    StoragePath {
        /// Which value (`from_endpoint`, `endpoint_id`, `tenant_id`, `timeline_id`).
        field: &'static str,
        /// The value.
        value: String,
        /// Why not.
        why: String,
    },
    /// Endpoint storage could not be reached, or the transfer broke off.
    #[error("{0}")]
    StorageUnreachable(String),
    /// Endpoint storage answered with an error status.
    #[error("{0}")]
    StorageRefused(String),
    /// The state is not one this compute can load: not zstd, too large, not a block list, or
    /// another compute's format.
    #[error("{}{message}", file.as_ref().map(|file| format!("the state file {}: ", file.display())).unwrap_or_default())]
    BadState {
        /// The file it was read from (none: endpoint storage).
        file: Option<PathBuf>,
        /// What is wrong with it.
        message: String,
    },
    /// A state file could not be read or written.
    #[error("{action} the state file {}: {error}", path.display())]
    File {
        /// `reading` or `writing`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The system's error.
        error: String,
    },
    /// The document's `connstr` cannot be used.
    #[error("{0}")]
    Connstr(String),
    /// The compute's Postgres refused a connection or a statement (the message names which).
    #[error("{0}")]
    Postgres(String),
    /// A thread could not start, or a state could not be encoded.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The error envelope's kind: bad input (the document, the spec, a state file) exits 2,
    /// everything else 1.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NoSpec | Error::Connstr(_) => ErrorKind::InvalidDocument,
            Error::StorageSettings { .. } | Error::StoragePath { .. } => ErrorKind::InvalidSpec,
            Error::StorageUnreachable(_) => ErrorKind::Network,
            Error::StorageRefused(_) | Error::BadState { file: None, .. } => ErrorKind::Server,
            Error::BadState { file: Some(_), .. } => ErrorKind::Usage,
            Error::File { .. } => ErrorKind::Io,
            Error::Postgres(_) => ErrorKind::Postgres,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_and_kinds() {
        let missing = Error::StorageSettings {
            missing: vec!["tenant_id", "timeline_id"],
        };
        assert_eq!(
            missing.to_string(),
            "the spec lacks what endpoint storage needs: tenant_id, timeline_id"
        );
        assert_eq!(missing.kind().exit_code(), compute_spec::exit_code::USAGE);
        let stored = Error::BadState {
            file: None,
            message: "decompressing the state: x".into(),
        };
        assert_eq!(stored.to_string(), "decompressing the state: x");
        assert_eq!(stored.kind().exit_code(), compute_spec::exit_code::RUNTIME);
        let file = Error::BadState {
            file: Some("/tmp/s.zst".into()),
            message: "decompressing the state: x".into(),
        };
        assert_eq!(
            file.to_string(),
            "the state file /tmp/s.zst: decompressing the state: x"
        );
        assert_eq!(file.kind(), ErrorKind::Usage);
        assert!(Error::StorageUnreachable("x".into()).kind().is_retryable());
    }
}
