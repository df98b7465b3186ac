//! The vanilla primary source against a real PostgreSQL primary: a writable Primary clone
//! (with the admin role created when the primary lacks it) and a streaming Replica.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::util;

use std::time::Duration;

use compute_spec::exit_code;
use pg_basebackup_fetch::replication;
use pg_basebackup_fetch::version::ServerVersion;
use pg_test_support::{free_tcp_port, wait_until, TestDir, TestPostgres};
use pg_test_support::{Answer, FakeBackend, Script, Silence};
use serde_json::json;

fn primary(superuser: &str) -> TestPostgres {
    let primary = TestPostgres::builder()
        .superuser(superuser)
        .setting("wal_level", "replica")
        .setting("max_wal_senders", "4")
        .hba_line("local replication all trust")
        .start();
    primary.psql("CREATE TABLE cloned(v int); INSERT INTO cloned VALUES (10), (20);");
    primary
}

fn upstream_document(
    pgdata: &std::path::Path,
    primary: &TestPostgres,
    mode: &str,
) -> compute_spec::document::ComputeDocument {
    let connstr = format!(
        "host={} port={} user={}",
        primary.socket_dir().display(),
        primary.port(),
        primary.superuser()
    );
    util::document(pgdata, free_tcp_port(), |spec| {
        spec["upstream_connstring"] = json!(connstr);
        spec["mode"] = json!(mode);
    })
}

fn values(client: &mut postgres::Client) -> Vec<i32> {
    let rows = client
        .query("SELECT v FROM cloned ORDER BY v", &[])
        .unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

#[test]
fn a_primary_clone_is_writable_and_gets_the_admin_role() {
    let primary = primary("origin_admin");
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    let document = upstream_document(&pgdata, &primary, "Primary");
    let outcome = util::run_stage(&document, &[]);
    assert_eq!(outcome.code, i32::from(exit_code::OK), "{}", outcome.stderr);
    let section = &outcome.json["basebackup"];
    assert_eq!(section["source"], "upstream");
    assert!(section["basebackup_bytes"].as_u64().unwrap() > 10_000_000);
    assert!(!pgdata.join("standby.signal").exists());

    let clone = util::RunningPostgres::start(&document);
    let mut client = clone.client();
    assert_eq!(values(&mut client), [10, 20]);
    client
        .batch_execute("INSERT INTO cloned VALUES (30)")
        .unwrap();
    assert_eq!(values(&mut client), [10, 20, 30]);
    let superuser: bool = client
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(superuser);
    // The primary did not see the clone's write.
    assert_eq!(primary.psql("SELECT count(*) FROM cloned").trim(), "2");
}

#[test]
fn a_replica_clone_streams_from_the_primary() {
    let primary = primary("cloud_admin");
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    let document = upstream_document(&pgdata, &primary, "Replica");
    let outcome = util::run_stage(&document, &[]);
    assert_eq!(outcome.code, i32::from(exit_code::OK), "{}", outcome.stderr);
    assert!(pgdata.join("standby.signal").exists());
    let conf = std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap();
    assert!(conf.contains("primary_conninfo="), "{conf}");

    let replica = util::RunningPostgres::start(&document);
    let mut client = replica.client();
    let in_recovery: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get(0);
    assert!(in_recovery);
    assert_eq!(values(&mut client), [10, 20]);
    primary.psql("INSERT INTO cloned VALUES (99)");
    assert!(
        wait_until(Duration::from_secs(15), || values(&mut client)
            == [10, 20, 99]),
        "the replica did not stream the new row"
    );
}

#[test]
fn an_unreachable_primary_is_retried_then_reported() {
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    let port = free_tcp_port();
    let document = util::document(&pgdata, free_tcp_port(), |spec| {
        spec["upstream_connstring"] = json!(format!("host=127.0.0.1 port={port} user=x"));
    });
    let outcome = util::run_stage(&document, &["--retries", "2", "--retry-initial-ms", "5"]);
    outcome.failed_with(exit_code::RUNTIME, "network");
    assert_eq!(
        outcome.stderr.matches("retrying in").count(),
        2,
        "{}",
        outcome.stderr
    );
}

#[test]
fn scram_and_md5_passwords_work_and_a_wrong_one_fails_at_once() {
    let primary = TestPostgres::builder()
        .setting("wal_level", "replica")
        .setting("max_wal_senders", "4")
        .hba_line("local replication scram_user scram-sha-256")
        .hba_line("local replication md5_user md5")
        .start();
    primary.psql(
        "SET password_encryption = 'scram-sha-256'; \
         CREATE ROLE scram_user REPLICATION LOGIN PASSWORD 's3cret'; \
         SET password_encryption = 'md5'; \
         CREATE ROLE md5_user REPLICATION LOGIN PASSWORD 'md5pass';",
    );
    let attempt = |user: &str, password: &str| {
        let dir = TestDir::new("bbf-");
        let connstr = format!(
            "host={} port={} user={user} password={password}",
            primary.socket_dir().display(),
            primary.port()
        );
        let document = util::document(&dir.path().join("pgdata"), free_tcp_port(), |spec| {
            spec["upstream_connstring"] = json!(connstr);
            spec["mode"] = json!("Replica");
        });
        util::run_stage(&document, &["--retry-initial-ms", "5"])
    };
    for (user, password) in [("scram_user", "s3cret"), ("md5_user", "md5pass")] {
        let outcome = attempt(user, password);
        assert_eq!(
            outcome.code,
            i32::from(exit_code::OK),
            "{user}: {}",
            outcome.stderr
        );
    }
    let outcome = attempt("scram_user", "wrong");
    let error = outcome.failed_with(exit_code::RUNTIME, "auth");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );
    assert!(!outcome.stderr.contains("retrying"), "{}", outcome.stderr);
}

