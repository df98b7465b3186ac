//! The postmaster is reaped by its own thread before the supervisor handles its exit (after
//! waiting up to 2 s for the orphans it left): a shutdown step due in that window must not
//! reach the process the kernel gave the postmaster's pid to meanwhile.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::os::unix::fs::PermissionsExt;

use nix::sys::signal::Signal;

use crate::common::{self, Fixture, SECOND};

/// A stand-in for `postgres`: says ready in `postmaster.pid`; on SIGINT (fast shutdown) leaves an orphan in
/// a session of its own (so its pid is free for reuse) and exits.
const FAKE_POSTGRES: &str = "#!/bin/sh\n\
    trap 'setsid sleep 30 </dev/null >/dev/null 2>&1 & echo $! > orphan.pid; exit 0' INT\n\
    printf '%s\\nready\\n' $$ > postmaster.pid\n\
    while :; do sleep 0.05; done\n";

#[test]
fn no_shutdown_step_reaches_a_process_that_reused_the_postmaster_s_pid() {
    let fixture = Fixture::new("");
    let fake = fixture.pg.dir().join("fake-postgres.sh");
    std::fs::write(&fake, FAKE_POSTGRES).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    pg_test_support::chown_to_postgres(&fake);
    let mut document = fixture.document.clone();
    document.pgbin = fake;
    // Fast shutdown, then immediate after 0.5 s, then SIGKILL after 1 s: both inside the 2 s
    // the supervisor waits for the orphan before it handles the postmaster's exit.
    let mut supervisor = common::Supervisor::start(
        &mut fixture.command(&["--no-monitor", "--shutdown-timeout", "500ms"]),
        &serde_json::to_string(&document).unwrap(),
    );
    supervisor.wait_event("ready", 30 * SECOND);
    let pgdata = &document.pgdata;
    let read_pid = |name: &str| -> i32 {
        let text = std::fs::read_to_string(pgdata.join(name)).unwrap();
        text.lines().next().unwrap().trim().parse().unwrap()
    };
    let postmaster = read_pid("postmaster.pid");
    supervisor.signal(Signal::SIGTERM);
    assert!(
        common::wait_gone(postmaster, 5 * SECOND).is_some(),
        "the postmaster was not reaped"
    );
    let mut stranger = pg_test_support::probe::sleeper_with_pid(postmaster)
        .unwrap_or_else(|| panic!("no process could be started with pid {postmaster}"));
    supervisor.wait_event("exited", 30 * SECOND);
    let survived = stranger.try_wait().unwrap().is_none();
    let _ = stranger.kill();
    let _ = stranger.wait();
    if let Some(orphan) = pg_test_support::probe::wait_for(5 * SECOND, || {
        std::fs::read_to_string(pgdata.join("orphan.pid"))
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
    }) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(orphan), Signal::SIGKILL);
    }
    assert!(
        survived,
        "a shutdown step killed the process that reused the postmaster's pid {postmaster}"
    );
    assert!(
        supervisor.stderr_text().contains("SIGKILL"),
        "the SIGKILL step was not reached:\n{}",
        supervisor.stderr_text()
    );
    supervisor.wait(10 * SECOND);
}
