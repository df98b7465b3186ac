//! Start, readiness, failures and shutdown of a real Postgres under the `pg-supervise` binary.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{children, process_exists, wait_dead, wait_for, wait_gone, Fixture, SECOND};
use compute_spec::error::exit_code;
use compute_spec::secret::Secret;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pg_test_support::wait_until;
use serde_json::json;

fn ready_pid(ready: &serde_json::Value) -> i32 {
    ready["pid"].as_i64().unwrap() as i32
}

#[test]
fn sigterm_after_ready_is_a_clean_fast_shutdown() {
    let fixture = Fixture::new("");
    let mut supervisor = fixture.supervise(&[]);
    let ready = supervisor.wait_event("ready", 30 * SECOND);
    let pid = ready_pid(&ready);
    let start_ms = ready["start_postgres_ms"].as_u64().unwrap();
    eprintln!("start_postgres_ms = {start_ms}");
    assert!(start_ms < 5_000, "start took {start_ms} ms");

    // Ready means accepting connections at once, without retries.
    let mut client = fixture.client();
    let one: i32 = client.query_one("select 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
    let processes = children(pid);
    assert!(processes.len() >= 4, "postmaster children: {processes:?}");
    // A multi-line statement in the log: forwarded as one line, joined with U+200B.
    assert!(client.batch_execute("SELECT\n1/0").is_err());

    supervisor.signal(Signal::SIGTERM);
    let exited = supervisor.wait_event("exited", 30 * SECOND);
    assert_eq!(
        exited,
        json!({"event": "exited", "code": 0, "signal": null})
    );
    supervisor.assert_quiet(Duration::from_millis(50));
    let status = supervisor.wait(10 * SECOND);
    assert_eq!(status.code(), Some(0));
    for process in processes.iter().chain([&pid]) {
        assert!(
            wait_gone(*process, SECOND).is_some(),
            "process {process} left"
        );
    }
    assert!(
        !fixture.document.pgdata.join("postmaster.pid").exists(),
        "a fast shutdown removes postmaster.pid"
    );
    let stderr = supervisor.stderr_text();
    assert!(
        stderr.contains("PG:"),
        "postgres's log is forwarded:\n{stderr}"
    );
    assert!(
        stderr.contains("received fast shutdown request"),
        "{stderr}"
    );
}

#[test]
fn sigquit_is_an_immediate_shutdown() {
    let fixture = Fixture::new("");
    let mut supervisor = fixture.supervise(&["--no-monitor"]);
    let pid = ready_pid(&supervisor.wait_event("ready", 30 * SECOND));
    supervisor.signal(Signal::SIGQUIT);
    let exited = supervisor.wait_event("exited", 30 * SECOND);
    let status = supervisor.wait(10 * SECOND);
    assert_eq!(exited["code"].as_i64().map(|c| c as i32), status.code());
    assert!(wait_gone(pid, SECOND).is_some());
    assert!(supervisor
        .stderr_text()
        .contains("received immediate shutdown request"));
}

#[test]
fn a_stuck_shutdown_escalates_on_timeout_and_on_further_signals() {
    let fixture = Fixture::new("");
    // Timeout: a stopped postmaster ignores SIGINT and SIGQUIT until SIGKILL.
    let mut supervisor = fixture.supervise(&["--no-monitor", "--shutdown-timeout", "200ms"]);
    let pid = ready_pid(&supervisor.wait_event("ready", 30 * SECOND));
    kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    let started = Instant::now();
    supervisor.signal(Signal::SIGTERM);
    let exited = supervisor.wait_event("exited", 10 * SECOND);
    let took = started.elapsed();
    assert_eq!(
        exited,
        json!({"event": "exited", "code": null, "signal": 9})
    );
    assert!(
        took >= Duration::from_millis(400),
        "escalated after {took:?}"
    );
    assert_eq!(supervisor.wait(10 * SECOND).code(), Some(1));
    let stderr = supervisor.stderr_text();
    assert!(
        stderr.contains("immediate shutdown of postgres"),
        "{stderr}"
    );
    drop(supervisor);

    // Further signals: three SIGTERMs go fast → immediate → SIGKILL long before the timeout.
    let mut supervisor = fixture.supervise(&["--no-monitor", "--shutdown-timeout", "60s"]);
    let pid = ready_pid(&supervisor.wait_event("ready", 30 * SECOND));
    kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    for sent in 1..=3 {
        supervisor.signal(Signal::SIGTERM);
        // Each signal is one escalation step; wait until this one was taken before sending
        // the next (signals sent back to back may be delivered as one).
        let taken = wait_until(5 * SECOND, || {
            let stderr = supervisor.stderr_text();
            stderr.matches(" shutdown of postgres (sending").count() >= sent
        });
        assert!(
            taken,
            "signal {sent} was not taken: {}",
            supervisor.stderr_text()
        );
    }
    let exited = supervisor.wait_event("exited", 5 * SECOND);
    assert_eq!(exited["signal"], 9);
    assert_eq!(supervisor.wait(5 * SECOND).code(), Some(1));
}

#[test]
fn postmaster_killed_gives_exited_and_a_failure_code() {
    let fixture = Fixture::new("");
    let mut supervisor = fixture.supervise(&[]);
    let pid = ready_pid(&supervisor.wait_event("ready", 30 * SECOND));
    let processes = children(pid);
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let exited = supervisor.wait_event("exited", 10 * SECOND);
    assert_eq!(
        exited,
        json!({"event": "exited", "code": null, "signal": 9})
    );
    assert_eq!(supervisor.wait(10 * SECOND).code(), Some(1));
    for process in processes {
        assert!(
            wait_gone(process, 5 * SECOND).is_some(),
            "backend {process} left"
        );
    }
}

#[test]
fn supervisor_killed_takes_the_postmaster_with_it() {
    let fixture = Fixture::new("");
    let mut supervisor = fixture.supervise(&[]);
    let pid = ready_pid(&supervisor.wait_event("ready", 30 * SECOND));
    supervisor.signal(Signal::SIGKILL);
    supervisor.wait(5 * SECOND);
    // Its parent is gone, so the host's init reaps it (when it gets to it): a zombie is dead.
    let gone = wait_dead(pid, SECOND);
    eprintln!("postmaster dead {gone:?} after the supervisor's SIGKILL");
    assert!(gone.is_some(), "postmaster {pid} survived its supervisor");
}

#[test]
fn a_bad_setting_is_an_error_with_postgres_log_lines() {
    let fixture = Fixture::new("work_mem = 'plenty'");
    let mut supervisor = fixture.supervise(&[]);
    let line = supervisor.next_line(30 * SECOND);
    let error = &line["error"];
    assert_eq!(error["stage"], "pg-supervise", "{line}");
    assert_eq!(error["kind"], "postgres", "{line}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("exit code 1"), "{message}");
    assert!(
        message.contains("work_mem"),
        "postgres's own words: {message}"
    );
    let status = supervisor.wait(10 * SECOND);
    assert_eq!(status.code(), Some(i32::from(exit_code::RUNTIME)));
}

#[test]
fn not_ready_in_time_is_a_timeout_and_leaves_nothing_running() {
    let fixture = Fixture::new("");
    let mut supervisor = fixture.supervise(&["--ready-timeout", "1ms"]);
    let line = supervisor.next_line(30 * SECOND);
    assert_eq!(line["error"]["kind"], "timeout", "{line}");
    assert_eq!(supervisor.wait(10 * SECOND).code(), Some(1));
    let pid_file = fixture.document.pgdata.join("postmaster.pid");
    if let Ok(text) = std::fs::read_to_string(pid_file) {
        let pid: i32 = text.lines().next().unwrap().trim().parse().unwrap();
        assert!(
            wait_gone(pid, SECOND).is_some(),
            "postmaster {pid} left running"
        );
    }
}

#[test]
fn bad_input_and_error_envelopes_on_stdin() {
    let run = |stdin: &str| {
        let run = pg_test_support::run_stage(env!("CARGO_BIN_EXE_pg-supervise"), &[], stdin);
        let run = run.expect_json();
        (Some(run.code), run.json)
    };
    let envelope = json!({"error": {"stage": "pg-basebackup-fetch", "kind": "io", "message": "m", "retryable": false}});
    let (code, value) = run(&envelope.to_string());
    assert_eq!(code, Some(i32::from(exit_code::RUNTIME)));
    assert_eq!(value, envelope);
    let (code, value) = run("not json");
    assert_eq!(code, Some(i32::from(exit_code::USAGE)));
    assert_eq!(value["error"]["kind"], "invalid_document", "{value}");

    let params = compute_spec_cli::begin::DocumentParams {
        pgdata: "/nonexistent/pgdata".into(),
        pgbin: pg_test_support::pg_bin("postgres"),
        connstr: "postgresql://cloud_admin@localhost/postgres".into(),
        compute_id: None,
        privileged_role_name: "neon_superuser".into(),
        socket_dir: None,
    };
    let loaded = compute_spec::parse::parse_bare(compute_spec::parse::EMBEDDED_SAMPLE_SPEC, "x");
    let document =
        compute_spec_cli::begin::start_document("test", &params, loaded.unwrap(), "test", 0)
            .unwrap();
    let (code, value) = run(&serde_json::to_string(&document).unwrap());
    assert_eq!(code, Some(i32::from(exit_code::USAGE)));
    let message = value["error"]["message"].as_str().unwrap();
    assert!(message.contains("/nonexistent/pgdata"), "{message}");
}

#[test]
fn notify_tells_systemd_ready_and_stopping() {
    let fixture = Fixture::new("");
    let socket_path = fixture.pg.dir().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(10 * SECOND)).unwrap();
    let mut command = fixture.command(&["--notify", "--no-monitor"]);
    command.env("NOTIFY_SOCKET", &socket_path);
    let mut supervisor = fixture.supervise_with(command);
    supervisor.wait_event("ready", 30 * SECOND);
    let mut buffer = [0u8; 256];
    let n = socket.recv(&mut buffer).unwrap();
    assert_eq!(&buffer[..n], b"READY=1");
    supervisor.signal(Signal::SIGTERM);
    let n = socket.recv(&mut buffer).unwrap();
    assert_eq!(&buffer[..n], b"STOPPING=1");
    supervisor.wait_event("exited", 30 * SECOND);
    assert_eq!(supervisor.wait(10 * SECOND).code(), Some(0));
}

#[test]
fn a_closed_stdout_stops_postgres() {
    let fixture = Fixture::new("");
    let mut child = fixture
        .command(&["--no-monitor"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(fixture.document_json().as_bytes()).unwrap();
    drop(stdin);
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let pid = ready_pid(&serde_json::from_str(&line).unwrap());
    drop(stdout);
    let status = wait_for(10 * SECOND, || child.try_wait().unwrap()).expect("still running");
    // Stopped (fast), and a failure: nobody could be told.
    assert_eq!(status.code(), Some(i32::from(exit_code::RUNTIME)));
    assert!(!process_exists(pid));
}

#[test]
fn token_user_reload_and_json_logs() {
    let mut fixture = Fixture::new("");
    let token = "tok-3f9a-never-logged";
    fixture.document.spec.as_mut().unwrap().storage_auth_token = Some(Secret::new(token));
    let mut supervisor = fixture.supervise(&["--log-format", "json", "--no-monitor"]);
    let pid = ready_pid(&supervisor.wait_event("ready", 30 * SECOND));

    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let wanted = format!("NEON_AUTH_TOKEN={token}");
    assert!(
        environ
            .split(|&b| b == 0)
            .any(|entry| entry == wanted.as_bytes()),
        "the postmaster has NEON_AUTH_TOKEN"
    );
    if let Some((uid, _, _)) = pg_test_support::postgres_os_user() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let real_uid = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next())
            .unwrap();
        assert_eq!(real_uid, uid.to_string(), "runs as the postgres user");
    }

    // SIGHUP is forwarded: Postgres reloads its configuration.
    let conf = fixture.document.pgdata.join("postgresql.conf");
    let mut file = std::fs::OpenOptions::new().append(true).open(conf).unwrap();
    writeln!(file, "work_mem = '7MB'").unwrap();
    supervisor.signal(Signal::SIGHUP);
    let mut client = fixture.client();
    let reloaded = wait_for(5 * SECOND, || {
        let value: String = client.query_one("SHOW work_mem", &[]).unwrap().get(0);
        (value == "7MB").then_some(())
    });
    assert!(reloaded.is_some(), "work_mem not reloaded");
    drop(client);

    supervisor.signal(Signal::SIGTERM);
    supervisor.wait_event("exited", 30 * SECOND);
    assert_eq!(supervisor.wait(10 * SECOND).code(), Some(0));
    let stderr = supervisor.stderr_text();
    assert!(!stderr.contains(token), "the token was logged");
    let mut forwarded = 0;
    for line in stderr.lines() {
        let record: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        if record["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("PG:"))
        {
            forwarded += 1;
        }
    }
    assert!(
        forwarded >= 3,
        "postgres's lines are forwarded as JSON:\n{stderr}"
    );
}

#[test]
fn an_unknown_user_is_a_usage_error() {
    if pg_test_support::postgres_os_user().is_none() {
        pg_test_support::skip_or_fail(
            "an_unknown_user_is_a_usage_error",
            "not root: --user is ignored, nothing to test",
        );
        return;
    }
    let fixture = Fixture::new("");
    let mut supervisor = fixture.supervise(&["--user", "no_such_user_here"]);
    let line = supervisor.next_line(10 * SECOND);
    assert_eq!(line["error"]["kind"], "usage", "{line}");
    assert!(line["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no_such_user_here"));
    assert_eq!(
        supervisor.wait(10 * SECOND).code(),
        Some(i32::from(exit_code::USAGE))
    );
}

#[test]
fn sigterm_during_start_up_is_a_shutdown_not_an_error() {
    let fixture = Fixture::new("");
    let mut supervisor = fixture.supervise(&["--no-monitor"]);
    let spawned = wait_for(10 * SECOND, || {
        supervisor
            .stderr_text()
            .contains("started postgres")
            .then_some(())
    });
    assert!(spawned.is_some());
    supervisor.signal(Signal::SIGTERM);
    // Whether or not it got to `ready` first, it ends with `exited`, never an error.
    let exited = supervisor.wait_event("exited", 30 * SECOND);
    assert_eq!(exited["code"], 0, "{exited}");
    assert_eq!(supervisor.wait(10 * SECOND).code(), Some(0));
}
