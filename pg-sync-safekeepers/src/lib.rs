//! `pg-sync-safekeepers`: decides the LSN a compute starts from.
//!
//! Reads from the compute document: the spec's `mode`, its storage (Neon safekeepers with the
//! tenant, timeline and `storage_auth_token`; or a vanilla `upstream_connstring`; or none),
//! `pgdata` and `pgbin`. Writes the `sync_safekeepers` section: `lsn` (text form `X/Y`), the
//! `method` that decided it, and upstream's timings (`sync_sk_check_ms`, `sync_safekeepers_ms`).
//!
//! | mode / storage          | LSN                                                   | method                  |
//! |-------------------------|-------------------------------------------------------|-------------------------|
//! | Static(lsn)             | the spec's LSN, no network                            | `static`                |
//! | Replica                 | `0/0` (= latest), never contacts safekeepers          | `replica`               |
//! | Primary, no storage     | `0/0`                                                 | `none`                  |
//! | Primary, Neon           | [`fast_path`] if a quorum agrees, else [`slow_path`]  | `safekeepers-fast-path` / `sync-safekeepers` |
//! | Primary, vanilla        | the upstream's `IDENTIFY_SYSTEM` `xlogpos`            | `upstream`              |
//!
//! Invariants: a Replica or Static compute never talks to a safekeeper (a sync would disturb the
//! primary); no wait on the network or a child is unbounded: the fast path within
//! [`SyncOptions::fast_path_timeout`] per safekeeper (and a little more for all), the slow path
//! within [`SyncOptions::timeout`] (its child is killed at the deadline), the upstream query
//! within [`SyncOptions::startup_timeout`] per connection and [`SyncOptions::timeout`] in all;
//! the storage token is never logged.
//!
//! After shutdown: [`sync_after_shutdown`] (the binary's `--after-shutdown`) syncs a Primary once
//! more after Postgres has exited, skipping the fast path and leaving the existing PGDATA and its
//! postgresql.conf alone, and returns the LSN (what `compute-ctl` reports from `/terminate`).
//!
//! Tests: unit tests beside the code; binary-level tests in `tests/` (a safekeeper stand-in, a
//! script standing in for `postgres --sync-safekeepers`, a real vanilla primary).

#![warn(missing_docs)]

pub mod cli;
pub mod error;
pub mod fast_path;
pub mod signals;
pub mod slow_path;
pub mod upstream;

use std::time::{Duration, Instant};

use compute_spec::section::{SyncMethod, SyncSafekeepersSection};
use compute_spec::spec::{ComputeMode, ComputeSpec};
use compute_spec::validate::{NeonStorage, StorageSource};
use compute_spec::{ComputeDocument, ErrorKind, Lsn, StageError};
use stage_kit::runas::PostgresUser;

pub use error::SyncError;

/// The stage name used in errors.
pub const STAGE: &str = "pg-sync-safekeepers";

/// How to sync.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Deadline for `--sync-safekeepers` (all attempts) and for the upstream query.
    pub timeout: Duration,
    /// Time allowed to one connection to the upstream primary (connect, startup,
    /// authentication, `IDENTIFY_SYSTEM`) before it is tried again, within `timeout`.
    pub startup_timeout: Duration,
    /// Retries of a failed `--sync-safekeepers`.
    pub retries: u32,
    /// Time allowed to each safekeeper on the fast path.
    pub fast_path_timeout: Duration,
    /// Skip the fast path and the conf writing: Postgres just exited from this PGDATA.
    pub after_shutdown: bool,
    /// Forward SIGTERM/SIGINT to the child: the binary installs the handlers in `main`; a
    /// library caller with its own signal handling leaves this `None` (the child still dies
    /// with the calling process).
    pub signals: Option<signals::SignalForwarding>,
}

impl Default for SyncOptions {
    fn default() -> SyncOptions {
        SyncOptions {
            timeout: Duration::from_secs(60),
            startup_timeout: Duration::from_secs(30),
            retries: 5,
            fast_path_timeout: Duration::from_millis(100),
            after_shutdown: false,
            signals: None,
        }
    }
}

/// Runs the stage on a document: decides the LSN and writes the section.
pub fn run(mut doc: ComputeDocument, options: &SyncOptions) -> Result<ComputeDocument, StageError> {
    let section = decide(&doc, options)?;
    tracing::info!(lsn = %section.lsn, method = %section.method, "start LSN decided");
    doc.sync_safekeepers = Some(section);
    Ok(doc)
}

/// Syncs a Primary once more after Postgres exited, and returns the LSN.
pub fn sync_after_shutdown(
    doc: &ComputeDocument,
    options: &SyncOptions,
) -> Result<Lsn, StageError> {
    let options = SyncOptions {
        after_shutdown: true,
        ..options.clone()
    };
    Ok(decide(doc, &options)?.lsn)
}

