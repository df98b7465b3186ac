//! LFC offload and prewarm on vanilla Postgres (`pg_buffercache` → endpoint storage →
//! `pg_prewarm`), against an endpoint-storage stand-in (on the kit's `FakeHttp`) that checks
//! the path and the bearer token as the real one does (PUT: the token's own endpoint only;
//! GET: any endpoint of its tenant and timeline; 404 no object, 400 bad token, 401 mismatch).

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use compute_ctl::lfc::{Lfc, OffloadState, PrewarmState, VanillaState, VANILLA_FORMAT};
use compute_ctl::state::Shared;
use compute_spec::ComputeDocument;
use pg_test_support::fake_http::{FakeHttp, Request, Response};
use pg_test_support::probe::settle;
use pg_test_support::TestPostgres;
use serde_json::json;

const TENANT: &str = "0123456789abcdef0123456789abcdef";
const TIMELINE: &str = "fedcba9876543210fedcba9876543210";

/// The stand-in's token for an endpoint (the real one is an EdDSA JWT with these claims).
fn token(endpoint: &str) -> String {
    format!("claims:{TENANT}:{TIMELINE}:{endpoint}")
}

/// Objects by path.
type Objects = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// Endpoint storage on the kit's HTTP stand-in: objects by path, and every request as
/// `METHOD path status`.
struct Storage {
    objects: Objects,
    server: FakeHttp,
}

impl Storage {
    fn start() -> (Storage, String) {
        let objects = Objects::default();
        let stored = objects.clone();
        let server = FakeHttp::start(move |request| {
            let (status, body) = Storage::answer(
                &stored,
                &request.method,
                &request.target,
                request.header("Authorization"),
                request.body.clone(),
            );
            Response::new(status, body)
        });
        let address = server.address().to_string();
        (Storage { objects, server }, address)
    }

    fn answer(
        objects: &Objects,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Vec<u8>) {
        let Some(claims) = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .and_then(|token| token.strip_prefix("claims:"))
        else {
            return (400, b"bad token".to_vec());
        };
        let claims: Vec<&str> = claims.split(':').collect();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let [tenant, timeline, endpoint, "lfc_state"] = segments.as_slice() else {
            return (404, Vec::new());
        };
        if claims.len() != 3 || claims[0] != *tenant || claims[1] != *timeline {
            return (401, Vec::new());
        }
        let mut objects = objects.lock().unwrap();
        match method {
            "GET" => match objects.get(path) {
                Some(object) => (200, object.clone()),
                None => (404, Vec::new()),
            },
            "PUT" if claims[2] == *endpoint => {
                objects.insert(path.to_string(), body);
                (200, Vec::new())
            }
            "PUT" => (401, Vec::new()),
            _ => (405, Vec::new()),
        }
    }

    fn object(&self, endpoint: &str) -> Option<Vec<u8>> {
        let path = format!("/{TENANT}/{TIMELINE}/{endpoint}/lfc_state");
        self.objects.lock().unwrap().get(&path).cloned()
    }

    fn put(&self, endpoint: &str, object: Vec<u8>) {
        let path = format!("/{TENANT}/{TIMELINE}/{endpoint}/lfc_state");
        self.objects.lock().unwrap().insert(path, object);
    }

    fn log(&self) -> Vec<String> {
        let log = self.server.log();
        let line = |(request, status): &(Request, u16)| format!("{} {status}", request.line());
        log.iter().map(line).collect()
    }
}

/// A vanilla compute (no pageserver) on `server` whose spec points at `storage`.
fn shared_for(server: &TestPostgres, storage: &str, endpoint: &str, token: &str) -> Arc<Shared> {
    let document: ComputeDocument = serde_json::from_value(json!({
        "document_version": 1,
        "spec": {
            "format_version": 1.0, "suspend_timeout_seconds": 0,
            "cluster": {"roles": [], "databases": []},
            "tenant_id": TENANT, "timeline_id": TIMELINE, "endpoint_id": endpoint,
            "endpoint_storage_addr": storage, "endpoint_storage_token": token,
        },
        "pgdata": server.data_dir(),
        "pgbin": server.bin_dir().join("postgres"),
        "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": server.port(), "socket_dir": server.socket_dir()},
    }))
    .unwrap();
    let shared = Arc::new(Shared::new());
    shared.update(|inner| inner.document = Some(document));
    shared
}

