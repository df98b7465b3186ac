//! pg-promote's integration tests as one binary: the `pg-promote` binary on real Postgres 15
//! servers — a primary and its streaming replica made with `pg_basebackup` — promoted by
//! hand (with and without `--reconfigure`); a primary it refuses to promote; and input it
//! refuses before anything runs. `cargo test -p pg-promote --test it <name>` runs one test.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::path::Path;
use std::time::Duration;

use pg_test_support::{run_stage_within, StageRun, TestDir, TestPostgres};
use serde_json::{json, Value};

/// The binary under test.
const PG_PROMOTE: &str = env!("CARGO_BIN_EXE_pg-promote");

/// Longer than a promotion takes here, shorter than replay's 20 s wait.
const LIMIT: Duration = Duration::from_secs(15);

/// A minimal spec with the `extra` fields.
fn spec(extra: Value) -> Value {
    let mut spec = json!({
        "format_version": 1.0, "suspend_timeout_seconds": 0,
        "cluster": {"roles": [], "databases": []},
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    spec
}

/// The spec of a vanilla replica of `primary`.
fn replica_spec(primary: &TestPostgres) -> Value {
    spec(json!({"mode": "Replica", "upstream_connstring": primary.connstr("postgres")}))
}

/// A compute document with `spec` for the instance on `socket_dir`/`port`.
fn document_for(pgdata: &Path, socket_dir: &Path, port: u16, spec: Value) -> String {
    json!({
        "document_version": 1,
        "spec": spec,
        "pgdata": pgdata,
        "pgbin": pg_test_support::pg_bin("postgres"),
        "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": port, "socket_dir": socket_dir},
    })
    .to_string()
}

/// A compute document with `spec` for `server`.
fn document(server: &TestPostgres, spec: Value) -> String {
    document_for(server.data_dir(), server.socket_dir(), server.port(), spec)
}

/// A document for a Postgres that is not there.
fn nowhere(spec: Value) -> String {
    document_for(
        Path::new("/nonexistent"),
        Path::new("/nonexistent"),
        5432,
        spec,
    )
}

/// `pg-promote <args>` on `document`, which must end within [`LIMIT`].
fn pg_promote(args: &[&str], document: &str) -> StageRun {
    run_stage_within(PG_PROMOTE, args, document, LIMIT)
        .0
        .expect_json()
}

/// A primary with rows 1..=42 in `accounts`, and its streaming replica.
fn primary_and_replica() -> (TestPostgres, TestPostgres) {
    let primary = TestPostgres::start();
    primary.psql(
        "create table accounts (id int primary key); \
         insert into accounts select generate_series(1, 42)",
    );
    let replica = TestPostgres::builder().standby_of(&primary).start();
    assert_eq!(replica.psql("select pg_is_in_recovery()"), "t");
    (primary, replica)
}

/// The promoted server: out of recovery, writable; `accounts` holds `rows` rows.
fn assert_promoted(server: &TestPostgres, rows: i64) {
    let mut client = server.client();
    let in_recovery: bool = client
        .query_one("select pg_is_in_recovery()", &[])
        .unwrap()
        .get(0);
    assert!(!in_recovery);
    let count: i64 = client
        .query_one("select count(*) from accounts", &[])
        .unwrap()
        .get(0);
    assert_eq!(count, rows);
    client
        .batch_execute("insert into accounts values (1000)")
        .unwrap();
}

/// The `completed` answer: its three timings.
fn assert_completed(run: &StageRun) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json["status"], "completed", "{}", run.json);
    for field in [
        "lsn_wait_time_ms",
        "pg_promote_time_ms",
        "reconfigure_time_ms",
    ] {
        assert!(run.json[field].is_u64(), "{field}: {}", run.json);
    }
    assert_eq!(run.json.as_object().unwrap().len(), 4, "{}", run.json);
}