#[test]
fn a_replica_of_a_primary_without_the_admin_role_is_refused_clearly() {
    let primary = primary("origin_admin");
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    let document = upstream_document(&pgdata, &primary, "Replica");
    let outcome = util::run_stage(&document, &[]);
    assert_eq!(
        outcome.code,
        i32::from(exit_code::USAGE),
        "{}",
        outcome.stderr
    );
    let message = outcome.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"cloud_admin\""), "{message}");
    assert!(message.contains("create it on the primary"), "{message}");
}

fn parse_lsn(text: &str) -> u64 {
    let (high, low) = text.trim().split_once('/').unwrap();
    (u64::from_str_radix(high, 16).unwrap() << 32) | u64::from_str_radix(low, 16).unwrap()
}

#[test]
fn a_static_clone_replays_up_to_its_lsn_read_only() {
    let primary = primary("cloud_admin");
    // A target two WAL segments ahead: the primary passes it after the clone is taken.
    let target = parse_lsn(&primary.psql("SELECT pg_current_wal_lsn()")) + 2 * 16 * 1024 * 1024;
    let lsn = format!("{:X}/{:X}", target >> 32, target & 0xFFFF_FFFF);
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    let connstr = format!(
        "host={} port={} user=cloud_admin",
        primary.socket_dir().display(),
        primary.port()
    );
    let document = util::document(&pgdata, free_tcp_port(), |spec| {
        spec["upstream_connstring"] = json!(connstr);
        spec["mode"] = json!({ "Static": lsn });
    });
    let outcome = util::run_stage(&document, &[]);
    assert_eq!(outcome.code, i32::from(exit_code::OK), "{}", outcome.stderr);
    assert!(pgdata.join("standby.signal").exists());
    let conf = std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap();
    assert!(
        conf.contains(&format!("recovery_target_lsn='{lsn}'")),
        "{conf}"
    );
    primary.psql("INSERT INTO cloned VALUES (30)");
    while parse_lsn(&primary.psql("SELECT pg_current_wal_lsn()")) <= target {
        primary.psql(
            "INSERT INTO cloned VALUES (0); DELETE FROM cloned WHERE v = 0; SELECT pg_switch_wal()",
        );
    }
    primary.psql("INSERT INTO cloned VALUES (99)");
    let clone = util::RunningPostgres::start(&document);
    let mut client = clone.client();
    let paused = wait_until(Duration::from_secs(15), || {
        client
            .query_one("SELECT pg_get_wal_replay_pause_state() = 'paused'", &[])
            .unwrap()
            .get(0)
    });
    assert!(paused, "the static clone did not reach {lsn}");
    assert_eq!(values(&mut client), [10, 20, 30]);
    assert!(client
        .batch_execute("INSERT INTO cloned VALUES (1)")
        .is_err());
}

