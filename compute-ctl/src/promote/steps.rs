//! The promotion itself (upstream's steps 1–7), for a Neon replica and — beyond upstream — for a
//! vanilla replica cloned from `upstream_connstring`.
//!
//! The two kinds differ in three places: a Neon replica must have been prewarmed (a failed prewarm
//! only warns), a vanilla one needs no prewarm; a Neon replica is told its new safekeepers (`ALTER
//! SYSTEM` `neon.safekeepers` and `synchronous_standby_names = 'walproposer'`, then a reload), a
//! vanilla one has none; and a vanilla replica may be promoted without `wal_flush_lsn`, in which
//! case it first catches up with the primary's current WAL position (`pg_current_wal_insert_lsn()`,
//! past every commit it has acknowledged, even with `synchronous_commit = off`), read over
//! `upstream_connstring`. Both then `pg_promote()`, check that the server takes writes, and are
//! reconfigured as the new Primary spec through the controller (the `/configure` path, so the
//! status passes through `configuration_pending` and `configuration` back to `running`; upstream
//! reconfigures in place and stays `running`).

use std::time::{Duration, Instant};

use compute_spec::ids::Lsn;
use compute_spec::quote::quote_literal;
use compute_spec::spec::{ComputeMode, ComputeSpec};
use compute_spec::validate::StorageSource;
use compute_spec::ComputeDocument;

use super::{mode_name, PromoteRequest};
use crate::http::Api;
use crate::state::{ComputeStatus, PendingConfig};
use pg_prewarm::PrewarmState;
use stage_kit::local::pg_error_text;

const APPLICATION_NAME: &str = "compute_ctl:promote";

/// Upstream polls the replay LSN this many times, [`CATCH_UP_INTERVAL`] apart.
const CATCH_UP_ATTEMPTS: u32 = 21;
/// The pause between two replay-LSN polls.
const CATCH_UP_INTERVAL: Duration = Duration::from_secs(1);
/// Connecting to the vanilla primary for its current LSN.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `pg_promote(wait => true, wait_seconds => …)`.
const PG_PROMOTE_WAIT_SECONDS: i32 = 60;
/// How long a blocked promotion waits between checks of the reconfiguration.
const POLL: Duration = Duration::from_secs(1);

/// The timings of a completed promotion (the 200 body's fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

