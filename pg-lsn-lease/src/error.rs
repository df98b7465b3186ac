//! What can fail in a lease attempt. The text of an [`Error`] is the keeper's `last_error`
//! and the binary's envelope message; [`Error::kind`] is the envelope's kind. Every error
//! about a pageserver names its shard and (once known) the server's endpoint, never the
//! connection string, which may hold a password.

use compute_spec::ids::Lsn;
use compute_spec::ErrorKind;
use pg_wire::WireError;

/// Why an attempt leased nothing (or not everything).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The compute has no spec (yet).
    #[error("the compute has no spec")]
    NoSpec,
    /// The spec says no LSN to lease: it is not Static and no LSN was given.
    #[error("spec.mode is {mode}, not Static: give the LSN to lease (--lsn)")]
    NotStatic {
        /// The spec's mode (`primary`, `replica`).
        mode: &'static str,
    },
    /// The spec names no pageserver that can be asked; the message names the field.
    #[error("{0}")]
    Spec(String),
    /// One pageserver could not be asked, or answered something that is not a lease.
    #[error("{tenant_shard_id}: {failure}")]
    Pageserver {
        /// The shard asked.
        tenant_shard_id: String,
        /// What failed.
        failure: Failure,
    },
    /// A pageserver refused the lease (NULL): the LSN is below its GC cutoff. Renewing
    /// cannot help.
    #[error(
        "the pageserver {server} refused to lease {lsn} on {tenant_shard_id} (below its GC cutoff)"
    )]
    Refused {
        /// The pageserver's endpoint.
        server: String,
        /// The LSN.
        lsn: Lsn,
        /// The shard.
        tenant_shard_id: String,
    },
    /// The attempt was stopped before it asked any pageserver.
    #[error("no pageserver was asked")]
    Stopped,
}

/// How one `lease lsn` request failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The connection string the spec lists does not parse.
    #[error("a pageserver connection string does not parse: {0}")]
    Connstr(String),
    /// Connecting or authenticating failed (the error names the server).
    #[error("connecting to pageserver: {0}")]
    Connect(Box<WireError>),
    /// The request failed or timed out (the error names the server).
    #[error("lease lsn on pageserver: {0}")]
    Request(Box<WireError>),
    /// The answer is not a lease: the message names the server and what it sent.
    #[error("{0}")]
    Answer(String),
    /// The gRPC request failed (the error names the server).
    #[error("LeaseLsn on {0}")]
    Grpc(Box<pg_page_grpc::GrpcError>),
}

impl Error {
    /// The error envelope's kind: the spec or the flags exit 2, everything else 1.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NoSpec | Error::Spec(_) => ErrorKind::InvalidSpec,
            Error::NotStatic { .. } => ErrorKind::Usage,
            Error::Pageserver { failure, .. } => failure.kind(),
            Error::Refused { .. } => ErrorKind::Server,
            Error::Stopped => ErrorKind::Internal,
        }
    }

    /// Whether a pageserver refused: no later attempt can succeed.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Error::Refused { .. })
    }
}

impl Failure {
    /// The error envelope's kind of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Failure::Connstr(_) => ErrorKind::InvalidSpec,
            Failure::Connect(error) | Failure::Request(error) => wire_kind(error),
            Failure::Answer(_) => ErrorKind::Server,
            Failure::Grpc(error) => grpc_kind(error),
        }
    }
}

/// The kind of a gRPC client's error.
fn grpc_kind(error: &pg_page_grpc::GrpcError) -> ErrorKind {
    use pg_page_grpc::GrpcError;
    if error.is_auth() {
        return ErrorKind::Auth;
    }
    match error {
        GrpcError::Timeout { .. } | GrpcError::TooSlow { .. } => ErrorKind::Timeout,
        GrpcError::Connect { .. } | GrpcError::Transport { .. } => ErrorKind::Network,
        GrpcError::Invalid { .. } => ErrorKind::InvalidSpec,
        GrpcError::Status { .. } if error.is_transient() => ErrorKind::Network,
        GrpcError::Status { .. } | GrpcError::Answer { .. } => ErrorKind::Server,
    }
}

/// The kind of a wire client's error.
fn wire_kind(error: &WireError) -> ErrorKind {
    if error.is_auth() {
        return ErrorKind::Auth;
    }
    match error {
        WireError::Timeout { .. } | WireError::TooSlow { .. } => ErrorKind::Timeout,
        WireError::Io { .. } | WireError::Closed { .. } => ErrorKind::Network,
        WireError::Server { .. }
        | WireError::Auth { .. }
        | WireError::Protocol { .. }
        | WireError::TooLarge { .. } => ErrorKind::Server,
    }
}
