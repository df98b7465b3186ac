//! The README's first command, run as written: `scripts/demo.sh` brings up a compute on the
//! embedded default (initdb, the sample spec, HTTP on localhost) and Ctrl-C stops it.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use compute_tools_tests::{bin_dir, postmaster_pid, process_alive, psql, wait_until};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use pg_test_support::{free_tcp_port, TestDir};
use serde_json::Value;

#[test]
fn the_demo_command_runs_a_compute_and_stops_on_ctrl_c() {
    // The README's commands, with a private data directory and HTTP port.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    assert!(
        readme.contains("scripts/demo.sh "),
        "the README no longer starts with demo.sh"
    );
    assert!(
        readme.contains("scripts/test.sh "),
        "the README no longer names scripts/test.sh"
    );
    bin_dir(); // the demo builds the binaries too; make sure they are fresh first
               // The demo's Postgres port is fixed (55432, as the README says); the pipeline example run
               // by another test uses it too, so wait until nothing listens there.
    let free = wait_until(Duration::from_secs(30), || {
        std::net::TcpListener::bind(("127.0.0.1", 55432)).is_ok()
    });
    if !free {
        // Who holds it: a listener, or a connection given 55432 as its ephemeral port
        // (scripts/test.sh reserves it where it can).
        let sockets = Command::new("ss").arg("-tanp").output();
        let held: Vec<String> = sockets
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(":55432"))
            .map(str::to_string)
            .collect();
        panic!("port 55432 stayed busy: {held:#?}");
    }
    let dir = TestDir::new("e2e-demo");
    let http_port = free_tcp_port();
    let mut demo = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo.sh"))
        .env("COMPUTE_DEMO_DIR", dir.path())
        .env("COMPUTE_DEMO_HTTP_PORT", http_port.to_string())
        .env("COMPUTE_DEMO_INTERNAL_PORT", "0")
        .process_group(0)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pgdata = dir.path().join("pgdata");
    let url = format!("http://127.0.0.1:{http_port}/status");
    let mut status = Value::Null;
    let running = wait_until(Duration::from_secs(120), || {
        if let Ok(mut response) = ureq::get(&url).call() {
            status = response.body_mut().read_json().unwrap_or(Value::Null);
        }
        status["status"] == "running" || status["status"] == "failed"
    });
    let stop = |demo: &mut std::process::Child| {
        let _ = killpg(Pid::from_raw(demo.id() as i32), Signal::SIGINT);
        demo.wait().unwrap()
    };
    if !running || status["status"] != "running" {
        stop(&mut demo);
        panic!("the demo did not come up: {status}");
    }
    let roles = psql(
        &pgdata,
        55432,
        "app",
        "select string_agg(rolname, ',' order by rolname) from pg_roles where rolname like 'app%'",
    );
    assert_eq!(roles, "app_owner,app_reader");
    let postmaster = postmaster_pid(&pgdata).unwrap();
    let exit = stop(&mut demo);
    assert_eq!(exit.code(), Some(0));
    assert!(wait_until(Duration::from_secs(5), || !process_alive(
        postmaster
    )));
}
