//! The cache state on the compute's own Postgres: read for an offload, loaded by a prewarm.
//!
//! * **Neon** computes (a spec with pageservers): upstream's calls into the `neon` extension,
//!   `neon.get_local_cache_state()` (NULL: nothing to offload), `neon.prewarm_local_cache($1)`
//!   and `neon.get_prewarm_info()` (total, prewarmed, skipped: the first three int4 columns,
//!   0 when unreadable).
//! * **Vanilla** Postgres (beyond upstream, [`crate::vanilla`]): the state is the block list
//!   of the buffer cache, read from `pg_buffercache` in the admin database (every database's
//!   buffers, by database name, tablespace, relfilenode, fork and block, coalesced into
//!   ranges) as JSON ([`crate::VanillaState`]); a prewarm connects to each listed database
//!   that exists and allows connections and loads the ranges with
//!   `pg_prewarm(…, 'buffer', …)`, clamped to each relation's current size, streaming the
//!   state in batches; blocks of relations or databases that are gone are `skipped`.
//!   The `pg_buffercache` (admin database) and `pg_prewarm` (each prewarmed database)
//!   extensions are created when missing; a replica cannot create them (the error says to
//!   create them on the primary).
//!
//! A cancelled prewarm sends Postgres a cancel request for the query under way. Every
//! session is bounded ([`OFFLOAD_LIMITS`], [`PREWARM_LIMITS`]: statement and lock timeouts, a
//! cancel request at the deadline).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use compute_spec::quote::quote_ident;
use compute_spec::spec::ComputeSpec;
use compute_spec::validate::StorageSource;
use compute_spec::ComputeDocument;

use stage_kit::local::{pg_error_text, Limits, Session};

use crate::Error;

const APPLICATION_NAME: &str = "compute_ctl:lfc";

/// An offload's session (reading the LFC state or `pg_buffercache`): 5 min per statement,
/// 10 s per lock wait, a cancel request after 310 s.
pub const OFFLOAD_LIMITS: Limits = Limits::seconds(300, 10, 310);

/// A prewarm's sessions (`neon.prewarm_local_cache`, or `pg_prewarm` batches per database):
/// an hour per statement and per session, 30 s per lock wait.
pub const PREWARM_LIMITS: Limits = Limits::seconds(3600, 30, 3610);
/// Where the cache state lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKind {
    /// The `neon` extension's local file cache.
    Neon,
    /// Vanilla Postgres's shared buffers (`pg_buffercache`, `pg_prewarm`).
    Vanilla,
}

/// Neon for a spec with pageservers, else vanilla.
pub fn kind_of(spec: &ComputeSpec) -> CacheKind {
    match spec.validate() {
        Ok(StorageSource::Neon(_)) => CacheKind::Neon,
        _ => CacheKind::Vanilla,
    }
}

/// What a prewarm loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Blocks (pages) in the state.
    pub total: i32,
    /// Blocks loaded.
    pub prewarmed: i32,
    /// Blocks not loaded (their relation or database is gone, or past its end).
    pub skipped: i32,
}

/// A Postgres error while doing `what`.
pub(crate) fn failed(what: impl std::fmt::Display, error: &postgres::Error) -> Error {
    Error::Postgres(format!("{what}: {}", pg_error_text(error)))
}

/// A Postgres error of `session` while doing `what`, naming the limit it hit.
pub(crate) fn failed_in(
    session: &Session,
    what: impl std::fmt::Display,
    error: &postgres::Error,
) -> Error {
    Error::Postgres(format!("{what}: {}", session.describe(error)))
}

pub(crate) fn connect(
    document: &ComputeDocument,
    database: Option<&str>,
    limits: Limits,
) -> Result<Session, Error> {
    let config = stage_kit::local::limited_config(
        document,
        crate::STAGE,
        APPLICATION_NAME,
        database,
        limits,
    )
    .map_err(|error| Error::Connstr(error.message))?;
    Session::connect(&config, limits).map_err(|error| {
        let database = database
            .map(|name| format!(" (database {name})"))
            .unwrap_or_default();
        failed(
            format!("connecting to the compute's postgres{database}"),
            &error,
        )
    })
}

/// Runs `work` on `client`; when `cancel` trips meanwhile, Postgres gets a cancel request and
/// the result is `Ok(None)`.
pub(crate) fn cancellable<T>(
    client: &mut postgres::Client,
    cancel: &AtomicBool,
    work: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error>,
) -> Result<Option<T>, postgres::Error> {
    let token = client.cancel_token();
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                if cancel.load(Ordering::SeqCst) {
                    if let Err(error) = token.cancel_query(postgres::NoTls) {
                        tracing::warn!(error = %pg_error_text(&error), "cancelling the prewarm query");
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let result = work(client);
        done.store(true, Ordering::SeqCst);
        result
    });
    if cancel.load(Ordering::SeqCst) {
        return Ok(None);
    }
    result.map(Some)
}

