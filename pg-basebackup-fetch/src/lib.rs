//! `pg-basebackup-fetch`: the stage that prepares PGDATA before Postgres starts.
//!
//! **Sources**, chosen by `spec.validate()`: a Neon pageserver (`basebackup … --gzip` over
//! libpq COPY OUT, [`pageserver`]; or `GetBaseBackup` over gRPC when the spec prefers it,
//! [`grpc`]), a vanilla PostgreSQL primary (`upstream_connstring`,
//! `BASE_BACKUP` over a physical replication connection, [`replication`]), or nothing
//! (`initdb`, [`initdb`]). Archives stream through [`unpack`] straight into PGDATA.
//!
//! **Reads** from the compute document: the spec (storage source, mode, token, settings),
//! `sync_safekeepers.lsn` (the pageserver LSN; 0/0 = latest), `pgdata`, `pgbin` (`initdb`
//! and `postgres`), `connstr` (the admin user) and `instance` (port, socket directory).
//!
//! **Writes** the `basebackup` section: `source` (`pageserver`, `upstream`, `initdb`),
//! `pageserver_connect_micros`, `basebackup_ms`, `basebackup_bytes` (bytes read from the
//! wire: compressed for a pageserver), plus `attempts`, `files` and `unpacked_bytes`.
//!
//! **Invariants**
//! - A directory is wiped only when it is empty, or when every top-level entry is one
//!   PostgreSQL or compute-tools creates ([`wipe::KNOWN_ENTRIES`]) and either our marker
//!   [`compute_spec::document::PGDATA_MARKER`] or a real cluster (`PG_VERSION` with a major
//!   version, `global/pg_control`) vouches for it; anything else is refused, listing the
//!   foreign entries, and nothing is deleted ([`wipe`]). The marker is written into the
//!   new PGDATA before any data, for every source (`initdb` runs in a subdirectory whose
//!   entries are then moved up, [`initdb::initdb_in_place`]), so a partial tree left by a
//!   failed or killed attempt (SIGKILL, a full disk) is always wiped by the next start; a
//!   wipe writes the marker first and removes it last ([`wipe::remove_tree`]).
//! - A directory a live Postgres runs on (`postmaster.pid`: a running `postgres` working
//!   there, or its socket answering) is never wiped ([`live`]).
//! - PGDATA has one owner: the stage holds `<pgdata>.compute-tools.lock` (compute-ctl's,
//!   inherited, or taken by itself when run by hand, `--pgdata-lock-timeout`), and its
//!   children (`initdb`, `postgres`) inherit it ([`stage_kit::pgdata_lock`]).
//!   The previous PGDATA is moved aside and removed while the new one is fetched
//!   ([`wipe::retire`]); the stage does not end before it is gone.
//! - No network wait is unbounded: connect + startup + authentication within
//!   [`Timeouts::startup`], and at most [`Timeouts::idle`] of silence after that, for every
//!   server (pageserver, primary, the admin-role check); a timeout is retried like a cut.
//!   Across attempts, the fetch goes at most [`RetryPolicy::no_progress`] without archive
//!   bytes arriving ([`stage_kit::retry::Progress`], the loop [`stage_kit::retry`]'s): no attempt
//!   starts past it, and an
//!   attempt's deadlines are capped by what is left of it, so a peer that never answers
//!   ends the start within that time, whatever `--retries` says.
//! - Nothing is written outside PGDATA: archive entries are checked ([`unpack`]). A corrupt
//!   archive is final, never retried ([`BasebackupError::Corrupt`]): only a broken
//!   connection is.
//! - PGDATA is `0700` and owned by the user Postgres runs as; so is a separate socket dir.
//! - `postgresql.conf` is always rendered from the spec (`compute_spec::pgconf::render`).
//! - Unpacked files are not fsynced: PGDATA is rebuilt on every start (see README).
//!
//! **Tests**: unit tests next to the code; the binary is tested on real PostgreSQL (a
//! pageserver stand-in, a real primary, hostile archives) in `pg-basebackup-fetch/tests/`.
#![warn(missing_docs)]

pub mod child;
pub mod clone;
pub mod error;
pub mod finish;
pub mod grpc;
pub mod initdb;
pub mod live;
pub mod pageserver;
pub mod progress;
pub mod prune;
pub mod replication;
pub mod single;
pub mod spliced;
pub mod template;
pub mod unpack;
pub mod version;
pub mod wipe;

use std::time::{Duration, Instant};

use compute_spec::document::ComputeDocument;
use compute_spec::error::{ErrorKind, StageError};
use compute_spec::ids::Lsn;
use compute_spec::section::{BasebackupSection, BasebackupSource};
use compute_spec::spec::{ComputeMode, ComputeSpec, PageserverProtocol};
use compute_spec::validate::StorageSource;
use stage_kit::retry::{Backoff, Policy, Progress, Retry, Stop};
use stage_kit::runas::PostgresUser;

