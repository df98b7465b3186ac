//! The promotion itself (upstream's steps 1–7), for a Neon replica and — beyond upstream — for
//! a vanilla replica cloned from `upstream_connstring`.
//!
//! The two kinds differ in three places: a Neon replica must have been prewarmed (a failed
//! prewarm only warns), a vanilla one needs no prewarm; a Neon replica is told its new
//! safekeepers (`ALTER SYSTEM` `neon.safekeepers` and `synchronous_standby_names =
//! 'walproposer'`, then a reload), a vanilla one has none; and a vanilla replica may be
//! promoted without `wal_flush_lsn`, in which case it first catches up with the primary's
//! current WAL position (`pg_current_wal_insert_lsn()`, past every commit it has
//! acknowledged, even with `synchronous_commit = off`), read over `upstream_connstring`. Both
//! then `pg_promote()`, check that the server takes writes, and are reconfigured as the new
//! Primary spec by the [`Host`].
//!
//! Both sessions are bounded: the compute's by [`LIMITS`], the primary's by
//! [`UPSTREAM_LIMITS`] (statement and lock timeouts, a cancel request at the deadline).

use std::time::{Duration, Instant};

use compute_spec::ids::Lsn;
use compute_spec::quote::quote_literal;
use compute_spec::spec::{ComputeMode, ComputeSpec};
use compute_spec::validate::StorageSource;
use compute_spec::ComputeDocument;
use pg_prewarm::PrewarmState;
use serde::Serialize;
use stage_kit::local::{pg_error_text, Limits, Session};

use crate::{Error, Host, PromoteRequest, Status, STAGE};

/// The sessions' `application_name`, as upstream's.
const APPLICATION_NAME: &str = "compute_ctl:promote";

/// Upstream polls the replay LSN this many times, [`CATCH_UP_INTERVAL`] apart.
const CATCH_UP_ATTEMPTS: u32 = 21;
/// The pause between two replay-LSN polls.
const CATCH_UP_INTERVAL: Duration = Duration::from_secs(1);
/// Connecting to the vanilla primary for its current LSN.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `pg_promote(wait => true, wait_seconds => …)`.
const PG_PROMOTE_WAIT_SECONDS: i32 = 60;
/// The session on the compute: `pg_promote()` waits up to a minute (90 s per statement), 10 s
/// per lock wait, a cancel request after 150 s (the replay catch-up, the promotion and the
/// safekeepers in all).
pub const LIMITS: Limits = Limits::seconds(90, 10, 150);
/// The session on a vanilla replica's primary (its WAL position): 10 s per statement, 5 s
/// per lock wait, a cancel request after 15 s.
pub const UPSTREAM_LIMITS: Limits = Limits::seconds(10, 5, 15);

/// The timings of a completed promotion (the fields of the `completed` answer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Timings {
    /// Waiting for replay to reach the target LSN.
    pub lsn_wait_time_ms: u64,
    /// `pg_promote()`.
    pub pg_promote_time_ms: u64,
    /// The reconfiguration as Primary.
    pub reconfigure_time_ms: u64,
}

/// What kind of replica is promoted.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// A Neon replica: safekeepers, prewarm rule.
    Neon,
    /// A replica of a vanilla primary, reachable at this connection string.
    Vanilla { upstream: String },
}

/// Runs one promotion of the compute of `host` (no single flight: [`crate::Promotion`]
/// adds it); the request's spec is taken as validated.
pub fn run(host: &dyn Host, request: &PromoteRequest) -> Result<Timings, Error> {
    let (document, status) = host.current();
    let document = document.ok_or(Error::NoSpec)?;
    let current = document.spec.as_ref().ok_or(Error::NoSpec)?;
    // (1) The mode.
    if current.mode != ComputeMode::Replica {
        return Err(Error::NotReplica(current.mode));
    }
    let kind = kind_of(current);
    // (2) Prewarm, for Neon replicas only.
    if kind == Kind::Neon {
        match host.prewarm_state() {
            Some(PrewarmState::NotPrewarmed) => return Err(Error::NotPrewarmed),
            Some(PrewarmState::Prewarming) => return Err(Error::Prewarming),
            Some(PrewarmState::Failed { error }) => {
                tracing::warn!(%error, "promoting although the prewarm failed");
            }
            _ => {}
        }
    }
    if let Status::Other(status) = status {
        return Err(Error::NotRunning(status));
    }
    check_new_spec(&request.spec, &kind)?;
    let target = match (&kind, request.wal_flush_lsn) {
        (_, Some(lsn)) => lsn,
        (Kind::Vanilla { upstream }, None) => primary_current_lsn(upstream)?,
        (Kind::Neon, None) => return Err(Error::LsnRequired),
    };
    let mut client = connect(&document)?;
    if !in_recovery(&mut client)? {
        return Err(Error::NotInRecovery);
    }
    // (3) Catch up.
    let started = Instant::now();
    catch_up(&mut client, target)?;
    let lsn_wait_time_ms = elapsed_ms(started);
    // (4) Safekeepers, for Neon replicas only.
    if kind == Kind::Neon {
        point_at_safekeepers(&mut client, &request.spec)?;
    }
    // (5) Promote.
    let started = Instant::now();
    let promoted: bool = client
        .query_one("SELECT pg_promote(true, $1)", &[&PG_PROMOTE_WAIT_SECONDS])
        .map_err(|error| {
            Error::Postgres(format!("pg_promote() failed: {}", pg_error_text(&error)))
        })?
        .get(0);
    if !promoted {
        return Err(Error::NotPromoted(PG_PROMOTE_WAIT_SECONDS));
    }
    let pg_promote_time_ms = elapsed_ms(started);
    // (6) Writable.
    let read_only = client
        .simple_query("SHOW transaction_read_only")
        .map_err(|error| {
            Error::Postgres(format!(
                "SHOW transaction_read_only failed: {}",
                pg_error_text(&error)
            ))
        })?
        .into_iter()
        .find_map(|message| match message {
            postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        });
    if read_only.as_deref() == Some("on") {
        return Err(Error::ReadOnly);
    }
    drop(client);
    tracing::info!(%target, "promoted: reconfiguring as primary");
    // (7) Reconfigure as the new primary.
    let started = Instant::now();
    host.reconfigure(request.spec.clone())
        .map_err(Error::Reconfigure)?;
    Ok(Timings {
        lsn_wait_time_ms,
        pg_promote_time_ms,
        reconfigure_time_ms: elapsed_ms(started),
    })
}

