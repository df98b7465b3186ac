//! A Primary with Neon storage: the TIMELINE_STATUS fast path against safekeeper stand-ins, and
//! the slow path through a script standing in for `postgres --sync-safekeepers`.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{
    document, fake_postgres, lsn_and_method, neon_spec, run_doc, safekeeper, Behaviour, StageRun,
};
use pg_test_support::probe::{wait_dead, wait_for_path};
use pg_test_support::{wait_until, FakeBackend, TestDir};
use serde_json::{json, Value};

const TOKEN: &str = "storage-token-123";
const TENANT: &str = "b0554b632bd4d547a63b86c3630317e8";
const TIMELINE: &str = "2414a61ffc94e428f14b5758fe308e13";
/// Generous per-safekeeper time where the verdict, not the timeout, is under test (the
/// machine is shared; 100 ms can pass before a stand-in's thread is scheduled).
const PATIENT: [&str; 2] = ["--fast-path-timeout", "3s"];

/// A script that records its environment, logs a line on stderr and prints `lsn`.
fn printing(lsn: &str) -> String {
    format!(
        "echo \"PGDATA=$PGDATA TOKEN=$NEON_AUTH_TOKEN ARGS=$*\" > \"$(dirname \"$0\")/ran\"\n\
         echo 'sync-safekeepers: got a quorum' >&2\n\
         echo {lsn}"
    )
}

fn addresses(safekeepers: &[&FakeBackend]) -> Vec<String> {
    safekeepers.iter().map(|s| s.address()).collect()
}

fn run_neon(
    dir: &TestDir,
    safekeepers: &[&FakeBackend],
    script: &str,
    mode: Value,
    args: &[&str],
) -> StageRun {
    let pgbin = fake_postgres(dir.path(), script);
    let spec = neon_spec(&addresses(safekeepers), TOKEN, mode);
    let doc = document(&spec, &dir.path().join("pgdata"), &pgbin);
    run_doc(&doc, args)
}

fn ran(dir: &TestDir) -> Option<String> {
    std::fs::read_to_string(dir.path().join("ran")).ok()
}

#[test]
fn agreeing_quorum_takes_the_fast_path() {
    let dir = TestDir::new("sync-fast");
    let sks: Vec<FakeBackend> = (0..3)
        .map(|_| safekeeper(Behaviour::Answer("0/3000028", "0/3000028"), TOKEN))
        .collect();
    let outcome = run_neon(
        &dir,
        &sks.iter().collect::<Vec<_>>(),
        &printing("0/9"),
        json!("Primary"),
        &PATIENT,
    );
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(
        lsn_and_method(&outcome),
        ("0/3000028".into(), "safekeepers-fast-path".into())
    );
    let check_ms = &outcome.json["sync_safekeepers"]["sync_sk_check_ms"];
    assert!(check_ms.is_u64());
    eprintln!("measured: fast path with 3 agreeing safekeepers took {check_ms} ms");
    assert!(ran(&dir).is_none(), "the slow path ran");
    // The safekeepers of the quorum saw upstream's startup: no_user, the ids, the token.
    // (Connections that got as far as the password: a third one may still be starting up.)
    let seen: Vec<_> = sks
        .iter()
        .flat_map(FakeBackend::seen)
        .filter(|seen| !seen.password.is_empty())
        .collect();
    assert!(seen.len() >= 2, "{seen:?}");
    let startup = &seen[0];
    let get = |key: &str| startup.param(key).map(str::to_string);
    assert_eq!(get("user").as_deref(), Some("no_user"));
    assert_eq!(
        get("options"),
        Some(format!("-c timeline_id={TIMELINE} tenant_id={TENANT}"))
    );
    assert_eq!(startup.password, TOKEN);
    assert!(!outcome.stderr.contains(TOKEN), "the token was logged");
}

#[test]
fn one_of_three_down_still_takes_the_fast_path() {
    let dir = TestDir::new("sync-down1");
    let a = safekeeper(Behaviour::Answer("0/4000000", "0/4000000"), TOKEN);
    let b = FakeBackend::down();
    let c = safekeeper(Behaviour::Answer("0/4000000", "0/4000000"), TOKEN);
    let outcome = run_neon(
        &dir,
        &[&a, &b, &c],
        &printing("0/9"),
        json!("Primary"),
        &PATIENT,
    );
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(
        lsn_and_method(&outcome),
        ("0/4000000".into(), "safekeepers-fast-path".into())
    );
    assert!(ran(&dir).is_none());
}