pub use error::BasebackupError;

/// The stage name used in errors and logs.
pub const STAGE: &str = "pg-basebackup-fetch";

/// Retry policy for fetching (upstream: 10 retries from 500 ms, ×1.5 each).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// Pause before the first retry.
    pub initial_backoff: Duration,
    /// Factor applied to the pause after each retry.
    pub multiplier: f64,
    /// The longest the fetch may go without progress (archive bytes arriving), over all its
    /// attempts and the pauses between them (`--no-progress-timeout`). Not a bound on the
    /// whole fetch: a large archive that keeps arriving may take as long as it takes.
    pub no_progress: Duration,
}

impl RetryPolicy {
    /// The pauses: `initial_backoff`, then × `multiplier` each time, saturating at the longest
    /// duration (never a panic, whatever the flags say; zero for a negative or NaN
    /// multiplier). No cap: [`RetryPolicy::no_progress`] bounds them.
    pub fn backoff(&self) -> Backoff {
        Backoff::exponential(self.initial_backoff, self.multiplier, Duration::MAX)
    }

    /// The loop's policy: `retries` after the first attempt, the back-off, and the deadline
    /// without progress.
    fn policy(&self) -> Policy {
        Policy {
            attempts: self.retries.saturating_add(1),
            backoff: self.backoff(),
            deadline: Some(self.no_progress),
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 10,
            initial_backoff: Duration::from_millis(500),
            multiplier: 1.5,
            no_progress: Duration::from_secs(120),
        }
    }
}

/// The default least number of bytes a stream must bring per `--min-rate-window` (60 s).
pub const DEFAULT_MIN_RATE_BYTES: u64 = 64 << 10;

/// Time limits on the network sources, for each attempt (a failure of either is retried).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Connecting, starting up and authenticating (a `connect_timeout` in the primary's
    /// connection string takes its place there).
    pub startup: Duration,
    /// The longest silence of a server once connected: waiting for the answer to the
    /// command (a primary's checkpoint included) and between two reads of the stream.
    pub idle: Duration,
    /// How long an unusable TLS certificate or key (`compute_ctl_config.tls`) is waited for
    /// (re-checked every second) before the start fails naming the file.
    pub tls_wait: Duration,
    /// The least a stream must bring per window, `(bytes, window)` (None: no minimum): a
    /// server trickling bytes just inside `idle` fails the attempt.
    pub min_rate: Option<(u64, Duration)>,
    /// A cap on every deadline of one attempt (`Duration::MAX`: none): what is left of
    /// [`RetryPolicy::no_progress`] when the attempt starts; it also caps a primary's
    /// `connect_timeout`.
    pub attempt_cap: Duration,
}

impl Timeouts {
    /// These timeouts for one attempt that may take at most `left` without progress.
    pub fn within(&self, left: Duration) -> Timeouts {
        Timeouts {
            startup: self.startup.min(left),
            idle: self.idle.min(left),
            attempt_cap: self.attempt_cap.min(left),
            ..*self
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            startup: Duration::from_secs(30),
            idle: Duration::from_secs(60),
            tls_wait: Duration::from_secs(60),
            min_rate: Some((DEFAULT_MIN_RATE_BYTES, Duration::from_secs(60))),
            attempt_cap: Duration::MAX,
        }
    }
}

/// What one fetch brought.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fetched {
    /// Time to connect and authenticate.
    pub connect_micros: Option<u64>,
    /// Bytes read from the wire.
    pub wire_bytes: u64,
    /// Files and bytes written.
    pub unpacked: unpack::Unpacked,
}

