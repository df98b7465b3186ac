//! Start-up, status, reconfiguration, termination and signals, with stand-in stages.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::time::Duration;

use crate::common::*;
use nix::sys::signal::Signal;
use pg_test_support::probe::{wait_dead, wait_for_path};

#[test]
fn spec_file_start_runs_every_stage_then_sigterm_propagates_the_exit_code() {
    let mut harness = Harness::new();
    harness.command.env("STANDIN_PG_EXIT", "7");
    let spec_path = harness.path().join("spec.json");
    std::fs::write(&spec_path, empty_spec(Some("alice")).to_string()).unwrap();
    let spec_path = spec_path.to_string_lossy().to_string();
    let mut compute = harness.start(&["-S", &spec_path, "-i", "compute-1"]);
    let status = compute.wait_status("running");
    assert!(status["start_time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(status["last_active"], "2026-11-24T22:00:00.123+00:00");
    assert!(harness
        .log()
        .contains("reconcile --log-format text roles=alice"));

    let metrics = compute.get("/metrics.json").json();
    assert_eq!(metrics["basebackup_bytes"], 1234);
    assert_eq!(metrics["pageserver_connect_micros"], 77);
    assert_eq!(metrics["sync_safekeepers_ms"], 3);
    assert_eq!(metrics["start_postgres_ms"], 42);
    let text = compute.get("/metrics").body;
    assert!(
        text.contains("compute_ctl_up{build_tag=\"latest\",status=\"running\"} 1"),
        "{text}"
    );
    assert!(text.contains("compute_pg_downtime_ms_total 1500"));
    assert!(text.contains("compute_ctl_reconciles_total 1"));

    let pid = supervise_pid(harness.path());
    compute.signal(Signal::SIGTERM);
    assert_eq!(compute.wait_exit(Duration::from_secs(20)), 7);
    assert!(!alive(pid), "pg-supervise left behind");
    let signals = std::fs::read_to_string(harness.path().join("supervise.signal")).unwrap();
    assert_eq!(signals.trim(), "15", "exactly one SIGTERM forwarded");
}

#[test]
fn sigquit_means_immediate() {
    let mut harness = Harness::new();
    let mut compute = harness.start(&["--embedded-default"]);
    compute.wait_status("running");
    compute.signal(Signal::SIGQUIT);
    assert_eq!(compute.wait_exit(Duration::from_secs(20)), 0);
    let signals = std::fs::read_to_string(harness.path().join("supervise.signal")).unwrap();
    assert_eq!(signals.trim(), "3");
}

#[test]
fn skip_pg_catalog_updates_skips_reconcile() {
    let mut harness = Harness::new();
    let mut spec = empty_spec(Some("alice"));
    spec["skip_pg_catalog_updates"] = true.into();
    let mut compute = harness.start(&["-s", &spec.to_string(), "--log-format", "json"]);
    compute.wait_status("running");
    assert!(!harness.log().contains("reconcile"), "{}", harness.log());
    assert!(
        harness.log().contains("sync --log-format json"),
        "{}",
        harness.log()
    );
    compute.signal(Signal::SIGTERM);
    assert_eq!(compute.wait_exit(Duration::from_secs(20)), 0);
}

#[test]
fn a_failing_stage_fails_the_compute_with_its_error() {
    let mut harness = Harness::new();
    harness.stage("pg-basebackup-fetch", FAILING);
    let mut compute = harness.start(&["--embedded-default", "--failed-grace", "1s"]);
    let status = compute.wait_status("failed");
    let error = status["error"].as_str().unwrap();
    assert!(error.contains("pg-basebackup-fetch"), "{error}");
    assert!(error.contains("refused the connection"), "{error}");
    assert_eq!(compute.wait_exit(Duration::from_secs(20)), 1);
    assert!(
        !harness.path().join("supervise.pid").exists(),
        "postgres must not start"
    );
}

/// `-S` naming a FIFO nobody writes or a 2 GiB sparse file: the real compute-spec refuses it
/// at once, and the compute is `failed` with its error, exit 1 (`/dev/zero` and the other
/// readers: `tests/tests/it/operator_input.rs`, under an address-space limit).
#[test]
fn a_spec_path_that_is_a_fifo_a_device_or_huge_fails_the_start_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("spec.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let sparse = dir.path().join("spec.json");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    for (path, problem) in [
        (fifo, "it is a FIFO, not a regular file"),
        (sparse, "it is 2147483648 bytes, over the 64 MiB cap"),
    ] {
        let mut harness = Harness::new();
        let started = std::time::Instant::now();
        let path = path.to_str().unwrap();
        let mut compute = harness.start(&["-S", path, "--failed-grace", "200ms"]);
        let status = compute.wait_status("failed");
        let error = status["error"].as_str().unwrap();
        assert!(
            error.contains(&format!("reading spec file {path}: {problem}")),
            "{error}"
        );
        assert_eq!(compute.wait_exit(Duration::from_secs(20)), 1);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}

#[test]
fn postgres_failing_to_start_is_a_failed_start() {
    let mut harness = Harness::new();
    harness.command.env("STANDIN_PG_FAIL", "1");
    let mut compute = harness.start(&["--embedded-default", "--failed-grace", "200ms"]);
    let status = compute.wait_status("failed");
    assert!(status["error"]
        .as_str()
        .unwrap()
        .contains("exited before it was ready"));
    assert_eq!(compute.wait_exit(Duration::from_secs(20)), 1);
}

#[test]
fn sigterm_during_a_stage_stops_it_and_exits() {
    let mut harness = Harness::new();
    harness.command.env("STANDIN_SYNC_SLEEP", "30");
    let mut compute = harness.start(&["--embedded-default"]);
    let pid_file = harness.path().join("sync.pid");
    assert!(
        wait_for_path(&pid_file, Duration::from_secs(10)),
        "the sync stage never started"
    );
    let sync_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(compute.status(), "init");
    compute.signal(Signal::SIGTERM);
    assert_eq!(compute.wait_exit(Duration::from_secs(5)), 1);
    assert!(!alive(sync_pid), "the running stage was left behind");
    assert!(!harness.path().join("supervise.pid").exists());
}

#[test]
fn sigkill_of_compute_ctl_leaves_no_supervisor() {
    let mut harness = Harness::new();
    let mut compute = harness.start(&["--embedded-default"]);
    compute.wait_status("running");
    let pid = supervise_pid(harness.path());
    compute.signal(Signal::SIGKILL);
    compute.wait_exit(Duration::from_secs(5));
    assert!(
        wait_dead(pid, Duration::from_secs(5)),
        "pg-supervise outlived compute-ctl"
    );
}

#[test]
fn every_transition_is_logged_in_order() {
    let mut harness = Harness::new();
    let log_path = harness.path().join("compute-ctl.log");
    harness
        .command
        .stderr(std::fs::File::create(&log_path).unwrap());
    let mut compute = harness.start(&[]);
    compute.wait_status("empty");
    let body = serde_json::json!({"spec": empty_spec(None), "compute_ctl_config": {}});
    assert_eq!(
        compute
            .post("/configure", body.to_string().as_bytes())
            .status,
        200
    );
    assert_eq!(
        compute
            .post("/configure", body.to_string().as_bytes())
            .status,
        200
    );
    assert_eq!(compute.post("/terminate", b"").status, 200);
    assert_eq!(compute.wait_exit(Duration::from_secs(10)), 0);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let transitions: Vec<String> = log
        .lines()
        .filter(|line| line.contains("compute status changed"))
        .map(|line| {
            let from = line
                .split("from=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            let to = line.split("to=").nth(1).unwrap().split(' ').next().unwrap();
            format!("{from}->{to}")
        })
        .collect();
    assert_eq!(
        transitions,
        [
            "empty->configuration_pending",
            "configuration_pending->init",
            "init->running",
            "running->configuration_pending",
            "configuration_pending->configuration",
            "configuration->running",
            "running->termination_pending_fast",
            "termination_pending_fast->terminated",
        ]
    );
}

/// `/terminate` asks for PostgreSQL's fast shutdown in both modes, as upstream; the modes
/// differ in how long the API stays up afterwards (repeated calls get 201 meanwhile).
#[test]
fn terminate_is_a_fast_shutdown_in_both_modes_and_lingers() {
    for (mode, linger) in [
        ("immediate", Duration::from_millis(300)),
        ("fast", Duration::from_secs(2)),
    ] {
        let mut harness = Harness::new();
        let mut compute = harness.start(&["--embedded-default", "--terminated-grace", "2s"]);
        compute.wait_status("running");
        let answer = compute.post(&format!("/terminate?mode={mode}"), b"");
        assert_eq!(answer.status, 200, "{}", answer.body);
        let terminated_at = std::time::Instant::now();
        let signals = std::fs::read_to_string(harness.path().join("supervise.signal")).unwrap();
        assert_eq!(
            signals.trim(),
            "15",
            "{mode}: SIGTERM (fast shutdown) forwarded"
        );
        if mode == "fast" {
            let again = compute.post("/terminate", b"");
            assert_eq!(again.status, 201, "{}", again.body);
        }
        assert_eq!(compute.wait_exit(Duration::from_secs(10)), 0);
        let lived = terminated_at.elapsed();
        assert!(
            lived + Duration::from_millis(100) >= linger,
            "{mode}: exited after {lived:?}"
        );
        assert!(
            lived < linger + Duration::from_secs(3),
            "{mode}: exited after {lived:?}"
        );
    }
}

/// local_proxy's configuration is written before `running` on every compute, and a failure
/// fails the start naming the file — also with `skip_pg_catalog_updates`, where upstream only
/// writes it in the background and starts anyway.
#[test]
fn a_local_proxy_config_that_cannot_be_written_fails_any_start() {
    let mut harness = Harness::new();
    let unwritable = harness.path().join("no-such-dir").join("config.json");
    let mut spec = empty_spec(None);
    spec["skip_pg_catalog_updates"] = true.into();
    spec["local_proxy_config"] = serde_json::json!({"jwks": []});
    let unwritable = unwritable.to_str().unwrap().to_string();
    let mut compute = harness.start(&[
        "-s",
        &spec.to_string(),
        "--local-proxy-config",
        &unwritable,
        "--failed-grace",
        "200ms",
    ]);
    let status = compute.wait_status("failed");
    let error = status["error"].as_str().unwrap();
    assert!(error.contains(&unwritable), "{error}");
    assert_eq!(compute.wait_exit(Duration::from_secs(20)), 1);
}
