//! The stages chained by hand, as a user would in a shell: compute-spec | pg-sync-safekeepers
//! | pg-basebackup-fetch, then pg-supervise and pg-reconcile once it reports ready.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdout, Command, Stdio};
use std::time::Duration;

use compute_spec::exit_code;
use compute_tools_tests::{
    binary, postmaster_pid, process_alive, psql, run_stage, wait_until, write_sample_spec,
    PostgresChild,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pg_test_support::{free_tcp_port, TestDir};
use serde_json::Value;

/// A running pg-supervise; killed (with its postmaster) on drop if the test fails.
struct Supervisor {
    child: PostgresChild,
    events: BufReader<ChildStdout>,
}

impl Supervisor {
    fn start(document: &str, pgdata: &Path) -> Supervisor {
        let mut child = Command::new(binary("pg-supervise"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning pg-supervise");
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(document.as_bytes())
            .expect("writing the document");
        drop(stdin);
        let events = BufReader::new(child.stdout.take().expect("piped stdout"));
        Supervisor {
            child: PostgresChild::new(child, pgdata),
            events,
        }
    }

    fn next_event(&mut self) -> Value {
        let mut line = String::new();
        self.events.read_line(&mut line).expect("reading an event");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("event {line:?}: {e}"))
    }

    fn wait_for(&mut self, event: &str) -> Value {
        loop {
            let value = self.next_event();
            if value.get("error").is_some() {
                panic!("pg-supervise failed: {value}");
            }
            if value["event"] == event {
                return value;
            }
        }
    }
}

#[test]
fn shell_pipeline_brings_up_the_spec_and_stops_cleanly() {
    let dir = TestDir::new("e2e-pipe");
    let port = free_tcp_port();
    let spec = write_sample_spec(dir.path(), port);
    let pgdata = dir.path().join("pgdata");
    let document_path = dir.path().join("doc.json");
    let script = format!(
        "set -o pipefail; '{}' -S '{}' -D '{}' -C postgresql://cloud_admin@localhost/postgres \
         -b '{}' | '{}' | '{}' > '{}'",
        binary("compute-spec").display(),
        spec.display(),
        pgdata.display(),
        pg_test_support::pg_bin("postgres").display(),
        binary("pg-sync-safekeepers").display(),
        binary("pg-basebackup-fetch").display(),
        document_path.display(),
    );
    let status = Command::new("bash").args(["-c", &script]).status().unwrap();
    assert!(status.success(), "the pipeline failed");
    let document_text = std::fs::read_to_string(&document_path).unwrap();
    let document: Value = serde_json::from_str(&document_text).unwrap();
    assert_eq!(document["sync_safekeepers"]["lsn"], "0/0");
    assert_eq!(document["basebackup"]["source"], "initdb");
    assert_eq!(document["instance"]["port"], port);
    assert!(pgdata.join("PG_VERSION").is_file());

    let mut supervisor = Supervisor::start(&document_text, &pgdata);
    let ready = supervisor.wait_for("ready");
    assert!(ready["start_postgres_ms"].as_u64().is_some(), "{ready}");

    let reconciled = run_stage("pg-reconcile", &[], &document_text);
    assert_eq!(reconciled.code, 0, "{}", reconciled.stderr);
    assert!(
        reconciled.json["reconcile"].is_object(),
        "{}",
        reconciled.stdout
    );

    let socket_dir = Path::new(document["instance"]["socket_dir"].as_str().unwrap());
    let roles = psql(
        socket_dir,
        port,
        "postgres",
        "select string_agg(rolname, ',' order by rolname) from pg_roles \
         where rolname in ('app_owner', 'app_reader')",
    );
    assert_eq!(roles, "app_owner,app_reader");
    let databases = psql(
        socket_dir,
        port,
        "postgres",
        "select string_agg(datname || ':' || pg_get_userbyid(datdba), ',' order by datname) \
         from pg_database where datname in ('app', 'analytics')",
    );
    assert_eq!(databases, "analytics:app_reader,app:app_owner");

    let postmaster = postmaster_pid(&pgdata).expect("postmaster.pid");
    kill(Pid::from_raw(supervisor.child.id() as i32), Signal::SIGTERM).unwrap();
    let exited = supervisor.wait_for("exited");
    assert_eq!(exited["code"], 0, "{exited}");
    let status = supervisor.child.wait().unwrap();
    assert_eq!(status.code(), Some(exit_code::OK as i32));
    assert!(wait_until(Duration::from_secs(5), || !process_alive(
        postmaster
    )));
}

#[test]
fn an_invalid_spec_stops_the_pipeline_with_the_first_error() {
    let dir = TestDir::new("e2e-bad");
    let pgdata = dir.path().join("pgdata");
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/neon/compute_tools-cluster_spec.json"
    );
    let spec = run_stage(
        "compute-spec",
        &["-S", fixture, "-D", pgdata.to_str().unwrap()],
        "",
    );
    assert_eq!(spec.code, exit_code::USAGE as i32);
    let synced = run_stage("pg-sync-safekeepers", &[], &spec.stdout);
    assert_eq!(synced.code, exit_code::RUNTIME as i32);
    let fetched = run_stage("pg-basebackup-fetch", &[], &synced.stdout);
    assert_eq!(fetched.code, exit_code::RUNTIME as i32);
    assert_eq!(
        fetched.json, spec.json,
        "the first error passes through unchanged"
    );
    assert_eq!(fetched.json["error"]["stage"], "compute-spec");
    let message = fetched.json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("duplicate entry in safekeeper_connstrings"),
        "{message}"
    );
    assert!(!pgdata.exists(), "nothing was created");
}

#[test]
fn unknown_document_fields_pass_through_every_stage() {
    let dir = TestDir::new("e2e-extra");
    let port = free_tcp_port();
    let spec = write_sample_spec(dir.path(), port);
    let pgdata = dir.path().join("pgdata");
    let started = run_stage(
        "compute-spec",
        &["-S", spec.to_str().unwrap(), "-D", pgdata.to_str().unwrap()],
        "",
    );
    assert_eq!(started.code, 0, "{}", started.stderr);
    let mut document = started.json;
    document["from_a_newer_stage"] = serde_json::json!({"kept": [1, 2, 3]});
    document["instance"]["future_field"] = Value::from("kept too");
    let synced = run_stage("pg-sync-safekeepers", &[], &document.to_string());
    assert_eq!(synced.code, 0, "{}", synced.stderr);
    let fetched = run_stage("pg-basebackup-fetch", &[], &synced.stdout);
    assert_eq!(fetched.code, 0, "{}", fetched.stderr);
    for output in [&synced.json, &fetched.json] {
        assert_eq!(
            output["from_a_newer_stage"]["kept"],
            serde_json::json!([1, 2, 3])
        );
        assert_eq!(output["instance"]["future_field"], "kept too");
        assert_eq!(output["sync_safekeepers"]["lsn"], "0/0");
    }
    assert_eq!(fetched.json["basebackup"]["source"], "initdb");
}