/// The prewarm state once no prewarm runs (at most 60 s).
fn settled_prewarm(lfc: &Lfc) -> PrewarmState {
    let prewarming = |state: &PrewarmState| *state == PrewarmState::Prewarming;
    settle(Duration::from_secs(60), || lfc.prewarm_state(), prewarming)
}

/// The offload state once no offload runs (at most 60 s).
fn settled_offload(lfc: &Lfc) -> OffloadState {
    let offloading = |state: &OffloadState| *state == OffloadState::Offloading;
    settle(Duration::from_secs(60), || lfc.offload_state(), offloading)
}

/// `pg_ctl` as the postgres user on `data`.
fn pg_ctl(server: &TestPostgres, args: &[&str]) {
    let mut command = Command::new(server.bin_dir().join("pg_ctl"));
    pg_test_support::as_postgres_user(&mut command)
        .arg("-D")
        .arg(server.data_dir())
        .args(args);
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "pg_ctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The server started again by `pg_ctl` after a stop (shared buffers empty); stopped on drop.
struct Restarted<'a>(&'a TestPostgres);

impl<'a> Restarted<'a> {
    fn new(server: &'a mut TestPostgres) -> Restarted<'a> {
        server.stop_fast();
        let log = server.dir().join("restarted.log");
        pg_ctl(server, &["-w", "-l", &log.to_string_lossy(), "start"]);
        Restarted(server)
    }
}

impl Drop for Restarted<'_> {
    fn drop(&mut self) {
        let mut command = Command::new(self.0.bin_dir().join("pg_ctl"));
        let _ = pg_test_support::as_postgres_user(&mut command)
            .arg("-D")
            .arg(self.0.data_dir())
            .args(["-w", "-m", "immediate", "stop"])
            .output();
    }
}