/// Prepares PGDATA from the document's storage source and adds the `basebackup` section.
pub fn run(
    mut document: ComputeDocument,
    policy: &RetryPolicy,
    timeouts: &Timeouts,
    cache: &template::TemplateCache,
) -> Result<ComputeDocument, StageError> {
    let started = Instant::now();
    let spec = document.require_spec(STAGE)?.clone();
    let source = spec.validate().map_err(|errors| {
        StageError::new(
            STAGE,
            ErrorKind::InvalidSpec,
            format!("invalid spec: {errors}"),
        )
    })?;
    let user = PostgresUser::for_current_process(None)
        .map_err(|error| StageError::new(STAGE, ErrorKind::Io, error.to_string()))?;
    let user = user.as_ref();
    // The same parameters a reconfiguration renders with (a standby's `primary_conninfo` included).
    let params = compute_spec::pgconf::params_for_start(&document, &spec);
    // The previous PGDATA goes aside at once and is removed while the new one arrives; the
    // stage waits for that removal before it ends (on failure too: `Retiring` joins on drop).
    let retiring = wipe::retire(&document.pgdata)?;
    let (name, fetched, attempts, template) =
        fetch_source(&document, &spec, &source, user, policy, timeouts, cache)?;
    let mut span = stage_kit::stage::span("configure");
    after_data(&document, &spec, &source, &params, user).inspect_err(|error| span.fail(error))?;
    drop(span);
    if let Some(tls) = compute_spec::pgconf::tls::wanted(&document, &spec) {
        let checked =
            stage_kit::tls::install_waiting(&document.pgdata, tls, user, timeouts.tls_wait)
                .map_err(|error| StageError::new(STAGE, ErrorKind::InvalidSpec, error.message))?;
        tracing::info!(kind = ?checked.kind, serial = %checked.serial, "TLS certificate installed");
    }
    if let Some(retiring) = retiring {
        retiring.finish();
    }
    // initdb fetches nothing: no attempts, files or unpacked bytes to report.
    let fetched_data = name != BasebackupSource::Initdb;
    let section = BasebackupSection {
        pageserver_connect_micros: fetched.connect_micros,
        basebackup_ms: stage_kit::stage::elapsed_ms(started),
        basebackup_bytes: fetched.wire_bytes,
        attempts: fetched_data.then_some(attempts),
        files: fetched_data.then_some(fetched.unpacked.files),
        unpacked_bytes: fetched_data.then_some(fetched.unpacked.bytes),
        source: name,
        template,
        spans: Vec::new(),
        extra: Default::default(),
    };
    tracing::info!(
        "PGDATA {} prepared from {} in {} ms ({} bytes read)",
        document.pgdata.display(),
        section.source,
        section.basebackup_ms,
        section.basebackup_bytes
    );
    document.basebackup = Some(section);
    Ok(document)
}

/// What [`fetch_source`] did: source name, what was fetched, attempts, and for `initdb` how
/// the template cache served it.
type Filled = (BasebackupSource, Fetched, u32, Option<template::Outcome>);

/// Fills PGDATA from `source`.
fn fetch_source(
    document: &ComputeDocument,
    spec: &ComputeSpec,
    source: &StorageSource,
    user: Option<&PostgresUser>,
    policy: &RetryPolicy,
    timeouts: &Timeouts,
    cache: &template::TemplateCache,
) -> Result<Filled, BasebackupError> {
    let pgdata = &document.pgdata;
    match source {
        StorageSource::Empty => {
            wipe::wipe_and_create_marked(pgdata, user)?;
            let admin = stage_kit::local::admin_user(document);
            let initdb = document.sibling_binary("initdb");
            let mut span = stage_kit::stage::span("initdb");
            let outcome = template::provide(cache, &initdb, pgdata, &admin, user)
                .inspect_err(|error| span.fail(error))?;
            span.set("template", outcome.to_string());
            drop(span);
            Ok((
                BasebackupSource::Initdb,
                Fetched::default(),
                1,
                Some(outcome),
            ))
        }
        StorageSource::Neon(storage) => {
            let lsn = document
                .sync_safekeepers
                .as_ref()
                .map_or(Lsn::INVALID, |section| section.lsn);
            let token = spec.storage_auth_token.as_ref().map(|token| token.expose());
            let request = pageserver::PageserverRequest {
                storage,
                mode: spec.mode,
                lsn,
                token,
            };
            // As upstream: the protocol the spec prefers, shard 0's URL of that protocol.
            let grpc = grpc::GrpcRequest {
                storage,
                shard_count: spec
                    .pageserver_connection_info
                    .as_ref()
                    .map_or(0, |info| info.shard_count),
                mode: spec.mode,
                lsn,
                token,
            };
            let (fetched, attempts) = with_retries(
                pgdata,
                user,
                policy,
                timeouts,
                |timeouts, clock| match storage.protocol {
                    PageserverProtocol::Grpc => grpc::fetch(&grpc, pgdata, timeouts, clock),
                    PageserverProtocol::Libpq => {
                        pageserver::fetch(&request, pgdata, timeouts, clock)
                    }
                },
            )?;
            Ok((BasebackupSource::Pageserver, fetched, attempts, None))
        }
        StorageSource::Upstream { connstr } => {
            // The primary must run the major of the compute's Postgres (checked on connect).
            let compute = version::compute_version(&document.pgbin)?;
            if spec.mode != ComputeMode::Primary {
                // A standby cannot create the admin role: it must come from the primary.
                let admin = stage_kit::local::admin_user(document);
                replication::check_admin_role(connstr, &admin, timeouts, &compute)?;
            }
            let (fetched, attempts) =
                with_retries(pgdata, user, policy, timeouts, |timeouts, clock| {
                    replication::fetch(connstr, pgdata, timeouts, clock, &compute)
                })?;
            Ok((BasebackupSource::Upstream, fetched, attempts, None))
        }
    }
}

