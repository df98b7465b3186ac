//! Orphans of Postgres's children are re-parented to the supervisor and reaped: as a child
//! subreaper, and as PID 1 of a new PID namespace (`unshare`).

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::process::Command;
use std::time::Duration;

use crate::common::{
    children, find_process, parent, wait_for, wait_gone, Fixture, Supervisor, SECOND,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Makes a backend start `sleep <seconds>` in the background and exit its shell, so the sleep
/// is orphaned; returns the sleep's pid (as this test sees it).
fn orphan_grandchild(fixture: &Fixture, seconds: &str) -> i32 {
    let program = format!("sleep {seconds} </dev/null >/dev/null 2>&1 &");
    fixture
        .client()
        .batch_execute(&format!(
            "CREATE TEMP TABLE program_output (line text); \
             COPY program_output FROM PROGRAM '{program}'"
        ))
        .unwrap();
    wait_for(2 * SECOND, || find_process(&["sleep", seconds]))
        .expect("the orphaned sleep did not show up")
}

/// The orphan is the supervisor's child now, and is reaped (not left a zombie) when it exits.
fn assert_reaped_by(supervisor_pid: i32, orphan: i32) {
    assert_eq!(
        parent(orphan),
        Some(supervisor_pid),
        "re-parented to the supervisor"
    );
    assert!(
        wait_gone(orphan, 3 * SECOND).is_some(),
        "orphan {orphan} was not reaped"
    );
}

#[test]
fn orphans_are_reaped_as_a_subreaper() {
    let fixture = Fixture::new("");
    let mut supervisor = fixture.supervise(&["--no-monitor"]);
    supervisor.wait_event("ready", 30 * SECOND);
    let orphan = orphan_grandchild(&fixture, "0.4321");
    assert_reaped_by(supervisor.pid().as_raw(), orphan);
    supervisor.signal(Signal::SIGTERM);
    supervisor.wait_event("exited", 30 * SECOND);
    assert_eq!(supervisor.wait(10 * SECOND).code(), Some(0));
}

#[test]
fn orphans_are_reaped_and_signals_handled_as_pid_1() {
    let fixture = Fixture::new("");
    // `--kill-child`: if the test kills unshare, the namespace dies with it.
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(env!("CARGO_BIN_EXE_pg-supervise"))
        .arg("--no-monitor");
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status();
    if !probe.is_ok_and(|status| status.success()) {
        pg_test_support::skip_or_fail(
            "orphans_are_reaped_and_signals_handled_as_pid_1",
            "`unshare --pid` (root, util-linux) is not available here; the subreaper test \
             covers reaping",
        );
        return;
    }
    let mut supervisor: Supervisor = fixture.supervise_with(command);
    supervisor.wait_event("ready", 30 * SECOND);
    let inner = wait_for(SECOND, || {
        children(supervisor.pid().as_raw()).first().copied()
    })
    .expect("unshare has no child");
    assert!(supervisor.stderr_text().contains("running as PID 1"));
    let orphan = orphan_grandchild(&fixture, "0.4322");
    assert_reaped_by(inner, orphan);

    kill(Pid::from_raw(inner), Signal::SIGTERM).unwrap();
    let exited = supervisor.wait_event("exited", 30 * SECOND);
    assert_eq!(exited["code"], 0);
    assert_eq!(supervisor.wait(10 * SECOND).code(), Some(0));
    assert!(wait_gone(inner, Duration::from_millis(500)).is_some());
}