#[test]
fn a_streaming_replica_catches_up_with_its_primary_and_is_promoted() {
    let (primary, replica) = primary_and_replica();
    let refused = replica
        .client()
        .batch_execute("insert into accounts values (1000)")
        .unwrap_err();
    let refused = refused.as_db_error().unwrap().message().to_string();
    assert!(refused.contains("read-only"), "{refused}");
    // Rows the clone did not have: they reach the replica only by streaming.
    primary.psql("insert into accounts select generate_series(43, 100)");
    // No --wal-flush-lsn: the target is the primary's current WAL position.
    let run = pg_promote(&[], &document(&replica, replica_spec(&primary)));
    assert_completed(&run);
    assert_promoted(&replica, 100);
    assert_eq!(primary.psql("select count(*) from accounts"), "100");
    assert!(run.stderr.contains("no --reconfigure"), "{}", run.stderr);
}

#[test]
fn with_reconfigure_the_new_spec_is_applied_after_the_promotion() {
    let (primary, replica) = primary_and_replica();
    let lsn = primary.psql("select pg_current_wal_insert_lsn()");
    let dir = TestDir::new("pg-promote");
    let new_spec = dir.path().join("primary.json");
    let roles = json!([{"name": "app_owner", "encrypted_password": null, "options": null}]);
    let databases = json!([{"name": "app", "owner": "app_owner", "options": null}]);
    let mut primary_spec = spec(json!({}));
    primary_spec["cluster"] = json!({
        "roles": roles, "databases": databases,
        "postgresql_conf": replica.server_conf(),
    });
    std::fs::write(&new_spec, primary_spec.to_string()).unwrap();
    let pg_reconcile = pg_test_support::workspace_binary("pg-reconcile");
    // No replay wait here (the LSN is given): a longer limit than LIMIT, for a loaded machine
    // running pg-reconcile too.
    let run = run_stage_within(
        PG_PROMOTE,
        &[
            "--wal-flush-lsn",
            &lsn,
            "--spec",
            &new_spec.to_string_lossy(),
            "--reconfigure",
            "--pg-reconcile",
            &pg_reconcile.to_string_lossy(),
        ],
        &document(&replica, replica_spec(&primary)),
        Duration::from_secs(90),
    )
    .0
    .expect_json();
    assert_completed(&run);
    assert_promoted(&replica, 42);
    assert_eq!(
        replica.psql(
            "select (select count(*) from pg_roles where rolname = 'app_owner') \
             + (select count(*) from pg_database where datname = 'app')"
        ),
        "2"
    );
    let conf = std::fs::read_to_string(replica.data_dir().join("postgresql.conf")).unwrap();
    assert!(
        !conf.contains("# Added by pg-test-support"),
        "rendered whole: {conf}"
    );
}

#[test]
fn a_failed_reconfiguration_is_reported_after_the_promotion() {
    let (primary, replica) = primary_and_replica();
    let run = pg_promote(
        &["--reconfigure", "--pg-reconcile", "/bin/false"],
        &document(&replica, replica_spec(&primary)),
    );
    let error = run.failed_with(1, "child");
    assert_eq!(
        error["message"],
        "promoted, but reconfiguring as primary failed: /bin/false ended with exit status: 1 \
         and no error envelope; see its log above"
    );
    assert_promoted(&replica, 42);
}

#[test]
fn a_primary_is_not_promoted() {
    let primary = TestPostgres::start();
    primary.psql("create table accounts (id int primary key)");
    // Its document says so.
    let run = pg_promote(&[], &document(&primary, spec(json!({}))));
    let error = run.failed_with(2, "invalid_spec");
    assert_eq!(error["message"], "compute mode \"primary\" is not replica");
    // Its document says Replica, but the server is not in recovery: refused at once, not
    // after replay's 20 s wait (LIMIT is shorter).
    let run = pg_promote(&[], &document(&primary, replica_spec(&primary)));
    let error = run.failed_with(2, "usage");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("the compute's postgres is not in recovery"),
        "{error}"
    );
    assert_promoted(&primary, 0);
}

