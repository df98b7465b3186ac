//! `AUTOSCALING` wraps Postgres in `cgexec -g memory:<cgroup>` (a stand-in `cgexec` that
//! records its arguments and execs the rest, as the real one does); without a `cgexec`,
//! Postgres starts unwrapped after a clear warning.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::os::unix::fs::PermissionsExt;

use crate::common::{Fixture, SECOND};
use nix::sys::signal::Signal;
use pg_test_support::wait_until;

#[test]
fn autoscaling_runs_postgres_through_cgexec_in_the_cgroup() {
    let fixture = Fixture::new("");
    let dir = tempfile::Builder::new().tempdir_in("/dev/shm").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let record = dir.path().join("record");
    let cgexec = dir.path().join("cgexec");
    std::fs::write(
        &cgexec,
        format!(
            "#!/bin/sh\necho \"$*\" > '{}'\nshift 2\nexec \"$@\"\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cgexec, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = fixture.command(&[]);
    command
        .env("AUTOSCALING", "1")
        .env("COMPUTE_CTL_CGEXEC", &cgexec)
        .env("COMPUTE_CTL_CGROUP", "test-cgroup");
    let mut supervisor = fixture.supervise_with(command);
    let ready = supervisor.wait_event("ready", 30 * SECOND);
    let expected = format!(
        "-g memory:test-cgroup {} -D {}",
        fixture.document.pgbin.display(),
        fixture.document.pgdata.display()
    );
    assert_eq!(std::fs::read_to_string(&record).unwrap().trim(), expected);
    // cgexec execs Postgres: the pid supervised is the postmaster's own.
    let pid_file = std::fs::read_to_string(fixture.document.pgdata.join("postmaster.pid")).unwrap();
    assert_eq!(
        pid_file.lines().next().unwrap().trim(),
        ready["pid"].to_string()
    );
    supervisor.signal(Signal::SIGTERM);
    supervisor.wait_event("exited", 30 * SECOND);
    assert_eq!(supervisor.wait(10 * SECOND).code(), Some(0));
}

#[test]
fn without_cgexec_postgres_starts_unwrapped_with_a_warning() {
    let fixture = Fixture::new("");
    let mut command = fixture.command(&[]);
    command
        .env("AUTOSCALING", "1")
        .env("COMPUTE_CTL_CGEXEC", "/nonexistent/cgexec");
    let mut supervisor = fixture.supervise_with(command);
    supervisor.wait_event("ready", 30 * SECOND);
    assert!(
        wait_until(5 * SECOND, || supervisor
            .stderr_text()
            .contains("cgexec was not found")),
        "{}",
        supervisor.stderr_text()
    );
    supervisor.signal(Signal::SIGTERM);
    supervisor.wait_event("exited", 30 * SECOND);
    assert_eq!(supervisor.wait(10 * SECOND).code(), Some(0));
}
