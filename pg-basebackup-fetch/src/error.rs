//! The errors of `pg-basebackup-fetch`, and how each maps to the envelope's kind.

use std::io;
use std::path::PathBuf;

use compute_spec::error::{ErrorKind, StageError};

use crate::STAGE;

/// A failure while preparing PGDATA.
#[derive(Debug, thiserror::Error)]
pub enum BasebackupError {
    /// The directory is not ours to wipe.
    #[error(
        "refusing to wipe {path}: it is not empty, has no PG_VERSION and no {marker} marker; \
         check -D, or empty the directory yourself if it really is the compute's data directory"
    )]
    Foreign {
        /// The directory.
        path: PathBuf,
        /// The marker file name.
        marker: &'static str,
    },
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done (`removing`, `creating`, …).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A child process could not start or failed.
    #[error("{command} failed: {detail}")]
    Child {
        /// The command line.
        command: String,
        /// Exit status and stderr, or the spawn error.
        detail: String,
    },
    /// The document is inconsistent.
    #[error("{0}")]
    Document(String),
}

impl BasebackupError {
    /// Shorthand for [`BasebackupError::Io`].
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        BasebackupError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// The envelope kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BasebackupError::Foreign { .. } => ErrorKind::Refused,
            BasebackupError::Io { .. } => ErrorKind::Io,
            BasebackupError::Child { .. } => ErrorKind::Child,
            BasebackupError::Document(_) => ErrorKind::InvalidDocument,
        }
    }
}

impl From<BasebackupError> for StageError {
    fn from(error: BasebackupError) -> StageError {
        StageError::new(STAGE, error.kind(), error.to_string())
    }
}