/// Buffers of `table` in the cache, and its size in blocks.
fn cached(server: &TestPostgres, table: &str) -> (i64, i64) {
    let row = server
        .client()
        .query_one(
            "SELECT (SELECT count(*) FROM pg_buffercache \
                     WHERE relfilenode = pg_relation_filenode($1::text::regclass) \
                       AND relforknumber = 0 \
                       AND reldatabase = (SELECT oid FROM pg_database \
                                          WHERE datname = current_database())), \
                    pg_relation_size($1::text::regclass) / 8192",
            &[&table],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

fn decode(object: &[u8]) -> VanillaState {
    let json = zstd::decode_all(object).unwrap();
    serde_json::from_slice(&json).unwrap()
}

#[test]
fn a_restarted_vanilla_compute_is_prewarmed_from_its_offload() {
    let mut server = TestPostgres::start();
    server.psql(
        "create table accounts (id int, pad text); \
         insert into accounts select i, repeat('x', 100) from generate_series(1, 30000) i",
    );
    let (storage, address) = Storage::start();
    let shared = shared_for(&server, &address, "ep-1", &token("ep-1"));
    let lfc = Arc::new(Lfc::new());
    assert!(lfc.start_offload(&shared));
    let state = settled_offload(&lfc);
    assert!(matches!(state, OffloadState::Completed { .. }), "{state:?}");
    let state = decode(&storage.object("ep-1").unwrap());
    assert_eq!(state.format, VANILLA_FORMAT);
    let filenode: u32 = server
        .client()
        .query_one("SELECT pg_relation_filenode('accounts')", &[])
        .unwrap()
        .get(0);
    let (in_cache, blocks) = cached(&server, "accounts");
    assert!(blocks > 100, "{blocks}");
    assert_eq!(in_cache, blocks, "the inserted table is cached");
    let fork = state
        .relations
        .iter()
        .find(|fork| fork.filenode == filenode && fork.fork == 0 && fork.database == "postgres")
        .unwrap();
    assert_eq!(fork.ranges, vec![(0, blocks - 1)], "one coalesced range");

    let restarted = Restarted::new(&mut server);
    let server = restarted.0;
    assert_eq!(
        cached(server, "accounts").0,
        0,
        "a restart empties the cache"
    );
    let lfc = Arc::new(Lfc::new());
    assert!(lfc.start_prewarm(&shared, None));
    match settled_prewarm(&lfc) {
        PrewarmState::Completed {
            total,
            prewarmed,
            skipped,
            ..
        } => {
            assert_eq!(i64::from(total), state.blocks());
            assert_eq!(total, prewarmed + skipped);
            assert!(i64::from(prewarmed) >= blocks, "{prewarmed} < {blocks}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cached(server, "accounts"), (blocks, blocks), "prewarmed");
    assert_eq!(
        storage.log(),
        vec![
            format!("PUT /{TENANT}/{TIMELINE}/ep-1/lfc_state 200"),
            format!("GET /{TENANT}/{TIMELINE}/ep-1/lfc_state 200"),
        ]
    );
}

#[test]
fn storage_answers_become_upstreams_states() {
    let server = TestPostgres::start();
    let (storage, address) = Storage::start();
    let lfc = Arc::new(Lfc::new());
    // Nothing stored: skipped.
    let shared = shared_for(&server, &address, "ep-1", &token("ep-1"));
    assert!(lfc.start_prewarm(&shared, None));
    assert_eq!(settled_prewarm(&lfc), PrewarmState::Skipped);
    // A bad token: 400 for both.
    let bad = shared_for(&server, &address, "ep-1", "not-a-token");
    assert!(lfc.start_prewarm(&bad, None));
    assert_eq!(
        settled_prewarm(&lfc),
        PrewarmState::Failed {
            error: "400 querying endpoint storage".into()
        }
    );
    assert!(lfc.start_offload(&bad));
    assert_eq!(
        settled_offload(&lfc),
        OffloadState::Failed {
            error: "request to endpoint storage failed: 400".into()
        }
    );
    // Another endpoint's token: its PUT is refused (401) …
    let other = shared_for(&server, &address, "ep-1", &token("ep-2"));
    assert!(lfc.start_offload(&other));
    assert_eq!(
        settled_offload(&lfc),
        OffloadState::Failed {
            error: "request to endpoint storage failed: 401".into()
        }
    );
    // … but any endpoint of the timeline may be read (from_endpoint).
    let ep2 = Arc::new(Lfc::new());
    assert!(ep2.start_offload(&shared_for(&server, &address, "ep-2", &token("ep-2"))));
    let state = settled_offload(&ep2);
    assert!(matches!(state, OffloadState::Completed { .. }), "{state:?}");
    assert!(lfc.start_prewarm(&shared, Some("ep-2".into())));
    assert!(matches!(
        settled_prewarm(&lfc),
        PrewarmState::Completed { .. }
    ));
    // What is not a state fails naming why.
    storage.put("ep-3", b"garbage".to_vec());
    assert!(lfc.start_prewarm(&shared, Some("ep-3".into())));
    let error = match settled_prewarm(&lfc) {
        PrewarmState::Failed { error } => error,
        other => panic!("{other:?}"),
    };
    assert!(error.starts_with("decompressing the state"), "{error}");
    storage.put("ep-4", zstd::encode_all(&b"{\"x\": 1}"[..], 3).unwrap());
    assert!(lfc.start_prewarm(&shared, Some("ep-4".into())));
    let error = match settled_prewarm(&lfc) {
        PrewarmState::Failed { error } => error,
        other => panic!("{other:?}"),
    };
    assert!(
        error.starts_with("the stored state is not a pg_buffercache block list"),
        "{error}"
    );
    let counters = lfc.counters();
    assert_eq!((counters.prewarms, counters.prewarm_errors), (5, 3));
    assert_eq!((counters.offloads, counters.offload_errors), (2, 2));
}