/// Over TCP (the stream is spliced from a TCP socket then, not a Unix one), with a table
/// spread over many CopyData messages: every row arrives.
#[test]
fn a_clone_over_tcp_has_every_row() {
    let primary = TestPostgres::builder()
        .superuser("cloud_admin")
        .setting("wal_level", "replica")
        .setting("max_wal_senders", "4")
        .tcp(true)
        .hba_line("host all all 127.0.0.1/32 trust")
        .hba_line("host replication all 127.0.0.1/32 trust")
        .start();
    primary.psql(
        "CREATE TABLE big AS SELECT g AS v, md5(g::text) AS t FROM generate_series(1, 200000) g",
    );
    let digest = "SELECT count(*)::text || ' ' || sum(v)::text || ' ' \
                  || md5(string_agg(t, '' ORDER BY v)) FROM big";
    let expected = primary.psql(digest).trim().to_string();
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    let connstr = format!("host=127.0.0.1 port={} user=cloud_admin", primary.port());
    let document = util::document(&pgdata, free_tcp_port(), |spec| {
        spec["upstream_connstring"] = json!(connstr);
        spec["mode"] = json!("Primary");
    });
    let outcome = util::run_stage(&document, &[]);
    assert_eq!(outcome.code, i32::from(exit_code::OK), "{}", outcome.stderr);
    let clone = util::RunningPostgres::start(&document);
    let got: String = clone.client().query_one(digest, &[]).unwrap().get(0);
    assert_eq!(got, expected);
    assert!(expected.starts_with("200000 "), "{expected}");
}

