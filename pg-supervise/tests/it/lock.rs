//! One owner per PGDATA for `pg-supervise` run by hand: it takes the lock beside PGDATA
//! before starting Postgres, the postmaster inherits it, and a second supervisor on the same
//! PGDATA waits `--pgdata-lock-timeout`, then refuses naming the first, starting nothing.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::path::PathBuf;

use crate::common::{Fixture, SECOND};
use compute_spec::error::exit_code;

/// Whether process `pid` has `path` open.
fn has_open(pid: i32, path: &std::path::Path) -> bool {
    let wanted = std::fs::canonicalize(path).unwrap();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == wanted))
}

#[test]
fn a_second_supervisor_is_refused_naming_the_first_and_the_postmaster_holds_the_lock() {
    let fixture = Fixture::new("");
    let first = fixture.supervise(&["--no-monitor"]);
    let ready = first.wait_event("ready", 30 * SECOND);
    let postmaster = ready["pid"].as_i64().unwrap() as i32;
    let pgdata = &fixture.document.pgdata;
    let mut lock = PathBuf::from(pgdata.as_os_str());
    lock.as_mut_os_string().push(".compute-tools.lock");
    assert!(
        has_open(postmaster, &lock),
        "the postmaster does not hold {}",
        lock.display()
    );

    let mut second = fixture.supervise(&["--no-monitor", "--pgdata-lock-timeout", "1s"]);
    let envelope = second.next_line(30 * SECOND);
    let message = envelope["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(envelope["error"]["kind"], "refused", "{envelope}");
    let holder = format!("taken by pid {} (pg-supervise, started ", first.child.id());
    assert!(message.contains(&holder), "{message}");
    let status = second.wait(10 * SECOND);
    assert_eq!(status.code(), Some(i32::from(exit_code::RUNTIME)));
    assert!(
        !second.stderr_text().contains("PG:"),
        "a second postgres was started"
    );
    let one: i32 = fixture.client().query_one("select 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
}