/// Decides the start LSN of the document's compute.
pub fn decide(
    doc: &ComputeDocument,
    options: &SyncOptions,
) -> Result<SyncSafekeepersSection, StageError> {
    let spec = doc.require_spec(STAGE)?;
    let storage = spec.validate().map_err(|errors| {
        StageError::new(
            STAGE,
            ErrorKind::InvalidSpec,
            format!("invalid spec: {errors}"),
        )
    })?;
    match (spec.mode, storage) {
        (ComputeMode::Static(lsn), _) => Ok(section(lsn, SyncMethod::Static)),
        (ComputeMode::Replica, _) => Ok(section(Lsn::INVALID, SyncMethod::Replica)),
        (ComputeMode::Primary, StorageSource::Empty) => Ok(section(Lsn::INVALID, SyncMethod::None)),
        (ComputeMode::Primary, StorageSource::Upstream { connstr }) => {
            let start = Instant::now();
            let timeouts = upstream::UpstreamTimeouts {
                overall: options.timeout,
                attempt: options.startup_timeout,
            };
            let lsn = upstream::current_wal_position(&connstr, timeouts)?;
            let mut result = section(lsn, SyncMethod::Upstream);
            result.sync_safekeepers_ms = Some(stage_kit::stage::elapsed_ms(start));
            Ok(result)
        }
        (ComputeMode::Primary, StorageSource::Neon(neon)) => {
            sync_neon_primary(doc, spec, &neon, options)
        }
    }
}

fn sync_neon_primary(
    doc: &ComputeDocument,
    spec: &ComputeSpec,
    neon: &NeonStorage,
    options: &SyncOptions,
) -> Result<SyncSafekeepersSection, StageError> {
    let token = spec
        .storage_auth_token
        .as_ref()
        .map(|t| t.expose().to_string());
    let mut check_ms = None;
    if !options.after_shutdown {
        let start = Instant::now();
        let query = fast_path::StatusQuery {
            tenant_id: neon.tenant_id,
            timeline_id: neon.timeline_id,
            token: token.clone(),
            timeout: options.fast_path_timeout,
        };
        let mut span = stage_kit::stage::span("fast_path");
        let verdict = fast_path::check(&neon.safekeepers, &query);
        span.set("synced", matches!(verdict, fast_path::Verdict::Synced(_)));
        drop(span);
        check_ms = Some(stage_kit::stage::elapsed_ms(start));
        match verdict {
            fast_path::Verdict::Synced(lsn) => {
                let mut result = section(lsn, SyncMethod::SafekeepersFastPath);
                result.sync_sk_check_ms = check_ms;
                return Ok(result);
            }
            fast_path::Verdict::NotSynced(reason) => {
                tracing::info!("safekeepers not known to be synced ({reason}); syncing");
            }
        }
    }
    let user = PostgresUser::for_current_process(None).map_err(|error| {
        StageError::new(
            STAGE,
            ErrorKind::Io,
            format!("looking up the postgres user: {error}"),
        )
    })?;
    if options.after_shutdown {
        slow_path::require_conf(&doc.pgdata)?;
    } else {
        let conf = compute_spec::pgconf::render(spec, &compute_spec::pgconf::params_for(doc))
            .map_err(|error| StageError::new(STAGE, ErrorKind::InvalidSpec, error.to_string()))?;
        slow_path::prepare_pgdata(&doc.pgdata, &conf, user.as_ref())?;
    }
    let start = Instant::now();
    let command = slow_path::SyncCommand {
        pgbin: &doc.pgbin,
        pgdata: &doc.pgdata,
        token: token.as_deref(),
        safekeepers: &neon.safekeepers,
        timeout: options.timeout,
        retries: options.retries,
        signals: options.signals.as_ref(),
        user: user.as_ref(),
    };
    let mut span = stage_kit::stage::span("sync_safekeepers");
    let (lsn, attempts) = slow_path::sync(&command).inspect_err(|error| span.fail(error))?;
    span.set("attempts", attempts);
    drop(span);
    if attempts > 1 {
        tracing::info!(
            attempts,
            "postgres --sync-safekeepers succeeded after retries"
        );
    }
    let mut result = section(lsn, SyncMethod::SyncSafekeepers);
    result.sync_sk_check_ms = check_ms;
    result.sync_safekeepers_ms = Some(stage_kit::stage::elapsed_ms(start));
    Ok(result)
}

fn section(lsn: Lsn, method: SyncMethod) -> SyncSafekeepersSection {
    SyncSafekeepersSection {
        lsn,
        method,
        sync_sk_check_ms: None,
        sync_safekeepers_ms: None,
        spans: Vec::new(),
        extra: Default::default(),
    }
}