/// The cache state to offload; `None` when there is none (upstream's `skipped`).
pub fn read_state(document: &ComputeDocument, kind: CacheKind) -> Result<Option<Vec<u8>>, Error> {
    let mut client = connect(document, None, OFFLOAD_LIMITS)?;
    match kind {
        CacheKind::Neon => {
            let row = client
                .query_one("SELECT neon.get_local_cache_state()", &[])
                .map_err(|error| failed_in(&client, "reading the LFC state", &error))?;
            Ok(row.get::<_, Option<Vec<u8>>>(0))
        }
        CacheKind::Vanilla => {
            let state = crate::vanilla::read_vanilla(&mut client)?;
            if state.relations.is_empty() {
                return Ok(None);
            }
            serde_json::to_vec(&state)
                .map(Some)
                .map_err(|error| Error::Internal(format!("writing the block list: {error}")))
        }
    }
}

/// Creates `extension` (in `public`) in the connected database unless it is there; a replica
/// cannot. Returns its schema, quoted (the admin session has no search path).
pub(crate) fn ensure_extension(
    client: &mut postgres::Client,
    extension: &str,
) -> Result<String, Error> {
    let checking =
        |error: postgres::Error| failed(format!("checking the {extension} extension"), &error);
    let row = client
        .query_one(
            "SELECT (SELECT n.nspname::text FROM pg_catalog.pg_extension e \
                     JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace \
                     WHERE e.extname = $1), \
                    pg_catalog.pg_is_in_recovery(), pg_catalog.current_database()::text",
            &[&extension],
        )
        .map_err(checking)?;
    let (schema, replica, database): (Option<String>, bool, String) =
        (row.get(0), row.get(1), row.get(2));
    if let Some(schema) = schema {
        return Ok(quote_ident(&schema));
    }
    if replica {
        return Err(Error::Postgres(format!(
            "the {extension} extension is not installed in database {database}, and a replica \
             cannot install it: CREATE EXTENSION {extension} in that database on the primary"
        )));
    }
    client
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA public",
            quote_ident(extension)
        ))
        .map_err(|error| {
            failed(
                format!("creating the {extension} extension in database {database}"),
                &error,
            )
        })?;
    Ok("public".to_string())
}

/// Loads `state` into the cache; `Ok(None)` when cancelled.
pub fn load_state(
    document: &ComputeDocument,
    kind: CacheKind,
    state: &[u8],
    cancel: &AtomicBool,
) -> Result<Option<Loaded>, Error> {
    match kind {
        CacheKind::Neon => load_neon(document, state, cancel),
        CacheKind::Vanilla => crate::vanilla::load(document, state, cancel),
    }
}

fn load_neon(
    document: &ComputeDocument,
    state: &[u8],
    cancel: &AtomicBool,
) -> Result<Option<Loaded>, Error> {
    let mut client = connect(document, None, PREWARM_LIMITS)?;
    // The decompressed buffer itself, not a copy of it.
    let loaded = cancellable(&mut client, cancel, |client| {
        client.execute("SELECT neon.prewarm_local_cache($1)", &[&state])
    })
    .map_err(|error| failed_in(&client, "prewarming the LFC", &error))?;
    if loaded.is_none() {
        return Ok(None);
    }
    let info = client
        .query_one("SELECT * FROM neon.get_prewarm_info()", &[])
        .map_err(|error| failed_in(&client, "reading the prewarm info", &error))?;
    let column = |index: usize| info.try_get::<_, i32>(index).unwrap_or(0);
    Ok(Some(Loaded {
        total: column(0),
        prewarmed: column(1),
        skipped: column(2),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_cancel_stops_the_query_under_way() {
        let server = pg_test_support::TestPostgres::start();
        let mut client = server.client();
        let cancel = Arc::new(AtomicBool::new(false));
        let tripper = cancel.clone();
        // Trips the token once the query is seen running.
        let mut watcher = server.client();
        let trip = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                let running: i64 = watcher
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'",
                        &[],
                    )
                    .unwrap()
                    .get(0);
                if running == 1 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            tripper.store(true, Ordering::SeqCst);
        });
        let started = Instant::now();
        let outcome = cancellable(&mut client, &cancel, |client| {
            client.batch_execute("SELECT pg_sleep(60)")
        })
        .unwrap();
        trip.join().unwrap();
        assert_eq!(outcome, None);
        assert!(started.elapsed() < Duration::from_secs(30), "not cancelled");
        // Not tripped: the work's own result.
        let calm = AtomicBool::new(false);
        let value = cancellable(&mut client, &calm, |client| {
            client
                .query_one("SELECT 7", &[])
                .map(|row| row.get::<_, i32>(0))
        })
        .unwrap();
        assert_eq!(value, Some(7));
        let error = cancellable(&mut client, &calm, |client| {
            client.batch_execute("SELECT 1/0")
        })
        .unwrap_err();
        assert!(pg_error_text(&error).contains("division by zero"));
    }

    #[test]
    fn kinds() {
        let neon: ComputeSpec = serde_json::from_value(crate::test_kit::spec(serde_json::json!({
            "tenant_id": "0123456789abcdef0123456789abcdef",
            "timeline_id": "fedcba9876543210fedcba9876543210",
            "pageserver_connstring": "host=ps",
            "safekeeper_connstrings": ["sk:5454"],
        })))
        .unwrap();
        assert_eq!(kind_of(&neon), CacheKind::Neon);
        let vanilla: ComputeSpec =
            serde_json::from_value(crate::test_kit::spec(serde_json::json!({}))).unwrap();
        assert_eq!(kind_of(&vanilla), CacheKind::Vanilla);
    }
}
