//! The errors of `pg-basebackup-fetch`, and how each maps to the envelope's kind and to
//! "retry or not".

use std::io;
use std::path::PathBuf;

use compute_spec::error::{ErrorKind, StageError};
use pg_wire::WireError;

use crate::STAGE;

/// A failure while preparing PGDATA.
#[derive(Debug, thiserror::Error)]
pub enum BasebackupError {
    /// A live Postgres runs on the directory.
    #[error(
        "refusing to wipe {path}: {detail}; nothing was deleted. Stop that Postgres (and the \
         compute that runs it) first, or give this compute its own -D"
    )]
    Live {
        /// The directory.
        path: PathBuf,
        /// Which process, and how it was recognised.
        detail: String,
    },
    /// The directory is not ours to wipe.
    #[error(
        "refusing to wipe {path}: {why}; nothing was deleted. Check -D, or move those entries \
         away (or empty the directory yourself) if it really is the compute's data directory"
    )]
    Foreign {
        /// The directory.
        path: PathBuf,
        /// Why it is not ours: the foreign entries, or what is missing.
        why: String,
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
    /// The document or spec cannot be used as it is.
    #[error("{0}")]
    Document(String),
    /// The server could not be reached, or the stream broke off (retryable).
    #[error("{server}: {detail}")]
    Network {
        /// Which server (`pageserver host:port`, `primary …`).
        server: String,
        /// What happened.
        detail: String,
    },
    /// The server rejected our credentials (not retried).
    #[error("{server} rejected the credentials: {message}; check the token or password")]
    Auth {
        /// Which server.
        server: String,
        /// The server's message.
        message: String,
    },
    /// The server answered with an error (not retried).
    #[error("{server} answered with an error: {message}")]
    Server {
        /// Which server.
        server: String,
        /// The server's message (with its SQLSTATE).
        message: String,
    },
    /// A retryable failure, given up on: retries used up, or no progress for
    /// `--no-progress-timeout` (`why`); its kind is the last failure's.
    #[error("{last}; gave up after {attempts} attempts ({why})")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Why no more are made.
        why: String,
        /// The last attempt's failure (it names the server).
        last: Box<BasebackupError>,
    },
    /// The server sent an archive that is not one: corrupt gzip or tar, a header no archive
    /// can hold, or data ending before the archive does (the copy itself ended properly).
    /// Not retried: the server would send the same bytes again.
    #[error(
        "{server} sent a corrupt basebackup archive: {detail}; not retried (the same archive \
         would come again): check the server and its log"
    )]
    Corrupt {
        /// Which server.
        server: String,
        /// What is wrong with the archive.
        detail: String,
    },
    /// The archive holds an entry this tool refuses to write.
    #[error("refusing basebackup entry {entry:?}: {why}; nothing outside PGDATA was written")]
    UnsafeEntry {
        /// The entry's name as the archive gives it.
        entry: String,
        /// Why it is refused.
        why: &'static str,
    },
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
            BasebackupError::Foreign { .. }
            | BasebackupError::Live { .. }
            | BasebackupError::UnsafeEntry { .. } => ErrorKind::Refused,
            BasebackupError::Io { .. } => ErrorKind::Io,
            BasebackupError::Child { .. } => ErrorKind::Child,
            BasebackupError::Document(_) => ErrorKind::InvalidSpec,
            BasebackupError::Network { .. } => ErrorKind::Network,
            BasebackupError::Auth { .. } => ErrorKind::Auth,
            BasebackupError::Server { .. } | BasebackupError::Corrupt { .. } => ErrorKind::Server,
            BasebackupError::GaveUp { last, .. } => last.kind(),
        }
    }

    /// Whether another attempt may succeed (connection refused or reset, stream cut).
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }
}

impl From<BasebackupError> for StageError {
    fn from(error: BasebackupError) -> StageError {
        StageError::new(STAGE, error.kind(), error.to_string())
    }
}

/// An error message a server sent (`ErrorResponse`), carried through `io::Read` as the
/// source of an `io::Error` so the unpacker's caller can classify it.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{severity} {code}: {message}")]
pub struct ServerMessage {
    /// Severity (`ERROR`, `FATAL`).
    pub severity: String,
    /// SQLSTATE.
    pub code: String,
    /// Primary message.
    pub message: String,
}

impl ServerMessage {
    /// Whether the SQLSTATE says authentication failed (`28000`, `28P01`).
    pub fn is_auth(&self) -> bool {
        self.code.starts_with("28")
    }

    /// Turns the message into the error for `server`.
    pub fn into_error(self, server: &str) -> BasebackupError {
        let server = server.to_string();
        let message = self.to_string();
        match self.is_auth() {
            true => BasebackupError::Auth { server, message },
            false => BasebackupError::Server { server, message },
        }
    }
}

/// Classifies an error met while reading a basebackup stream from `server`: a server's
/// error message is final (auth or not); a broken connection (a [`WireError`] in the chain)
/// is classified by [`classify_wire`] (a cut or a silence is worth retrying); anything else
/// came from decoding what the server sent — a corrupt archive, final.
pub fn classify_read(server: &str, error: io::Error) -> BasebackupError {
    if let Some(message) = find::<ServerMessage>(&error) {
        return message.clone().into_error(server);
    }
    if let Some(error) = find::<WireError>(&error) {
        return classify_wire(server, error);
    }
    if let Some(error) = find::<postgres::Error>(&error) {
        return classify_client(server, error);
    }
    BasebackupError::Corrupt {
        server: server.to_string(),
        detail: error_chain(&error),
    }
}

