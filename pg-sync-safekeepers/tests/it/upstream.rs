//! A vanilla upstream primary: IDENTIFY_SYSTEM on a physical replication connection to a real
//! PostgreSQL, over the Unix socket (trust) and TCP (SCRAM, MD5, cleartext, a wrong password).

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::time::{Duration, Instant};

use crate::util::{document, lsn_and_method, run_doc, safekeeper, spec_json, Behaviour, StageRun};
use compute_spec::Lsn;
use pg_test_support::TestPostgres;
use serde_json::json;

fn primary() -> TestPostgres {
    let pg = TestPostgres::builder()
        .setting("wal_level", "replica")
        .setting("max_wal_senders", 5)
        .tcp(true)
        .hba_line("host replication rep_scram 127.0.0.1/32 scram-sha-256")
        .hba_line("host replication rep_md5 127.0.0.1/32 md5")
        .hba_line("host replication rep_clear 127.0.0.1/32 password")
        .hba_line("local replication all trust")
        .start();
    pg.psql(
        "CREATE ROLE rep_scram LOGIN REPLICATION PASSWORD 'pw-scram';\
         CREATE ROLE rep_clear LOGIN REPLICATION PASSWORD 'pw clear';\
         SET password_encryption = 'md5';\
         CREATE ROLE rep_md5 LOGIN REPLICATION PASSWORD 'pw-md5';",
    );
    pg
}

/// The flush position: IDENTIFY_SYSTEM reports `xlogpos` as flushed WAL, and with
/// `synchronous_commit=off` the write position can run ahead of it.
fn current_lsn(pg: &TestPostgres) -> Lsn {
    pg.psql("SELECT pg_current_wal_flush_lsn()")
        .trim()
        .parse()
        .unwrap()
}

fn sync_from(connstr: &str) -> StageRun {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_json(json!({"upstream_connstring": connstr}));
    let doc = document(
        &spec,
        &dir.path().join("pgdata"),
        &pg_test_support::pg_bin("postgres"),
    );
    run_doc(&doc, &["--timeout", "10s"])
}

#[test]
fn identify_system_gives_the_current_wal_position() {
    let pg = primary();
    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i");
    let before = current_lsn(&pg);
    let outcome = sync_from(&pg.connstr("postgres"));
    let after = current_lsn(&pg);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let (lsn, method) = lsn_and_method(&outcome);
    assert_eq!(method, "upstream");
    let lsn: Lsn = lsn.parse().unwrap();
    assert!(
        before <= lsn && lsn <= after,
        "{before} <= {lsn} <= {after}"
    );
    assert!(lsn.0 > 0x1000000, "{lsn}");
    assert!(outcome.json["sync_safekeepers"]["sync_safekeepers_ms"].is_u64());

    // Password methods over TCP.
    for (user, password) in [
        ("rep_scram", "pw-scram"),
        ("rep_md5", "pw-md5"),
        ("rep_clear", "pw clear"),
    ] {
        let connstr = format!(
            "host=127.0.0.1 port={} user={user} password='{password}' dbname=postgres",
            pg.port()
        );
        let outcome = sync_from(&connstr);
        assert_eq!(outcome.code, 0, "{user}: {}", outcome.json);
        assert_eq!(lsn_and_method(&outcome).1, "upstream");
        assert!(
            !outcome.stderr.contains(password),
            "{user}'s password was logged"
        );
    }
}

#[test]
fn wrong_password_and_bad_connstr_are_clear_errors() {
    let pg = primary();
    let connstr = format!(
        "postgresql://rep_scram:nope@127.0.0.1:{}/postgres",
        pg.port()
    );
    let outcome = sync_from(&connstr);
    assert_eq!(outcome.code, compute_spec::exit_code::RUNTIME as i32);
    outcome.error_of_kind("auth");
    assert!(!outcome.json.to_string().contains("nope"));

    let outcome = sync_from("host=127.0.0.1 port=notaport");
    outcome.error_of_kind("invalid_spec");
}

/// An upstream that falls silent (`behaviour`): with 1 s per connection and 3 s in all, the
/// stage tries it again, then fails with a timeout naming it, well within a bound.
fn gives_up_on_a_silent_upstream(behaviour: Behaviour) {
    let upstream = safekeeper(behaviour, "secret");
    let dir = tempfile::tempdir().unwrap();
    let connstr = format!("postgresql://rep:secret@{}/postgres", upstream.address());
    let spec = spec_json(json!({"upstream_connstring": connstr}));
    let doc = document(
        &spec,
        &dir.path().join("pgdata"),
        &pg_test_support::pg_bin("postgres"),
    );
    let started = Instant::now();
    let outcome = run_doc(&doc, &["--timeout", "3s", "--startup-timeout", "1s"]);
    let took = started.elapsed();
    let error = outcome.error_of_kind("timeout");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(&upstream.address()), "{message}");
    assert!(message.contains("no answer within"), "{message}");
    assert!(!message.contains("secret"), "{message}");
    assert_eq!(upstream.connections(), 2, "{}", outcome.stderr);
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn an_upstream_silent_after_the_connect_is_retried_then_reported() {
    gives_up_on_a_silent_upstream(Behaviour::Hang);
}

#[test]
fn an_upstream_silent_after_the_startup_is_retried_then_reported() {
    gives_up_on_a_silent_upstream(Behaviour::SilentAfterStartup);
}

/// An upstream answering `IDENTIFY_SYSTEM` with ~40 MiB of rows (the protocol sends one):
/// the stage refuses the answer, naming the server, without keeping the rows (its peak
/// resident memory is sampled while it runs).
#[test]
fn an_upstream_flooding_identify_system_is_refused_without_the_memory() {
    let columns = [
        ("systemid", "7412345678901234567"),
        ("timeline", "1"),
        ("xlogpos", "0/16B5A50"),
        ("dbname", "postgres"),
    ];
    let upstream = pg_test_support::FakeBackend::start(pg_test_support::Script {
        password: "secret".to_string(),
        command: "IDENTIFY_SYSTEM".to_string(),
        answer: pg_test_support::Answer::Rows {
            columns: columns
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            // A DataRow of these columns is 65 bytes: ~40 MiB in all.
            count: 40 << 20 >> 6,
        },
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let connstr = format!("postgresql://rep:secret@{}/postgres", upstream.address());
    let spec = spec_json(json!({"upstream_connstring": connstr}));
    let doc = document(
        &spec,
        &dir.path().join("pgdata"),
        &pg_test_support::pg_bin("postgres"),
    );
    let (outcome, took, peak_kib) = pg_test_support::run_stage_measured(
        env!("CARGO_BIN_EXE_pg-sync-safekeepers"),
        &["--timeout", "60s"],
        &serde_json::to_string(&doc).unwrap(),
        Duration::from_secs(120),
    );
    eprintln!("peak RSS {peak_kib} KiB, {took:?}");
    let outcome = outcome.expect_json();
    let error = outcome.error_of_kind("server");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(&upstream.address()), "{message}");
    assert!(message.contains("larger than"), "{message}");
    assert_eq!(upstream.connections(), 1, "{}", outcome.stderr);
    assert!(peak_kib < 64 << 10, "peak RSS {peak_kib} KiB");
}
