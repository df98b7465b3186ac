//! What can stop a promotion. The text of an [`Error`] is the `error` of a failed
//! promotion (`{"status":"failed","error":…}`), worded as upstream's where upstream has the
//! case; [`Error::kind`] is the error envelope's kind when the binary fails.

use compute_spec::spec::ComputeMode;
use compute_spec::validate::SpecErrors;
use compute_spec::ErrorKind;

/// The new spec failed validation: the request is refused before anything runs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid spec: {0}")]
pub struct InvalidSpec(pub SpecErrors);

/// What failed, and the message naming it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The compute has no document, or its document no spec.
    #[error("the compute has no spec yet: nothing to promote")]
    NoSpec,
    /// Step 1: the compute is not a replica.
    #[error("compute mode \"{}\" is not replica", mode_name(*.0))]
    NotReplica(ComputeMode),
    /// Step 2: a Neon replica whose prewarm has not started.
    #[error("compute NotPrewarmed")]
    NotPrewarmed,
    /// Step 2: a Neon replica whose prewarm is still running.
    #[error("compute Prewarming")]
    Prewarming,
    /// The compute is not running (its status's name).
    #[error("the compute is {0}, not running: only a running replica is promoted")]
    NotRunning(String),
    /// The new spec is not a Primary one.
    #[error("spec.mode: the new spec must be Primary, not \"{}\"", mode_name(*.0))]
    NewSpecNotPrimary(ComputeMode),
    /// The new spec of a Neon compute names no safekeepers.
    #[error("spec.safekeeper_connstrings: a promoted Neon compute needs its safekeepers")]
    NoSafekeepers,
    /// A Neon replica's promotion needs the LSN to wait for.
    #[error("wal_flush_lsn is required to promote a Neon replica")]
    LsnRequired,
    /// The document's `connstr` cannot be used.
    #[error("{0}")]
    Connstr(String),
    /// The replica's `upstream_connstring` does not parse.
    #[error("upstream_connstring does not parse: {0}")]
    UpstreamConnstr(String),
    /// The vanilla primary could not be reached.
    #[error("connecting to the primary (upstream_connstring): {0}")]
    PrimaryUnreachable(String),
    /// The vanilla primary refused a query or answered nonsense (the message names which).
    #[error("{0}")]
    Primary(String),
    /// The compute's own Postgres refused a connection or a statement (the message names
    /// which).
    #[error("{0}")]
    Postgres(String),
    /// The compute's Postgres is not in recovery: there is no replica to promote (beyond
    /// upstream, which waits for replay in vain).
    #[error(
        "the compute's postgres is not in recovery (pg_is_in_recovery() is false): it is a \
         primary already, nothing to promote"
    )]
    NotInRecovery,
    /// Step 3: replay did not reach the target in time (the number of retries).
    #[error("didn't catch up with primary in {0} retries")]
    CatchUp(u32),
    /// Step 5: `pg_promote()` returned false (its wait, in seconds).
    #[error("pg_promote() returned false: the server did not leave recovery within {0} s")]
    NotPromoted(i32),
    /// Step 6: the server still refuses writes.
    #[error("the compute is still read-only after pg_promote()")]
    ReadOnly,
    /// Step 7: promoted, but the reconfiguration as primary failed.
    #[error("promoted, but {0}")]
    Reconfigure(String),
}

impl Error {
    /// The error envelope's kind: bad input (the document, the new spec, a compute that is
    /// not a running replica) exits 2, everything else 1.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NoSpec | Error::Connstr(_) => ErrorKind::InvalidDocument,
            Error::NotReplica(_)
            | Error::NewSpecNotPrimary(_)
            | Error::NoSafekeepers
            | Error::UpstreamConnstr(_) => ErrorKind::InvalidSpec,
            Error::NotPrewarmed
            | Error::Prewarming
            | Error::NotRunning(_)
            | Error::LsnRequired
            | Error::NotInRecovery => ErrorKind::Usage,
            Error::PrimaryUnreachable(_) => ErrorKind::Network,
            Error::Primary(_) => ErrorKind::Server,
            Error::Postgres(_) | Error::ReadOnly => ErrorKind::Postgres,
            Error::CatchUp(_) | Error::NotPromoted(_) => ErrorKind::Timeout,
            Error::Reconfigure(_) => ErrorKind::Child,
        }
    }
}

/// How upstream names a mode in its error: its type string, lower case, without the LSN
/// (`compute mode "primary" is not replica`, `… "static" …`).
pub(crate) fn mode_name(mode: ComputeMode) -> &'static str {
    match mode {
        ComputeMode::Primary => "primary",
        ComputeMode::Replica => "replica",
        ComputeMode::Static(_) => "static",
    }
}
