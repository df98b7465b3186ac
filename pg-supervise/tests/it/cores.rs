//! Core dumps: a backend killed by SIGSEGV dumps core into PGDATA (the supervisor raised the
//! limit), and after the postmaster exits its backtrace is in the log.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::common::{Fixture, SECOND};
use pg_test_support::wait_until;

#[test]
fn a_crashed_backend_s_backtrace_is_logged_after_the_exit() {
    let fixture = Fixture::new("");
    let mut supervisor = fixture.supervise(&[]);
    supervisor.wait_event("ready", 30 * SECOND);
    let pgdata = fixture.pg.data_dir().to_path_buf();
    let mut victim = fixture.client();
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    kill(Pid::from_raw(pid), Signal::SIGSEGV).unwrap();
    let dumped = wait_until(20 * SECOND, || pg_supervise::cores::find(&pgdata).1 > 0);
    assert!(
        dumped,
        "no core dump in {} (core_pattern: {:?})",
        pgdata.display(),
        std::fs::read_to_string("/proc/sys/kernel/core_pattern")
    );
    // Shared memory is left out of the dump: far smaller than shared_buffers (128 MB).
    let (dumps, _) = pg_supervise::cores::find(&pgdata);
    let size = std::fs::metadata(&dumps[0]).unwrap().len();
    assert!(size < 64 << 20, "a {size}-byte core dump");

    supervisor.signal(Signal::SIGTERM);
    supervisor.wait_event("exited", 60 * SECOND);
    supervisor.wait(Duration::from_secs(90));
    let log = supervisor.stderr_text();
    assert!(log.contains("core dump found"), "{log}");
    assert!(log.contains("core dump backtrace: #0"), "{log}");
}
