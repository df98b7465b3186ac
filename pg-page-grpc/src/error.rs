//! What can go wrong talking to a pageserver over gRPC, and what each failure means for a
//! caller deciding whether to try again: an answer the server gave (a gRPC status it sent)
//! is told apart from a connection that broke (a status tonic made from a transport error).

use std::time::Duration;

use tonic::Code;

/// A failed gRPC call; every variant names the pageserver (`host:port`, never the URL's user
/// part, nor the token).
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// The request cannot be made as the inputs say (a token that is not visible ASCII, an
    /// endpoint the HTTP/2 client refuses): nothing was sent. Final.
    #[error("pageserver {server}: {detail}")]
    Invalid {
        /// The pageserver.
        server: String,
        /// What is wrong.
        detail: String,
    },
    /// The TCP connection or the HTTP/2 handshake failed (refused, reset, unreachable).
    #[error("pageserver {server}: connecting: {detail}")]
    Connect {
        /// The pageserver.
        server: String,
        /// The cause.
        detail: String,
    },
    /// The server said nothing for the time allowed.
    #[error(
        "pageserver {server}: the server said nothing for {timeout:?} ({what}); check that it \
         is up and not overloaded, or allow more time"
    )]
    Timeout {
        /// The pageserver.
        server: String,
        /// What was awaited (`connecting`, `the answer`, `the next chunk`).
        what: &'static str,
        /// The time allowed.
        timeout: Duration,
    },
    /// The connection broke in the middle of a call (tonic's status carries the transport
    /// error as its source: no status came from the server).
    #[error("pageserver {server}: the connection broke: {detail}")]
    Transport {
        /// The pageserver.
        server: String,
        /// The transport error.
        detail: String,
    },
    /// The server answered with a gRPC status other than OK.
    #[error("pageserver {server} answered {}: {message}", code_name(*.code))]
    Status {
        /// The pageserver.
        server: String,
        /// The status code.
        code: Code,
        /// The server's message.
        message: String,
    },
    /// A stream brought less than its minimum rate: a peer trickling bytes just inside the
    /// idle deadline.
    #[error(
        "pageserver {server}: the stream brought only {received} bytes in {window:?}, less than \
         the {minimum} required (a stalled or throttled stream); check the server and the network"
    )]
    TooSlow {
        /// The pageserver.
        server: String,
        /// Bytes received in the window.
        received: u64,
        /// The window.
        window: Duration,
        /// The least required in it.
        minimum: u64,
    },
    /// An OK answer that is not one the protocol allows (a lease without its expiry).
    #[error("pageserver {server}: {detail}")]
    Answer {
        /// The pageserver.
        server: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl GrpcError {
    /// The error for a status met while talking to `server`: the server's answer when it sent
    /// it, a broken connection when tonic made it from a transport error.
    pub fn from_status(server: &str, status: tonic::Status) -> GrpcError {
        let server = server.to_string();
        if let Some(source) = std::error::Error::source(&status) {
            let mut detail = status.message().to_string();
            let mut cause = Some(source);
            while let Some(error) = cause {
                let text = error.to_string();
                if !detail.contains(&text) {
                    detail.push_str(": ");
                    detail.push_str(&text);
                }
                cause = error.source();
            }
            return GrpcError::Transport { server, detail };
        }
        GrpcError::Status {
            server,
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    /// The pageserver refused the credentials: `UNAUTHENTICATED` (no token),
    /// `PERMISSION_DENIED` (not valid for the tenant), or the `INVALID_ARGUMENT` it answers
    /// for a token it cannot decode or a malformed `authorization` header. Final.
    pub fn is_auth(&self) -> bool {
        match self {
            GrpcError::Status { code, message, .. } => match code {
                Code::Unauthenticated | Code::PermissionDenied => true,
                Code::InvalidArgument => {
                    message.contains("authorization") || message.contains("JWT")
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether another attempt may succeed: a connection refused, cut or silent, a stream too
    /// slow, or a status the server sends for a passing state (`UNAVAILABLE`: shutting down
    /// or the tenant not active yet; `CANCELLED`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`,
    /// `ABORTED`, `UNKNOWN`). Any other status is the server's considered answer (an unknown
    /// timeline, a bad LSN, its own failure): final, as a libpq error message is.
    pub fn is_transient(&self) -> bool {
        match self {
            GrpcError::Connect { .. }
            | GrpcError::Timeout { .. }
            | GrpcError::Transport { .. }
            | GrpcError::TooSlow { .. } => true,
            GrpcError::Invalid { .. } | GrpcError::Answer { .. } => false,
            GrpcError::Status { code, .. } => matches!(
                code,
                Code::Unavailable
                    | Code::Cancelled
                    | Code::DeadlineExceeded
                    | Code::ResourceExhausted
                    | Code::Aborted
                    | Code::Unknown
            ),
        }
    }

    /// The pageserver, `host:port`.
    pub fn server(&self) -> &str {
        match self {
            GrpcError::Invalid { server, .. }
            | GrpcError::Connect { server, .. }
            | GrpcError::Timeout { server, .. }
            | GrpcError::Transport { server, .. }
            | GrpcError::Status { server, .. }
            | GrpcError::TooSlow { server, .. }
            | GrpcError::Answer { server, .. } => server,
        }
    }

    /// What happened, without the server's name: a status as `CODE: message`, anything
    /// else as its message.
    pub fn detail(&self) -> String {
        if let GrpcError::Status { code, message, .. } = self {
            return format!("{}: {message}", code_name(*code));
        }
        let text = self.to_string();
        let prefix = format!("pageserver {}: ", self.server());
        match text.strip_prefix(&prefix) {
            Some(rest) => rest.to_string(),
            None => text,
        }
    }

    /// The status code the server answered, if it did.
    pub fn code(&self) -> Option<Code> {
        match self {
            GrpcError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A status code as gRPC names it (`NOT_FOUND`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(code: Code, message: &str) -> GrpcError {
        GrpcError::from_status("ps:1", tonic::Status::new(code, message))
    }

    #[test]
    fn answers_and_broken_connections_are_told_apart() {
        let answer = answered(Code::Unknown, "boom");
        assert!(matches!(answer, GrpcError::Status { .. }), "{answer:?}");
        let broken = tonic::Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset by peer",
        )));
        let broken = GrpcError::from_status("ps:1", broken);
        assert!(matches!(broken, GrpcError::Transport { .. }), "{broken:?}");
        assert!(broken.to_string().contains("reset by peer"), "{broken}");
        assert_eq!(broken.server(), "ps:1");
        assert!(
            broken.detail().starts_with("the connection broke: "),
            "{broken}"
        );
        assert_eq!(answer.detail(), "UNKNOWN: boom");
        assert!(broken.is_transient());
    }

    #[test]
    fn auth_refusals_are_final_and_passing_states_are_retried() {
        for (code, message, auth, transient) in [
            (
                Code::Unauthenticated,
                "no authorization header",
                true,
                false,
            ),
            (Code::PermissionDenied, "tenant mismatch", true, false),
            (Code::InvalidArgument, "invalid JWT token: bad", true, false),
            (Code::InvalidArgument, "missing neon-shard-id", false, false),
            (Code::NotFound, "timeline not found", false, false),
            (Code::Internal, "basebackup failed", false, false),
            (
                Code::FailedPrecondition,
                "below the GC cutoff",
                false,
                false,
            ),
            (Code::Unavailable, "shutting down", false, true),
            (Code::ResourceExhausted, "slow down", false, true),
        ] {
            let error = answered(code, message);
            assert_eq!(error.is_auth(), auth, "{error}");
            assert_eq!(error.is_transient(), transient, "{error}");
            assert!(error.to_string().contains(code_name(code)), "{error}");
        }
    }
}
