//! The stage's typed errors and how each maps to an error-envelope kind.

use std::path::PathBuf;
use std::time::Duration;

use compute_spec::{ErrorKind, StageError};

use pg_wire::WireError;

/// A failure deciding the start LSN.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// PGDATA could not be created or written.
    #[error("preparing {path} for postgres --sync-safekeepers: {source}")]
    Pgdata {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// PGDATA holds someone else's files and no postgresql.conf to read.
    #[error(
        "{path} holds files compute-tools did not write and no postgresql.conf: empty it or \
         point -D elsewhere"
    )]
    ForeignPgdata {
        /// PGDATA.
        path: PathBuf,
    },
    /// `--after-shutdown` found no postgresql.conf to sync with.
    #[error(
        "{path} does not exist: --after-shutdown syncs with the configuration Postgres ran \
         with; run without it to write one"
    )]
    NoConf {
        /// The missing file.
        path: PathBuf,
    },
    /// The child could not be started.
    #[error("starting {command}: {source}: check -b/--pgbin")]
    Spawn {
        /// The command line.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The child failed.
    #[error("{command} failed ({status}) after {attempts} attempt(s); stdout {stdout:?}; stderr: {stderr}")]
    ChildFailed {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// Attempts made.
        attempts: u32,
        /// Its stdout.
        stdout: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// The child printed something that is not an LSN.
    #[error("{command} printed {stdout:?}, which is not an LSN (X/Y)")]
    BadLsn {
        /// The command line.
        command: String,
        /// Its stdout, trimmed.
        stdout: String,
    },
    /// The child ran past the deadline and was killed.
    #[error(
        "{command} did not finish within {timeout:?} and was killed (safekeepers tried: {}): \
         check that a quorum of them is reachable, or raise --timeout",
        safekeepers.join(", ")
    )]
    Timeout {
        /// The command line.
        command: String,
        /// The time allowed.
        timeout: Duration,
        /// The safekeepers it was syncing.
        safekeepers: Vec<String>,
    },
    /// A signal to the stage was forwarded to the child, which then ended.
    #[error("interrupted by signal {signal}; forwarded it to {command}")]
    Interrupted {
        /// The command line.
        command: String,
        /// The signal number.
        signal: i32,
    },
    /// `upstream_connstring` is not a libpq connection string.
    #[error("upstream_connstring is not a libpq connection string: {message}")]
    UpstreamConnstr {
        /// The parser's complaint.
        message: String,
    },
    /// Talking to the upstream primary failed.
    #[error(
        "IDENTIFY_SYSTEM on the upstream primary: {0}: check upstream_connstring and that the \
         primary's pg_hba.conf allows a replication connection for its user"
    )]
    Upstream(#[source] WireError),
    /// Every connection tried within `--timeout` was refused, cut or silent.
    #[error(
        "IDENTIFY_SYSTEM on the upstream primary: no answer within --timeout {overall:?} \
         ({attempts} connections tried; the last: {last}); check that the primary is up and \
         reachable from here, or raise --timeout"
    )]
    UpstreamGaveUp {
        /// `--timeout`.
        overall: std::time::Duration,
        /// Connections tried.
        attempts: u32,
        /// The last one's failure.
        #[source]
        last: WireError,
    },
    /// The upstream's answer had no usable `xlogpos`.
    #[error("IDENTIFY_SYSTEM on the upstream primary: {0}")]
    UpstreamAnswer(String),
}

impl SyncError {
    /// The envelope kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SyncError::Pgdata { .. } => ErrorKind::Io,
            SyncError::ForeignPgdata { .. } => ErrorKind::Refused,
            SyncError::NoConf { .. } => ErrorKind::Usage,
            SyncError::Spawn { .. }
            | SyncError::ChildFailed { .. }
            | SyncError::BadLsn { .. }
            | SyncError::Interrupted { .. } => ErrorKind::Child,
            SyncError::Timeout { .. } => ErrorKind::Timeout,
            SyncError::UpstreamConnstr { .. } => ErrorKind::InvalidSpec,
            SyncError::Upstream(wire) | SyncError::UpstreamGaveUp { last: wire, .. } => {
                match wire {
                    WireError::Io { .. } => ErrorKind::Network,
                    WireError::Timeout { .. } | WireError::TooSlow { .. } => ErrorKind::Timeout,
                    WireError::Server { code, .. } if code.starts_with("28") => ErrorKind::Auth,
                    WireError::Server { .. }
                    | WireError::Protocol { .. }
                    | WireError::TooLarge { .. }
                    | WireError::Closed { .. } => ErrorKind::Server,
                    WireError::Auth { .. } => ErrorKind::Auth,
                }
            }
            SyncError::UpstreamAnswer(_) => ErrorKind::Server,
        }
    }
}

impl From<SyncError> for StageError {
    fn from(error: SyncError) -> StageError {
        StageError::new(crate::STAGE, error.kind(), error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_wire_errors_keep_their_kinds() {
        let endpoint = || "db:5432".to_string();
        let server = |code: &str| WireError::Server {
            endpoint: endpoint(),
            severity: "FATAL".into(),
            code: code.into(),
            message: "no".into(),
        };
        let cases = [
            (
                WireError::Io {
                    endpoint: endpoint(),
                    action: "connecting",
                    source: std::io::ErrorKind::ConnectionRefused.into(),
                },
                ErrorKind::Network,
            ),
            (
                WireError::Timeout {
                    endpoint: endpoint(),
                    timeout: Duration::from_secs(1),
                },
                ErrorKind::Timeout,
            ),
            (
                WireError::Closed {
                    endpoint: endpoint(),
                },
                ErrorKind::Server,
            ),
            (
                WireError::Auth {
                    endpoint: endpoint(),
                    message: "no password".into(),
                },
                ErrorKind::Auth,
            ),
            (server("28P01"), ErrorKind::Auth),
            (server("XX000"), ErrorKind::Server),
            (
                WireError::TooLarge {
                    endpoint: endpoint(),
                    limit: pg_wire::AnswerLimit::ONE_ROW,
                },
                ErrorKind::Server,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(SyncError::Upstream(error).kind(), kind);
        }
    }

    #[test]
    fn giving_up_at_the_deadline_names_it_and_keeps_the_last_failures_kind() {
        let gave_up = SyncError::UpstreamGaveUp {
            overall: Duration::from_secs(3),
            attempts: 2,
            last: WireError::Timeout {
                endpoint: "10.0.0.2:5432".into(),
                timeout: Duration::from_secs(1),
            },
        };
        assert_eq!(gave_up.kind(), ErrorKind::Timeout);
        let message = gave_up.to_string();
        assert!(message.contains("--timeout 3s"), "{message}");
        assert!(message.contains("2 connections tried"), "{message}");
        assert!(message.contains("10.0.0.2:5432"), "{message}");
        assert!(!message.contains("pg_hba"), "{message}");
    }
}