#[test]
fn disagreement_takes_the_slow_path_with_pgdata_and_token() {
    let dir = TestDir::new("sync-slow");
    // Any two of them disagree, whichever answer first.
    let a = safekeeper(Behaviour::Answer("0/4000000", "0/4000000"), TOKEN);
    let b = safekeeper(Behaviour::Answer("0/4000100", "0/4000100"), TOKEN);
    let c = safekeeper(Behaviour::Answer("0/4000200", "0/4000200"), TOKEN);
    let outcome = run_neon(
        &dir,
        &[&a, &b, &c],
        &printing("0/4000100"),
        json!("Primary"),
        &[],
    );
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(
        lsn_and_method(&outcome),
        ("0/4000100".into(), "sync-safekeepers".into())
    );
    let section = &outcome.json["sync_safekeepers"];
    assert!(section["sync_sk_check_ms"].is_u64() && section["sync_safekeepers_ms"].is_u64());
    let pgdata = dir.path().join("pgdata");
    assert_eq!(
        ran(&dir).unwrap().trim(),
        format!(
            "PGDATA={} TOKEN={TOKEN} ARGS=--sync-safekeepers",
            pgdata.display()
        )
    );
    // The conf the real binary reads names our safekeepers, tenant and timeline.
    let conf = std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap();
    assert!(conf.contains(&addresses(&[&a, &b, &c]).join(",")), "{conf}");
    assert!(conf.contains(TENANT) && conf.contains(TIMELINE), "{conf}");
    assert!(pgdata.join(compute_spec::document::PGDATA_MARKER).is_file());
    // The child's stderr reached our log.
    assert!(
        outcome.stderr.contains("got a quorum"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn uncommitted_or_unreachable_quorum_takes_the_slow_path() {
    let dir = TestDir::new("sync-uncommitted");
    let a = safekeeper(Behaviour::Answer("0/5000000", "0/4000000"), TOKEN);
    let b = safekeeper(Behaviour::Answer("0/5000000", "0/4000000"), TOKEN);
    let outcome = run_neon(
        &dir,
        &[&a, &b],
        &printing("0/5000000"),
        json!("Primary"),
        &[],
    );
    assert_eq!(lsn_and_method(&outcome).1, "sync-safekeepers");

    let dir = TestDir::new("sync-hang");
    let hung: Vec<FakeBackend> = (0..3).map(|_| safekeeper(Behaviour::Hang, TOKEN)).collect();
    let start = Instant::now();
    let outcome = run_neon(
        &dir,
        &hung.iter().collect::<Vec<_>>(),
        &printing("0/6"),
        json!("Primary"),
        &[],
    );
    assert_eq!(
        lsn_and_method(&outcome),
        ("0/6".into(), "sync-safekeepers".into())
    );
    let check_ms = outcome.json["sync_safekeepers"]["sync_sk_check_ms"]
        .as_u64()
        .unwrap();
    assert!(
        (100..1000).contains(&check_ms),
        "fast path took {check_ms} ms"
    );
    eprintln!("measured: fast path with 3 hanging safekeepers took {check_ms} ms");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn safekeepers_silent_after_the_startup_do_not_hold_the_fast_path() {
    let dir = TestDir::new("sync-mute");
    let mute: Vec<FakeBackend> = (0..3)
        .map(|_| safekeeper(Behaviour::SilentAfterStartup, TOKEN))
        .collect();
    let start = Instant::now();
    let outcome = run_neon(
        &dir,
        &mute.iter().collect::<Vec<_>>(),
        &printing("0/7"),
        json!("Primary"),
        &["--fast-path-timeout", "300ms"],
    );
    assert_eq!(
        lsn_and_method(&outcome),
        ("0/7".into(), "sync-safekeepers".into())
    );
    let check_ms = outcome.json["sync_safekeepers"]["sync_sk_check_ms"]
        .as_u64()
        .unwrap();
    assert!(
        (300..2000).contains(&check_ms),
        "fast path took {check_ms} ms"
    );
    // They were asked: the silence came after the startup.
    assert!(mute.iter().all(|sk| sk.connections() == 1));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn wrong_token_is_a_failed_answer() {
    let dir = TestDir::new("sync-token");
    let sks: Vec<FakeBackend> = (0..3)
        .map(|_| safekeeper(Behaviour::Answer("0/7", "0/7"), "another-token"))
        .collect();
    let outcome = run_neon(
        &dir,
        &sks.iter().collect::<Vec<_>>(),
        &printing("0/8"),
        json!("Primary"),
        &[],
    );
    assert_eq!(
        lsn_and_method(&outcome),
        ("0/8".into(), "sync-safekeepers".into())
    );
}

#[test]
fn replica_and_static_never_contact_safekeepers() {
    let sk = safekeeper(Behaviour::Answer("0/7", "0/7"), TOKEN);
    for (mode, expected) in [
        (json!("Replica"), ("0/0", "replica")),
        (json!({"Static": "0/16B5A50"}), ("0/16B5A50", "static")),
    ] {
        let dir = TestDir::new("sync-replica");
        let outcome = run_neon(&dir, &[&sk], &printing("0/9"), mode, &[]);
        assert_eq!(outcome.code, 0, "{}", outcome.stderr);
        assert_eq!(
            lsn_and_method(&outcome),
            (expected.0.into(), expected.1.into())
        );
        assert!(ran(&dir).is_none());
    }
    assert_eq!(sk.connections(), 0);
}

#[test]
fn failing_child_is_a_child_error_with_its_stderr() {
    let dir = TestDir::new("sync-fail");
    let sk = FakeBackend::down();
    let script = "echo 'FATAL: no quorum reachable' >&2\nexit 3";
    let outcome = run_neon(&dir, &[&sk], script, json!("Primary"), &["--retries", "0"]);
    assert_eq!(outcome.code, compute_spec::exit_code::RUNTIME as i32);
    let message = outcome.error_of_kind("child")["message"].as_str().unwrap();
    assert!(
        message.contains("no quorum reachable") && message.contains("exit status: 3"),
        "{message}"
    );
}

#[test]
fn output_that_is_not_an_lsn_is_an_error() {
    let dir = TestDir::new("sync-badlsn");
    let sk = FakeBackend::down();
    let outcome = run_neon(
        &dir,
        &[&sk],
        &printing("garbage"),
        json!("Primary"),
        &["--retries", "0"],
    );
    let message = outcome.error_of_kind("child")["message"].as_str().unwrap();
    assert!(
        message.contains("\"garbage\", which is not an LSN"),
        "{message}"
    );
}

#[test]
fn after_shutdown_needs_the_conf_postgres_ran_with() {
    let dir = TestDir::new("sync-noconf");
    let sk = FakeBackend::down();
    let outcome = run_neon(
        &dir,
        &[&sk],
        &printing("0/1"),
        json!("Primary"),
        &["--after-shutdown"],
    );
    assert_eq!(outcome.code, compute_spec::exit_code::USAGE as i32);
    let message = outcome.json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("postgresql.conf does not exist"),
        "{message}"
    );
    assert!(ran(&dir).is_none());
}

#[test]
fn failing_child_is_retried_with_backoff() {
    let dir = TestDir::new("sync-retry");
    let sk = FakeBackend::down();
    let script = "state=\"$(dirname \"$0\")/attempted\"\n\
                  if [ ! -e \"$state\" ]; then touch \"$state\"; echo 'first try fails' >&2; exit 1; fi\n\
                  echo 0/A000000";
    let start = Instant::now();
    let outcome = run_neon(&dir, &[&sk], script, json!("Primary"), &["--retries", "1"]);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(lsn_and_method(&outcome).0, "0/A000000");
    assert!(start.elapsed() >= Duration::from_millis(1100), "no backoff");
}

#[test]
fn hanging_child_is_killed_at_the_timeout() {
    let dir = TestDir::new("sync-timeout");
    let sk = FakeBackend::down();
    let script = "sleep 30 &\necho $! > \"$(dirname \"$0\")/sleeper\"\nwait";
    let start = Instant::now();
    let outcome = run_neon(
        &dir,
        &[&sk],
        script,
        json!("Primary"),
        &["--timeout", "500ms"],
    );
    let elapsed = start.elapsed();
    assert_eq!(outcome.code, compute_spec::exit_code::RUNTIME as i32);
    let error = outcome.error_of_kind("timeout");
    assert!(
        error["message"].as_str().unwrap().contains(&sk.address()),
        "{error}"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    eprintln!("measured: --timeout 500ms stage run took {elapsed:?}");
    let sleeper = std::fs::read_to_string(dir.path().join("sleeper")).unwrap();
    assert!(
        wait_dead(pid(&sleeper), DEATH),
        "the child's child survived"
    );
}

#[test]
fn sigterm_is_forwarded_to_the_child() {
    let dir = TestDir::new("sync-sigterm");
    let sk = FakeBackend::down();
    let here = "$(dirname \"$0\")";
    let script = format!(
        "trap 'echo term > \"{here}/got-term\"; exit 3' TERM\n\
         touch \"{here}/started\"\nwhile true; do sleep 0.05; done"
    );
    let pgbin = fake_postgres(dir.path(), &script);
    let spec = neon_spec(std::slice::from_ref(&sk.address()), TOKEN, json!("Primary"));
    let doc = document(&spec, &dir.path().join("pgdata"), &pgbin);
    let mut child = Command::new(env!("CARGO_BIN_EXE_pg-sync-safekeepers"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &doc).unwrap();
    wait_for(&dir.path().join("started"));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(compute_spec::exit_code::RUNTIME as i32)
    );
    let stdout: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        stdout["error"]["message"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{stdout}"
    );
    assert!(
        dir.path().join("got-term").is_file(),
        "the child did not get SIGTERM"
    );
}

#[test]
fn sigterm_without_a_child_terminates_the_stage() {
    let dir = TestDir::new("sync-sigterm-early");
    let sk = safekeeper(Behaviour::Hang, TOKEN);
    let pgbin = fake_postgres(dir.path(), &printing("0/1"));
    let spec = neon_spec(std::slice::from_ref(&sk.address()), TOKEN, json!("Primary"));
    let doc = document(&spec, &dir.path().join("pgdata"), &pgbin);
    let mut stage = Command::new(env!("CARGO_BIN_EXE_pg-sync-safekeepers"))
        .args(["--fast-path-timeout", "20s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    serde_json::to_writer(stage.stdin.take().unwrap(), &doc).unwrap();
    let start = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || sk.connections() > 0),
        "no fast-path connection"
    );
    let pid = nix::unistd::Pid::from_raw(stage.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = stage.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(nix::libc::SIGTERM), "{status}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(ran(&dir).is_none());
}

#[test]
fn the_child_dies_with_the_stage() {
    let dir = TestDir::new("sync-sigkill");
    let sk = FakeBackend::down();
    let here = "$(dirname \"$0\")";
    let script = format!(
        "echo $$ > \"{here}/pid\"\nmv \"{here}/pid\" \"{here}/started\"\n\
         while true; do sleep 0.05; done"
    );
    let pgbin = fake_postgres(dir.path(), &script);
    let spec = neon_spec(std::slice::from_ref(&sk.address()), TOKEN, json!("Primary"));
    let doc = document(&spec, &dir.path().join("pgdata"), &pgbin);
    let mut stage = Command::new(env!("CARGO_BIN_EXE_pg-sync-safekeepers"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    serde_json::to_writer(stage.stdin.take().unwrap(), &doc).unwrap();
    let started = dir.path().join("started");
    wait_for(&started);
    stage.kill().unwrap();
    stage.wait().unwrap();
    let text = std::fs::read_to_string(&started).unwrap();
    assert!(
        wait_dead(pid(&text), DEATH),
        "postgres --sync-safekeepers outlived the stage"
    );
}

#[test]
fn after_shutdown_skips_the_fast_path_and_keeps_pgdata() {
    let dir = TestDir::new("sync-after");
    let sk = safekeeper(Behaviour::Answer("0/7", "0/7"), TOKEN);
    let pgdata = dir.path().join("pgdata");
    std::fs::create_dir(&pgdata).unwrap();
    std::fs::write(pgdata.join("PG_VERSION"), "15\n").unwrap();
    std::fs::write(pgdata.join("postgresql.conf"), "# the running compute's\n").unwrap();
    let outcome = run_neon(
        &dir,
        &[&sk],
        &printing("0/B000000"),
        json!("Primary"),
        &["--after-shutdown"],
    );
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(
        lsn_and_method(&outcome),
        ("0/B000000".into(), "sync-safekeepers".into())
    );
    assert!(outcome.json["sync_safekeepers"]["sync_sk_check_ms"].is_null());
    assert_eq!(sk.connections(), 0);
    let conf = std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap();
    assert_eq!(conf, "# the running compute's\n");
}

/// How long a killed process may take to be gone.
const DEATH: Duration = Duration::from_secs(5);

/// Waits (up to 10 s) until `path` exists.
fn wait_for(path: &Path) {
    assert!(
        wait_for_path(path, Duration::from_secs(10)),
        "{} never appeared",
        path.display()
    );
}

/// The pid a script wrote into a file.
fn pid(text: &str) -> i32 {
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("not a pid ({e}): {text:?}"))
}