#[test]
fn bad_input_is_refused_naming_what_is_wrong() {
    let replica = || {
        nowhere(spec(
            json!({"mode": "Replica", "upstream_connstring": "host=/x"}),
        ))
    };
    // Not a document; no spec; an earlier stage's error passed through.
    pg_promote(&[], "{}").failed_with(2, "invalid_document");
    let run = pg_promote(&[], &nowhere(Value::Null));
    let error = run.failed_with(2, "invalid_document");
    assert_eq!(
        error["message"],
        "the compute has no spec yet: nothing to promote"
    );
    let envelope =
        r#"{"error":{"stage":"compute-spec","kind":"io","message":"m","retryable":false}}"#;
    let run = pg_promote(&[], envelope);
    assert_eq!(run.code, 1);
    assert_eq!(run.json["error"]["stage"], "compute-spec");
    // The new spec: missing, not a spec, invalid, taking the admin role, not Primary.
    let dir = TestDir::new("pg-promote");
    let file = |name: &str, spec: Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, spec.to_string()).unwrap();
        path.to_string_lossy().into_owned()
    };
    let missing = dir.path().join("missing.json");
    let run = pg_promote(&["--spec", &missing.to_string_lossy()], &replica());
    let message = run.failed_with(1, "io")["message"].as_str().unwrap();
    assert!(message.starts_with("reading the new spec "), "{message}");
    let not_a_spec = file("bad.json", json!({"cluster": 5}));
    let run = pg_promote(&["--spec", &not_a_spec], &replica());
    let message = run.failed_with(2, "invalid_spec")["message"]
        .as_str()
        .unwrap();
    assert!(
        message.starts_with(&format!(
            "the new spec {not_a_spec} is not a valid spec: cluster"
        )),
        "{message}"
    );
    let unnamed = spec(json!({"cluster": {"roles": [{"name": ""}], "databases": []}}));
    let run = pg_promote(&["--spec", &file("unnamed.json", unnamed)], &replica());
    let message = run.failed_with(2, "invalid_spec")["message"]
        .as_str()
        .unwrap();
    assert!(
        message.starts_with("invalid spec: cluster.roles[0].name: "),
        "{message}"
    );
    let deltas = json!([{"action": "rename_role", "name": "cloud_admin", "new_name": "x"}]);
    let admin = spec(json!({ "delta_operations": deltas }));
    let run = pg_promote(&["--spec", &file("admin.json", admin)], &replica());
    let message = run.failed_with(2, "invalid_spec")["message"]
        .as_str()
        .unwrap();
    assert!(
        message.starts_with("invalid spec: delta_operations[0].name: "),
        "{message}"
    );
    let still_replica = spec(json!({"mode": "Replica", "upstream_connstring": "host=/x"}));
    let run = pg_promote(
        &["--spec", &file("replica.json", still_replica)],
        &replica(),
    );
    let error = run.failed_with(2, "invalid_spec");
    assert_eq!(
        error["message"],
        "spec.mode: the new spec must be Primary, not \"replica\""
    );
    // A flag that is not an LSN.
    let run = run_stage_within(PG_PROMOTE, &["--wal-flush-lsn", "x"], &replica(), LIMIT).0;
    assert_eq!(run.code, 2, "{}", run.stderr);
    // Past the checks, the compute's Postgres is not there.
    let run = pg_promote(&["--wal-flush-lsn", "0/1"], &replica());
    let message = run.failed_with(1, "postgres")["message"].as_str().unwrap();
    assert!(
        message.starts_with("connecting to the compute's postgres"),
        "{message}"
    );
}

#[test]
fn the_primary_s_password_is_in_no_message_and_no_log_line() {
    let document = nowhere(spec(json!({
        "mode": "Replica",
        "upstream_connstring": "host=/nonexistent port=1 user=u password=hunter2",
    })));
    let run = pg_promote(&["--log-format", "json"], &document);
    let message = run.failed_with(1, "network")["message"].as_str().unwrap();
    assert!(
        message.starts_with("connecting to the primary (upstream_connstring): "),
        "{message}"
    );
    assert!(!run.stdout.contains("hunter2"), "{}", run.stdout);
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
}