/// Runs `fetch` into a freshly wiped PGDATA (marker first), retrying retryable failures
/// while retries are left and the fetch has not gone [`RetryPolicy::no_progress`] without
/// progress; each attempt gets `timeouts` capped by what is left of that, and the clock that
/// its archive bytes tick.
fn with_retries(
    pgdata: &std::path::Path,
    user: Option<&PostgresUser>,
    policy: &RetryPolicy,
    timeouts: &Timeouts,
    mut fetch: impl FnMut(&Timeouts, &Progress) -> Result<Fetched, BasebackupError>,
) -> Result<(Fetched, u32), BasebackupError> {
    let outcome = Retry::new(&policy.policy())
        .when(BasebackupError::is_retryable)
        .before_pause(|error, attempt, pause| {
            tracing::warn!(
                "attempt {attempt} failed: {error}; retrying in {} ms",
                pause.as_millis()
            );
        })
        .run(|attempt| {
            wipe::wipe_and_create_marked(pgdata, None)?;
            let started = Instant::now();
            // Whole milliseconds: the deadline appears in messages.
            let left = round_ms(attempt.left().unwrap_or(Duration::MAX));
            // One span per attempt: the archive streams from the server into PGDATA.
            let mut span = stage_kit::stage::span("fetch");
            span.set_kind(compute_spec::trace::SpanKind::Client);
            span.set("attempt", attempt.number);
            let result = fetch(&timeouts.within(left), attempt.progress());
            match &result {
                Ok(fetched) => {
                    span.set("wire_bytes", fetched.wire_bytes);
                    span.set("files", fetched.unpacked.files);
                    span.set("unpacked_bytes", fetched.unpacked.bytes);
                }
                Err(error) => span.fail(error),
            }
            drop(span);
            let fetched = result?;
            tracing::info!(
                "fetched {} bytes into {} files in {} ms",
                fetched.wire_bytes,
                fetched.unpacked.files,
                stage_kit::stage::elapsed_ms(started)
            );
            Ok(fetched)
        });
    let (why, attempts, last) = match outcome {
        Ok((fetched, attempts)) => {
            if let Some(user) = user {
                user.chown_recursive(pgdata)
                    .map_err(|e| BasebackupError::io("changing the owner of", pgdata, e))?;
            }
            return Ok((fetched, attempts));
        }
        Err(Stop::Final { error, .. }) => return Err(error),
        Err(Stop::Exhausted { attempts, last }) => {
            let why = format!("--retries {} used up", policy.retries);
            (why, attempts, last)
        }
        Err(Stop::OutOfTime {
            attempts,
            without_progress,
            last,
        }) => {
            let why = format!(
                "no progress for {}, --no-progress-timeout {}",
                humantime::format_duration(round_ms(without_progress)),
                humantime::format_duration(policy.no_progress)
            );
            (why, attempts, last)
        }
    };
    Err(BasebackupError::GaveUp {
        attempts,
        why,
        last: Box::new(last),
    })
}

/// `duration` to whole milliseconds (for messages).
fn round_ms(duration: Duration) -> Duration {
    Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

/// Configuration, fixups, the admin role of a cloned primary, and standby.signal.
fn after_data(
    document: &ComputeDocument,
    spec: &ComputeSpec,
    source: &StorageSource,
    params: &compute_spec::pgconf::ConfParams,
    user: Option<&PostgresUser>,
) -> Result<(), BasebackupError> {
    let pgdata = &document.pgdata;
    if !matches!(source, StorageSource::Empty) {
        finish::fixups(pgdata, user)?;
    }
    finish::finish_pgdata(document, spec, params, user)?;
    let standby = spec.mode != ComputeMode::Primary;
    if matches!(source, StorageSource::Upstream { .. }) && !standby {
        let admin = stage_kit::local::admin_user(document);
        let started = Instant::now();
        single::finish_clone(&document.pgbin, pgdata, &admin, user)?;
        tracing::info!(
            "single-user recovery and admin role check: {} ms",
            stage_kit::stage::elapsed_ms(started)
        );
    }
    if standby {
        finish::standby_signal(pgdata, user)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_grows_and_saturates_instead_of_panicking() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff().pause(1), Duration::from_millis(500));
        assert_eq!(policy.backoff().pause(2), Duration::from_millis(750));
        let huge = RetryPolicy {
            multiplier: f64::MAX,
            ..RetryPolicy::default()
        };
        assert_eq!(huge.backoff().pause(2), Duration::MAX);
        assert_eq!(huge.backoff().pause(u32::MAX), Duration::MAX);
        for odd in [-1.0, f64::NAN] {
            let policy = RetryPolicy {
                multiplier: odd,
                ..RetryPolicy::default()
            };
            assert_eq!(policy.backoff().pause(2), Duration::ZERO);
        }
        let policy = RetryPolicy {
            retries: u32::MAX,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.policy().attempts, u32::MAX);
    }
}
