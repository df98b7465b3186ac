//! `pg-sync-safekeepers`: decides the LSN a compute starts from.
//!
//! Reads from the compute document: the spec's `mode`, its storage (Neon safekeepers and
//! tenant/timeline, or a vanilla `upstream_connstring`, or none), `pgdata` and `pgbin`.
//! Writes the `sync_safekeepers` section: `lsn` (text form `X/Y`), the `method` that decided it,
//! and upstream's timings (`sync_sk_check_ms`, `sync_safekeepers_ms`).
//!
//! Invariants: a Replica never contacts safekeepers (it would disturb the primary); Static uses
//! the spec's LSN without any network; no storage means `0/0`.
//!
//! Tests: unit tests beside the code; binary-level tests in `tests/`.

#![warn(missing_docs)]

pub mod cli;

use compute_spec::section::SyncSafekeepersSection;
use compute_spec::spec::ComputeMode;
use compute_spec::validate::StorageSource;
use compute_spec::{ComputeDocument, ErrorKind, Lsn, StageError};

/// The stage name used in errors.
pub const STAGE: &str = "pg-sync-safekeepers";

/// Method names written to the section.
pub mod method {
    /// No storage: nothing to sync.
    pub const NONE: &str = "none";
    /// The spec's static LSN.
    pub const STATIC: &str = "static";
    /// A replica starts at the latest LSN.
    pub const REPLICA: &str = "replica";
    /// Every safekeeper of a quorum agreed (`TIMELINE_STATUS`).
    pub const FAST_PATH: &str = "safekeepers-fast-path";
    /// `postgres --sync-safekeepers` decided.
    pub const SYNC: &str = "sync-safekeepers";
    /// The vanilla upstream's current WAL position.
    pub const UPSTREAM: &str = "upstream";
}

/// Runs the stage on a document: decides the LSN and writes the section.
pub fn run(mut doc: ComputeDocument) -> Result<ComputeDocument, StageError> {
    let section = decide(&doc)?;
    tracing::info!(lsn = %section.lsn, method = %section.method, "start LSN decided");
    doc.sync_safekeepers = Some(section);
    Ok(doc)
}

/// Decides the start LSN of the document's compute.
pub fn decide(doc: &ComputeDocument) -> Result<SyncSafekeepersSection, StageError> {
    let spec = doc.require_spec(STAGE)?;
    let storage = spec.validate().map_err(|errors| {
        StageError::new(
            STAGE,
            ErrorKind::InvalidSpec,
            format!("invalid spec: {errors}"),
        )
    })?;
    match (spec.mode, storage) {
        (ComputeMode::Static(lsn), _) => Ok(section(lsn, method::STATIC)),
        (ComputeMode::Replica, _) => Ok(section(Lsn::INVALID, method::REPLICA)),
        (ComputeMode::Primary, StorageSource::Empty) => Ok(section(Lsn::INVALID, method::NONE)),
        (ComputeMode::Primary, _) => Err(StageError::new(
            STAGE,
            ErrorKind::Internal,
            "syncing a primary with storage is not implemented yet",
        )),
    }
}

fn section(lsn: Lsn, method: &str) -> SyncSafekeepersSection {
    SyncSafekeepersSection {
        lsn,
        method: method.to_string(),
        sync_sk_check_ms: None,
        sync_safekeepers_ms: None,
        extra: Default::default(),
    }
}
