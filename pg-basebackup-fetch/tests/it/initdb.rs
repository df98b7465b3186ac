//! The "none" source on real PostgreSQL: initdb, configuration, start, and the safe wipe.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::util;

use compute_spec::document::PGDATA_MARKER;
use compute_spec::exit_code;
use pg_test_support::{free_tcp_port, TestDir};

#[test]
fn initdb_builds_a_startable_pgdata() {
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    let port = free_tcp_port();
    let document = util::document(&pgdata, port, |_| {});
    let outcome = util::run_stage(&document, &[]);
    assert_eq!(outcome.code, i32::from(exit_code::OK), "{}", outcome.stderr);
    let section = &outcome.json["basebackup"];
    assert_eq!(section["source"], "initdb");
    assert_eq!(section["basebackup_bytes"], 0);
    assert!(section["basebackup_ms"].as_u64().unwrap() > 0);
    assert!(pgdata.join(PGDATA_MARKER).exists());
    let hba = std::fs::read_to_string(pgdata.join("pg_hba.conf")).unwrap();
    assert_eq!(hba.matches("host\tall\t\tall\t\tall\t\tmd5").count(), 1);
    let conf = std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap();
    assert!(conf.contains("max_connections"), "{conf}");

    let postgres = util::RunningPostgres::start(&document);
    let row = postgres.client().query_one("SHOW port", &[]).unwrap();
    assert_eq!(row.get::<_, String>(0), port.to_string());
    drop(postgres);

    // A second run wipes what the first built and builds it again.
    let again = util::run_stage(&document, &[]);
    assert_eq!(again.code, i32::from(exit_code::OK), "{}", again.stderr);
    let hba = std::fs::read_to_string(pgdata.join("pg_hba.conf")).unwrap();
    assert_eq!(hba.matches("host\tall\t\tall\t\tall\t\tmd5").count(), 1);
}

#[test]
fn a_foreign_directory_is_refused_and_untouched() {
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("home");
    std::fs::create_dir(&pgdata).unwrap();
    std::fs::write(pgdata.join("thesis.tex"), "years of work").unwrap();
    let document = util::document(&pgdata, free_tcp_port(), |_| {});
    let outcome = util::run_stage(&document, &[]);
    let error = outcome.failed_with(exit_code::RUNTIME, "refused");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(&pgdata.display().to_string()), "{message}");
    assert!(message.contains("-D"), "{message}");
    let names: Vec<_> = std::fs::read_dir(&pgdata)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["thesis.tex"]);
    assert_eq!(
        std::fs::read_to_string(pgdata.join("thesis.tex")).unwrap(),
        "years of work"
    );
}

#[test]
fn a_newer_stages_values_pass_through_untouched() {
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    let document = util::document(&pgdata, free_tcp_port(), |_| {});
    let mut input = serde_json::to_value(&document).unwrap();
    let sync = serde_json::json!({"lsn": "0/0", "method": "safekeepers-grpc", "quorum": 3});
    let spec_load =
        serde_json::json!({"source": "vault", "spec_load_ms": 0, "control_plane_attempts": 0});
    input["sync_safekeepers"] = sync.clone();
    input["spec_load"] = spec_load.clone();
    let run = pg_test_support::run_stage(
        env!("CARGO_BIN_EXE_pg-basebackup-fetch"),
        &["--template-cache-dir", &util::test_cache_dir()],
        &input.to_string(),
    )
    .expect_json();
    assert_eq!(run.code, i32::from(exit_code::OK), "{}", run.stderr);
    let written = run.json;
    assert_eq!(written["sync_safekeepers"], sync);
    assert_eq!(written["spec_load"], spec_load);
    assert_eq!(written["basebackup"]["source"], "initdb");
    // initdb fetched nothing: no counters.
    for counter in ["attempts", "files", "unpacked_bytes"] {
        assert!(written["basebackup"].get(counter).is_none(), "{counter}");
    }
}

/// SIGKILL of the stage while `initdb` runs: `initdb` dies with it. `initdb` is stopped
/// (SIGSTOP) before the stage is killed, so it cannot finish by itself: only the death
/// signal of the stage's child runner ends it (SIGKILL reaches a stopped process).
#[test]
fn a_killed_stage_leaves_no_initdb_running() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use pg_test_support::probe::{processes_of, wait_dead};

    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    let document = util::document(&pgdata, free_tcp_port(), |_| {});
    let mut stage = Command::new(env!("CARGO_BIN_EXE_pg-basebackup-fetch"))
        .arg("--no-template-cache")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = stage.stdin.take().unwrap();
    stdin
        .write_all(serde_json::to_string(&document).unwrap().as_bytes())
        .unwrap();
    drop(stdin);
    let needle = pgdata.to_string_lossy().into_owned();
    let initdb = pg_test_support::wait_for(Duration::from_secs(30), || {
        processes_of("initdb", &needle).first().copied()
    });
    let Some(initdb) = initdb else {
        let _ = stage.kill();
        let _ = stage.wait();
        panic!("initdb never started on {needle}");
    };
    kill(Pid::from_raw(initdb), Signal::SIGSTOP).unwrap();
    kill(Pid::from_raw(stage.id() as i32), Signal::SIGKILL).unwrap();
    stage.wait().unwrap();
    let died = wait_dead(initdb, Duration::from_secs(5));
    if !died {
        let _ = kill(Pid::from_raw(initdb), Signal::SIGKILL);
    }
    assert!(died, "initdb (pid {initdb}) outlived the SIGKILLed stage");
}
