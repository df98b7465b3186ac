//! A postmaster killed with `SIGKILL` (and its children with it) leaves its System V and POSIX
//! shared memory behind; pg-supervise removes exactly those segments before reporting `exited`,
//! and leaves an unrelated Postgres's segments alone.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::common::{children, wait_for, Fixture, SECOND};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pg_test_support::TestPostgres;

/// The POSIX segments (`/dev/shm/PostgreSQL.*`) and System V keys process `pid` has mapped.
fn mapped_segments(pid: i32) -> (BTreeSet<PathBuf>, BTreeSet<i64>) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut posix = BTreeSet::new();
    let mut sysv = BTreeSet::new();
    for line in maps.lines() {
        let Some(path) = line.split_whitespace().nth(5) else {
            continue;
        };
        if path.starts_with("/dev/shm/PostgreSQL.") {
            posix.insert(PathBuf::from(path));
        } else if let Some(hex) = path.strip_prefix("/SYSV") {
            sysv.insert(i64::from_str_radix(hex, 16).unwrap());
        }
    }
    (posix, sysv)
}

/// The System V segments on the machine: (key, id).
fn sysv_segments() -> BTreeSet<(i64, i32)> {
    let table = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let key = fields.next()?.parse::<i64>().ok()?;
            let id = fields.next()?.parse::<i32>().ok()?;
            Some((key, id))
        })
        .collect()
}

/// The System V segments of process `pid`: (key, id).
fn sysv_of(pid: i32) -> BTreeSet<(i64, i32)> {
    let (_, keys) = mapped_segments(pid);
    sysv_segments()
        .into_iter()
        .filter(|(key, _)| keys.contains(&i64::from(*key as i32 as u32)))
        .collect()
}

/// Segments a test made; those still there are removed on drop, so a failing test leaves
/// nothing behind (a System V id only while it still has its key).
#[derive(Default)]
struct Leftovers {
    posix: BTreeSet<PathBuf>,
    sysv: BTreeSet<(i64, i32)>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for path in &self.posix {
            let _ = std::fs::remove_file(path);
        }
        let present = sysv_segments();
        for segment in self.sysv.intersection(&present) {
            let _ = std::process::Command::new("ipcrm")
                .args(["-m", &segment.1.to_string()])
                .status();
        }
    }
}

#[test]
fn a_killed_postmasters_shared_memory_is_removed() {
    // An unrelated Postgres with POSIX dynamic shared memory: its segments must survive.
    let other = TestPostgres::builder()
        .setting("dynamic_shared_memory_type", "posix")
        .start();
    let (other_posix, _) = mapped_segments(other.pid());
    let other_sysv = sysv_of(other.pid());
    assert!(
        !other_posix.is_empty(),
        "the other postgres has no POSIX segment"
    );
    assert!(
        !other_sysv.is_empty(),
        "the other postgres has no System V segment"
    );

    let fixture = Fixture::new("dynamic_shared_memory_type = posix");
    let mut supervisor = fixture.supervise(&["--no-monitor"]);
    let ready = supervisor.wait_event("ready", 30 * SECOND);
    let postmaster = i32::try_from(ready["pid"].as_i64().unwrap()).unwrap();
    let mut leftovers = Leftovers::default();

    // A parallel query keeps a dynamic segment (besides the control segment) while it runs.
    let mut client = fixture.client();
    let backend: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let query = std::thread::spawn(move || {
        client.batch_execute(
            "SET force_parallel_mode = on; SET parallel_setup_cost = 0; \
             SET parallel_tuple_cost = 0; SELECT count(*) FROM generate_series(1, 2000000000)",
        )
    });
    let (control, _) = mapped_segments(postmaster);
    assert_eq!(control.len(), 1, "the postmaster maps one control segment");
    let in_use = wait_for(10 * SECOND, || {
        let (posix, _) = mapped_segments(backend);
        (posix.len() > control.len()).then_some(posix)
    })
    .expect("the parallel query made no dynamic shared memory segment");
    leftovers.posix.extend(control.iter().cloned());
    leftovers.posix.extend(in_use.iter().cloned());
    leftovers.sysv = sysv_of(postmaster);
    assert_eq!(leftovers.sysv.len(), 1, "{:?}", leftovers.sysv);
    assert!(leftovers.posix.len() >= 2, "{:?}", leftovers.posix);

    // Stop everything first, so no process cleans up after another's death, then kill.
    let postmaster_pid = Pid::from_raw(postmaster);
    kill(postmaster_pid, Signal::SIGSTOP).unwrap();
    let family = children(postmaster);
    for &child in &family {
        let _ = kill(Pid::from_raw(child), Signal::SIGSTOP);
    }
    kill(postmaster_pid, Signal::SIGKILL).unwrap();
    for &child in &family {
        let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
    }

    let exited = supervisor.wait_event("exited", 30 * SECOND);
    assert_eq!(exited["signal"], 9, "{exited}");
    let still_there: Vec<&PathBuf> = leftovers.posix.iter().filter(|p| p.exists()).collect();
    assert!(
        still_there.is_empty(),
        "POSIX segments left: {still_there:?}"
    );
    let present = sysv_segments();
    assert!(
        leftovers.sysv.is_disjoint(&present),
        "System V segment left: {:?}",
        leftovers.sysv
    );
    // The log line travels on stderr, read by its own thread: it may land after `exited`.
    assert!(
        wait_for(10 * SECOND, || supervisor
            .stderr_text()
            .contains("removed the shared memory")
            .then_some(()))
        .is_some(),
        "{}",
        supervisor.stderr_text()
    );

    for path in &other_posix {
        assert!(
            path.exists(),
            "the other postgres's {} was removed",
            path.display()
        );
    }
    assert!(
        other_sysv.is_subset(&present),
        "the other postgres's System V segment was removed"
    );
    other.client().batch_execute("SELECT 1").unwrap();

    assert!(query.join().unwrap().is_err(), "the query was killed");
    assert_eq!(supervisor.wait(10 * SECOND).code(), Some(1));
}