/// Neon or vanilla, from the replica's own spec.
fn kind_of(spec: &ComputeSpec) -> Kind {
    match spec.validate() {
        Ok(StorageSource::Upstream { connstr }) => Kind::Vanilla { upstream: connstr },
        _ => Kind::Neon,
    }
}

/// The new spec must describe a Primary; a Neon one needs its safekeepers (the request's
/// validation already checked they are unique and non-empty).
fn check_new_spec(spec: &ComputeSpec, kind: &Kind) -> Result<(), Error> {
    if spec.mode != ComputeMode::Primary {
        return Err(Error::NewSpecNotPrimary(spec.mode));
    }
    if *kind == Kind::Neon && spec.safekeepers().is_empty() {
        return Err(Error::NoSafekeepers);
    }
    Ok(())
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The admin session on the compute's own Postgres.
fn connect(document: &ComputeDocument) -> Result<Session, Error> {
    let config = stage_kit::local::limited_config(document, STAGE, APPLICATION_NAME, None, LIMITS)
        .map_err(|error| Error::Connstr(error.message))?;
    Session::connect(&config, LIMITS).map_err(|error| {
        Error::Postgres(format!(
            "connecting to the compute's postgres: {}",
            pg_error_text(&error)
        ))
    })
}

/// Whether the compute's Postgres is a standby (`pg_is_in_recovery()`).
fn in_recovery(client: &mut postgres::Client) -> Result<bool, Error> {
    Ok(client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .map_err(|error| {
            Error::Postgres(format!(
                "SELECT pg_is_in_recovery(): {}",
                pg_error_text(&error)
            ))
        })?
        .get(0))
}

/// Reads an LSN (text) from the first column of `sql`'s single row; `None` for NULL.
/// `wrap` makes the error of the server it was asked.
fn query_lsn(
    client: &mut postgres::Client,
    sql: &str,
    wrap: fn(String) -> Error,
) -> Result<Option<Lsn>, Error> {
    let row = client
        .query_one(sql, &[])
        .map_err(|error| wrap(format!("{sql}: {}", pg_error_text(&error))))?;
    let text: Option<String> = row.get(0);
    text.map(|text| {
        text.parse::<Lsn>()
            .map_err(|error| wrap(format!("{sql} returned {text:?}: {error}")))
    })
    .transpose()
}

/// The largest WAL page header (the long one, at a segment's start): no record ends inside
/// it.
const MAX_PAGE_HEADER: u64 = 40;

/// The vanilla primary's current WAL insert position (the target when the request has
/// none): past every commit it acknowledged, even one with `synchronous_commit = off` not
/// yet written. At a page's start the insert position is after the page header, where no
/// replayed record can end: the target is then the page boundary.
fn primary_current_lsn(upstream: &str) -> Result<Lsn, Error> {
    // The connection string may hold a password: errors never repeat it.
    let mut config: postgres::Config = upstream
        .parse()
        .map_err(|error| Error::UpstreamConnstr(pg_error_text(&error)))?;
    config.connect_timeout(UPSTREAM_CONNECT_TIMEOUT);
    if config.get_dbname().is_none() {
        config.dbname("postgres");
    }
    config.application_name(APPLICATION_NAME);
    let mut client = Session::connect(&config, UPSTREAM_LIMITS)
        .map_err(|error| Error::PrimaryUnreachable(pg_error_text(&error)))?;
    // SET rather than startup options: a pooler in front of the primary may refuse those.
    client
        .batch_execute(&format!(
            "SET statement_timeout = {}; SET lock_timeout = {}",
            UPSTREAM_LIMITS.statement.as_millis(),
            UPSTREAM_LIMITS.lock.as_millis()
        ))
        .map_err(|error| Error::Primary(client.describe(&error)))?;
    let insert = query_lsn(
        &mut client,
        "SELECT pg_current_wal_insert_lsn()::text",
        Error::Primary,
    )?
    .ok_or_else(|| Error::Primary("the primary reported no WAL position".to_string()))?;
    let block_size: String = client
        .query_one("SELECT current_setting('wal_block_size')", &[])
        .map_err(|error| {
            Error::Primary(format!(
                "reading the primary's wal_block_size: {}",
                pg_error_text(&error)
            ))
        })?
        .get(0);
    let block_size: u64 = block_size.parse().map_err(|_| {
        Error::Primary(format!(
            "the primary's wal_block_size is {block_size:?}, not a number"
        ))
    })?;
    Ok(record_end_bound(insert, block_size))
}

/// `insert`, or the start of its page when it lies within the page header.
fn record_end_bound(insert: Lsn, block_size: u64) -> Lsn {
    let offset = insert.0 % block_size.max(1);
    if offset <= MAX_PAGE_HEADER {
        Lsn(insert.0 - offset)
    } else {
        insert
    }
}

/// Upstream's step (3): poll the replay LSN until it reaches `target`.
fn catch_up(client: &mut postgres::Client, target: Lsn) -> Result<(), Error> {
    for attempt in 0..CATCH_UP_ATTEMPTS {
        let replayed = query_lsn(
            client,
            "SELECT pg_last_wal_replay_lsn()::text",
            Error::Postgres,
        )?;
        if replayed.is_some_and(|replayed| replayed >= target) {
            return Ok(());
        }
        tracing::info!(
            replayed = %replayed.map(|lsn| lsn.to_string()).unwrap_or_else(|| "none".into()),
            %target,
            "waiting for replay to catch up with the primary"
        );
        if attempt + 1 < CATCH_UP_ATTEMPTS {
            std::thread::sleep(CATCH_UP_INTERVAL);
        }
    }
    Err(Error::CatchUp(CATCH_UP_ATTEMPTS - 1))
}

/// Upstream's step (4): the safekeepers of the new spec, comma-joined, and the walproposer
/// as the synchronous standby, persisted with `ALTER SYSTEM` and reloaded.
fn point_at_safekeepers(client: &mut postgres::Client, spec: &ComputeSpec) -> Result<(), Error> {
    let safekeepers = spec.safekeepers().join(",");
    // One statement per query: ALTER SYSTEM refuses to run in a (multi-statement) transaction.
    for sql in [
        format!(
            "ALTER SYSTEM SET neon.safekeepers TO {}",
            quote_literal(&safekeepers)
        ),
        "ALTER SYSTEM SET synchronous_standby_names TO 'walproposer'".to_string(),
        "SELECT pg_reload_conf()".to_string(),
    ] {
        client.batch_execute(&sql).map_err(|error| {
            Error::Postgres(format!(
                "pointing the compute at its safekeepers: {}",
                pg_error_text(&error)
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_inside_a_page_header_is_the_page_boundary() {
        assert_eq!(record_end_bound(Lsn(0x300_0028), 8192), Lsn(0x300_0000));
        assert_eq!(record_end_bound(Lsn(0x300_2018), 8192), Lsn(0x300_2000));
        assert_eq!(record_end_bound(Lsn(0x300_0000), 8192), Lsn(0x300_0000));
        assert_eq!(record_end_bound(Lsn(0x300_0029), 8192), Lsn(0x300_0029));
        assert_eq!(record_end_bound(Lsn(0x300_1F00), 8192), Lsn(0x300_1F00));
    }

    #[test]
    fn the_safekeepers_are_persisted_and_reloaded() {
        let server = pg_test_support::TestPostgres::start();
        let mut client = server.client();
        // What the neon extension does on a Neon compute: define `neon.safekeepers` (here a
        // session placeholder, which ALTER SYSTEM accepts).
        client.batch_execute("SET neon.safekeepers TO ''").unwrap();
        let spec: ComputeSpec = serde_json::from_value(crate::tests::spec(serde_json::json!({
            "safekeeper_connstrings": ["sk-1:5454", "sk-2:5454"],
        })))
        .unwrap();
        point_at_safekeepers(&mut client, &spec).unwrap();
        let auto = std::fs::read_to_string(server.data_dir().join("postgresql.auto.conf")).unwrap();
        assert!(
            auto.contains("neon.safekeepers = 'sk-1:5454,sk-2:5454'"),
            "{auto}"
        );
        assert!(
            auto.contains("synchronous_standby_names = 'walproposer'"),
            "{auto}"
        );
        pg_test_support::probe::eventually(Duration::from_secs(10), "the reload", || {
            let live: String = client
                .query_one("SELECT current_setting('synchronous_standby_names')", &[])
                .unwrap()
                .get(0);
            live == "walproposer"
        });
    }
}