/// Runs the promotion; the error is the `"error"` of the 500 body.
pub fn run(api: &Api, request: &PromoteRequest) -> Result<Timings, String> {
    let (status, document) = {
        let inner = api.shared.lock();
        (inner.status(), inner.document.clone())
    };
    let document = document.ok_or("the compute has no spec yet: nothing to promote")?;
    let current = document
        .spec
        .as_ref()
        .ok_or("the compute has no spec yet: nothing to promote")?;
    // (1) The mode.
    if current.mode != ComputeMode::Replica {
        return Err(format!(
            "compute mode \"{}\" is not replica",
            mode_name(current.mode)
        ));
    }
    let kind = kind_of(current);
    // (2) Prewarm, for Neon replicas only.
    if kind == Kind::Neon {
        match api.lfc.prewarm_state() {
            PrewarmState::NotPrewarmed => return Err("compute NotPrewarmed".to_string()),
            PrewarmState::Prewarming => return Err("compute Prewarming".to_string()),
            PrewarmState::Failed { error } => {
                tracing::warn!(%error, "promoting although the prewarm failed");
            }
            _ => {}
        }
    }
    if status != ComputeStatus::Running {
        return Err(format!(
            "the compute is {status}, not running: only a running replica is promoted"
        ));
    }
    check_new_spec(&request.spec, &kind)?;
    let target = match (&kind, request.wal_flush_lsn) {
        (_, Some(lsn)) => lsn,
        (Kind::Vanilla { upstream }, None) => primary_current_lsn(upstream)?,
        (Kind::Neon, None) => {
            return Err("wal_flush_lsn is required to promote a Neon replica".to_string())
        }
    };
    let mut client = connect(&document)?;
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
        .map_err(|error| format!("pg_promote() failed: {}", pg_error_text(&error)))?
        .get(0);
    if !promoted {
        return Err(format!(
            "pg_promote() returned false: the server did not leave recovery within \
             {PG_PROMOTE_WAIT_SECONDS} s"
        ));
    }
    let pg_promote_time_ms = elapsed_ms(started);
    // (6) Writable.
    let read_only = client
        .simple_query("SHOW transaction_read_only")
        .map_err(|error| {
            format!(
                "SHOW transaction_read_only failed: {}",
                pg_error_text(&error)
            )
        })?
        .into_iter()
        .find_map(|message| match message {
            postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        });
    if read_only.as_deref() == Some("on") {
        return Err("the compute is still read-only after pg_promote()".to_string());
    }
    drop(client);
    tracing::info!(%target, "promoted: reconfiguring as primary");
    // (7) Reconfigure as the new primary.
    let started = Instant::now();
    reconfigure(api, request.spec.clone())?;
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
fn check_new_spec(spec: &ComputeSpec, kind: &Kind) -> Result<(), String> {
    if spec.mode != ComputeMode::Primary {
        return Err(format!(
            "spec.mode: the new spec must be Primary, not \"{}\"",
            mode_name(spec.mode)
        ));
    }
    if *kind == Kind::Neon && spec.safekeepers().is_empty() {
        return Err(
            "spec.safekeeper_connstrings: a promoted Neon compute needs its safekeepers"
                .to_string(),
        );
    }
    Ok(())
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The admin connection to the compute's own Postgres.
fn connect(document: &ComputeDocument) -> Result<postgres::Client, String> {
    let config = stage_kit::local::admin_config(document, crate::STAGE, APPLICATION_NAME, None)
        .map_err(|error| error.message)?;
    config.connect(postgres::NoTls).map_err(|error| {
        format!(
            "connecting to the compute's postgres: {}",
            pg_error_text(&error)
        )
    })
}

/// Reads an LSN (text) from the first column of `sql`'s single row; `None` for NULL.
fn query_lsn(client: &mut postgres::Client, sql: &str) -> Result<Option<Lsn>, String> {
    let row = client
        .query_one(sql, &[])
        .map_err(|error| format!("{sql}: {}", pg_error_text(&error)))?;
    let text: Option<String> = row.get(0);
    text.map(|text| {
        text.parse::<Lsn>()
            .map_err(|error| format!("{sql} returned {text:?}: {error}"))
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
fn primary_current_lsn(upstream: &str) -> Result<Lsn, String> {
    // The connection string may hold a password: errors never repeat it.
    let mut config: postgres::Config = upstream.parse().map_err(|error| {
        format!(
            "upstream_connstring does not parse: {}",
            pg_error_text(&error)
        )
    })?;
    config.connect_timeout(UPSTREAM_CONNECT_TIMEOUT);
    if config.get_dbname().is_none() {
        config.dbname("postgres");
    }
    config.application_name(APPLICATION_NAME);
    let mut client = config.connect(postgres::NoTls).map_err(|error| {
        format!(
            "connecting to the primary (upstream_connstring): {}",
            pg_error_text(&error)
        )
    })?;
    let insert = query_lsn(&mut client, "SELECT pg_current_wal_insert_lsn()::text")?
        .ok_or_else(|| "the primary reported no WAL position".to_string())?;
    let block_size: String = client
        .query_one("SELECT current_setting('wal_block_size')", &[])
        .map_err(|error| {
            format!(
                "reading the primary's wal_block_size: {}",
                pg_error_text(&error)
            )
        })?
        .get(0);
    let block_size: u64 = block_size
        .parse()
        .map_err(|_| format!("the primary's wal_block_size is {block_size:?}, not a number"))?;
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
fn catch_up(client: &mut postgres::Client, target: Lsn) -> Result<(), String> {
    for attempt in 0..CATCH_UP_ATTEMPTS {
        let replayed = query_lsn(client, "SELECT pg_last_wal_replay_lsn()::text")?;
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
    Err(format!(
        "didn't catch up with primary in {} retries",
        CATCH_UP_ATTEMPTS - 1
    ))
}

/// Upstream's step (4): the safekeepers of the new spec, comma-joined, and the walproposer
/// as the synchronous standby, persisted with `ALTER SYSTEM` and reloaded.
fn point_at_safekeepers(client: &mut postgres::Client, spec: &ComputeSpec) -> Result<(), String> {
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
            format!(
                "pointing the compute at its safekeepers: {}",
                pg_error_text(&error)
            )
        })?;
    }
    Ok(())
}

/// Upstream's step (7): store the new spec and reconfigure, through the controller (as
/// `/configure`), waiting for the outcome.
fn reconfigure(api: &Api, spec: ComputeSpec) -> Result<(), String> {
    api.shared
        .update(|inner| {
            if inner.status() != ComputeStatus::Running {
                return Err(inner.status());
            }
            inner.pending = Some(PendingConfig { spec });
            inner.error = None;
            inner
                .transition(ComputeStatus::ConfigurationPending)
                .map_err(|error| error.from)
        })
        .map_err(|status| {
            format!("promoted, but the compute became {status} before its reconfiguration")
        })?;
    api.wake();
    loop {
        let inner = api.shared.wait_until(POLL, |inner| {
            !matches!(
                inner.status(),
                ComputeStatus::ConfigurationPending | ComputeStatus::Configuration
            )
        });
        match inner.status() {
            ComputeStatus::Running => return Ok(()),
            ComputeStatus::ConfigurationPending | ComputeStatus::Configuration => {}
            ComputeStatus::Failed => {
                let error = inner.error.as_deref().unwrap_or("unknown error");
                return Err(format!(
                    "promoted, but reconfiguring as primary failed: {error}"
                ));
            }
            status => {
                return Err(format!(
                    "promoted, but the compute became {status} while reconfiguring"
                ))
            }
        }
    }
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
        let spec: ComputeSpec = serde_json::from_value(crate::testing::spec(serde_json::json!({
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
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let live: String = client
                .query_one("SELECT current_setting('synchronous_standby_names')", &[])
                .unwrap()
                .get(0);
            if live == "walproposer" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the reload never applied: {live:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