/// Classifies an error of the replication client: a server's error message is final (auth
/// or not), as are failed authentication and a protocol violation; a refused, cut or silent
/// connection is a network error worth retrying.
pub fn classify_wire(server: &str, error: &WireError) -> BasebackupError {
    let server = server.to_string();
    match error {
        WireError::Server {
            severity,
            code,
            message,
            ..
        } => ServerMessage {
            severity: severity.clone(),
            code: code.clone(),
            message: message.clone(),
        }
        .into_error(&server),
        WireError::Auth { message, .. } => BasebackupError::Auth {
            server,
            message: message.clone(),
        },
        WireError::Protocol { message, .. } => BasebackupError::Server {
            server,
            message: format!("protocol violation: {message}"),
        },
        WireError::TooLarge { limit, .. } => BasebackupError::Server {
            server,
            message: format!(
                "the answer is larger than the {} rows and {} bytes allowed for it",
                limit.rows, limit.bytes
            ),
        },
        WireError::Io { action, source, .. } => BasebackupError::Network {
            server,
            detail: format!("{action}: {source}"),
        },
        WireError::Timeout { timeout, .. } => BasebackupError::Network {
            server,
            detail: format!(
                "the server said nothing for {timeout:?}; check that it is up and not \
                 overloaded, or allow more with --startup-timeout / --idle-timeout"
            ),
        },
        WireError::Closed { .. } => BasebackupError::Network {
            server,
            detail: "the server closed the connection".to_string(),
        },
        WireError::TooSlow {
            received,
            window,
            minimum,
            ..
        } => BasebackupError::Network {
            server,
            detail: format!(
                "the stream brought only {received} bytes in {window:?}, less than the \
                 {minimum} required (a stalled or throttled stream); check the server and \
                 the network, or lower --min-rate-bytes / raise --min-rate-window"
            ),
        },
    }
}

/// Classifies a `postgres` client error: a server error (auth or not) is final; anything
/// else (refused, reset, closed) is a network error worth retrying.
pub fn classify_client(server: &str, error: &postgres::Error) -> BasebackupError {
    if let Some(db) = error.as_db_error() {
        return ServerMessage {
            severity: db.severity().to_string(),
            code: db.code().code().to_string(),
            message: db.message().to_string(),
        }
        .into_error(server);
    }
    BasebackupError::Network {
        server: server.to_string(),
        detail: error_chain(error),
    }
}

/// Finds a `T` in the chain of `error`, looking inside `io::Error` wrappers too.
pub(crate) fn find<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        let inner = error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref);
        current = match inner {
            Some(inner) => Some(inner),
            None => error.source(),
        };
    }
    None
}

/// The error and its causes on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> WireError {
        WireError::Server {
            endpoint: "/run/.s.PGSQL.5432".into(),
            severity: "FATAL".into(),
            code: code.into(),
            message: "no".into(),
        }
    }

    #[test]
    fn wire_errors_keep_their_kinds() {
        let refused = WireError::Io {
            endpoint: "db:5432".into(),
            action: "connecting",
            source: io::ErrorKind::ConnectionRefused.into(),
        };
        let timeout = WireError::Timeout {
            endpoint: "db:5432".into(),
            timeout: std::time::Duration::from_secs(1),
        };
        let closed = WireError::Closed {
            endpoint: "db:5432".into(),
        };
        let no_password = WireError::Auth {
            endpoint: "db:5432".into(),
            message: "no password".into(),
        };
        let flood = WireError::TooLarge {
            endpoint: "db:5432".into(),
            limit: pg_wire::AnswerLimit::ONE_ROW,
        };
        for (error, kind) in [
            (refused, ErrorKind::Network),
            (timeout, ErrorKind::Network),
            (closed, ErrorKind::Network),
            (no_password, ErrorKind::Auth),
            (flood, ErrorKind::Server),
            (server("28P01"), ErrorKind::Auth),
            (server("58P01"), ErrorKind::Server),
        ] {
            assert_eq!(classify_wire("primary x", &error).kind(), kind, "{error:?}");
        }
    }

    #[test]
    fn giving_up_keeps_the_last_failures_kind_and_text() {
        let last = classify_wire("pageserver ps:6400", &server("XX000"));
        let gave_up = BasebackupError::GaveUp {
            attempts: 3,
            why: "--retries 2 used up".into(),
            last: Box::new(last),
        };
        assert_eq!(gave_up.kind(), ErrorKind::Server);
        let text = gave_up.to_string();
        assert!(text.starts_with("pageserver ps:6400 answered"), "{text}");
        assert!(
            text.ends_with("gave up after 3 attempts (--retries 2 used up)"),
            "{text}"
        );
    }

    #[test]
    fn a_wire_error_read_through_the_archive_is_classified() {
        let error = io::Error::other(server("28000"));
        let classified = classify_read("primary x", error);
        assert_eq!(classified.kind(), ErrorKind::Auth);
        assert!(
            classified.to_string().contains("FATAL 28000: no"),
            "{classified}"
        );
        // Through the decoders' wrappers, a cut connection is still a network error...
        let closed = WireError::Closed {
            endpoint: "db:5432".into(),
        };
        let wrapped = io::Error::other(io::Error::other(closed));
        assert_eq!(
            classify_read("primary x", wrapped).kind(),
            ErrorKind::Network
        );
        // ...while bytes that do not decode, or end early, are a corrupt archive: final.
        let cut = io::Error::new(io::ErrorKind::UnexpectedEof, "the stream ended");
        let corrupt = classify_read("primary x", cut);
        assert_eq!(corrupt.kind(), ErrorKind::Server);
        assert!(!corrupt.is_retryable());
        assert!(
            corrupt.to_string().starts_with("primary x sent a corrupt"),
            "{corrupt}"
        );
    }
}