/// A primary stand-in (the pageserver stand-in answering `BASE_BACKUP` the way a primary
/// does) that falls silent at `silence`, for a compute in `mode`: with 1 s timeouts and one
/// retry the stage gives up well within a bound, naming the primary; `connections` is how
/// many it must have opened.
fn gives_up_on_a_silent_primary(silence: Silence, mode: &str, connections: usize) {
    let standin = silent_primary(silence);
    let dir = TestDir::new("bbf-");
    let document = primary_standin_document(&dir, &standin, mode);
    let (outcome, took) =
        util::run_stage_within(&document, &util::QUICK_GIVE_UP, Duration::from_secs(30));
    let error = outcome.failed_with(exit_code::RUNTIME, "network");
    let message = error["message"].as_str().unwrap();
    let server = format!("primary 127.0.0.1:{}", standin.port);
    assert!(message.contains(&server), "{message}");
    assert!(message.contains("said nothing for 1s"), "{message}");
    assert!(!message.contains("secret"), "{message}");
    assert_eq!(standin.seen().len(), connections, "{}", outcome.stderr);
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// A primary stand-in serving a small tar as `BASE_BACKUP`, falling silent at `silence`.
fn silent_primary(silence: Silence) -> FakeBackend {
    let mut tar = tar::Builder::new(Vec::new());
    for name in ["global/1", "global/2", "global/3", "global/4"] {
        let data = vec![7u8; 64 << 10];
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        tar.append_data(&mut header, name, data.as_slice()).unwrap();
    }
    primary_standin(tar.into_inner().unwrap(), silence)
}

/// A primary stand-in answering `BASE_BACKUP` with `archive`, falling silent at `silence`.
fn primary_standin(archive: Vec<u8>, silence: Silence) -> FakeBackend {
    FakeBackend::start(Script {
        password: "secret".to_string(),
        command: replication::base_backup_command(ServerVersion(
            pg_test_support::pg_major() * 10_000,
        ))
        .to_string(),
        answer: Answer::Copy {
            bytes: archive,
            replication: true,
        },
        silence,
        ..Default::default()
    })
}

#[test]
fn a_corrupt_archive_from_a_primary_fails_at_once_not_after_a_minute_of_retries() {
    // Not a tar: the first header's checksum is wrong.
    let standin = primary_standin(vec![b'A'; 64 << 10], Silence::Never);
    let dir = TestDir::new("bbf-");
    let document = primary_standin_document(&dir, &standin, "Primary");
    let (outcome, took) = util::run_stage_within(&document, &[], Duration::from_secs(120));
    let error = outcome.failed_with(exit_code::RUNTIME, "server");
    assert_eq!(error["retryable"], false);
    let message = error["message"].as_str().unwrap();
    let server = format!("primary 127.0.0.1:{}", standin.port);
    // The primary is named with its version (`… (PostgreSQL 15.0) sent a corrupt …`).
    assert!(
        message.starts_with(&format!("{server} (PostgreSQL ")),
        "{message}"
    );
    assert!(
        message.contains(") sent a corrupt basebackup archive"),
        "{message}"
    );
    assert!(message.contains("cksum"), "{message}");
    assert_eq!(standin.seen().len(), 1, "{}", outcome.stderr);
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// A document for a compute in `mode` cloning the stand-in, with PGDATA in `dir`.
fn primary_standin_document(
    dir: &TestDir,
    standin: &FakeBackend,
    mode: &str,
) -> compute_spec::document::ComputeDocument {
    let connstr = format!(
        "host=127.0.0.1 port={} user=rep password=secret",
        standin.port
    );
    util::document(&dir.path().join("pgdata"), free_tcp_port(), |spec| {
        spec["upstream_connstring"] = json!(connstr);
        spec["mode"] = json!(mode);
    })
}

#[test]
fn a_primary_that_stalls_after_some_progress_is_retried_past_the_no_progress_timeout() {
    // Every attempt brings half the archive, then 1 s of silence ends it: each made
    // progress, so the 2 s without progress never run out; --retries decides (5 attempts,
    // ~5 s in all, more than the no-progress timeout).
    let standin = silent_primary(Silence::MidStream);
    let dir = TestDir::new("bbf-");
    let document = primary_standin_document(&dir, &standin, "Primary");
    let flags = [
        "--no-progress-timeout",
        "2s",
        "--idle-timeout",
        "1s",
        "--retries",
        "4",
        "--retry-initial-ms",
        "10",
        "--retry-multiplier",
        "1",
    ];
    let (outcome, took) = util::run_stage_within(&document, &flags, Duration::from_secs(30));
    let error = outcome.failed_with(exit_code::RUNTIME, "network");
    let message = error["message"].as_str().unwrap();
    let server = format!("primary 127.0.0.1:{}", standin.port);
    assert!(message.contains(&server), "{message}");
    assert!(
        message.contains("gave up after 5 attempts (--retries 4 used up)"),
        "{message}"
    );
    assert_eq!(standin.seen().len(), 5, "{}", outcome.stderr);
    assert!(took > Duration::from_secs(4), "took only {took:?}");
}

#[test]
fn a_primary_silent_after_the_connect_is_given_up_on() {
    gives_up_on_a_silent_primary(Silence::AtStartup, "Primary", 2);
}

#[test]
fn a_primary_silent_before_the_backup_starts_is_given_up_on() {
    gives_up_on_a_silent_primary(Silence::AfterCommand, "Primary", 2);
}

#[test]
fn a_primary_silent_in_the_middle_of_the_stream_is_given_up_on() {
    gives_up_on_a_silent_primary(Silence::MidStream, "Primary", 2);
}

#[test]
fn a_silent_primary_does_not_hang_the_admin_role_check_of_a_replica() {
    // The role check's connection times out (a warning), then both fetch attempts do.
    gives_up_on_a_silent_primary(Silence::AtStartup, "Replica", 3);
}
