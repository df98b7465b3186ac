//! One owner per PGDATA, end to end with the real stages and real PostgreSQL: a second
//! compute-ctl on the `-D` of a running one exits naming it and touches nothing; of two
//! starts at once exactly one proceeds; a compute killed mid-build (alone, leaving its
//! `initdb` orphaned, or with all its children) never stops the next start from reaching
//! `running`. And the start-up failures that must not idle: a non-UTF-8 `-D` (exit 2), a
//! busy HTTP port (exit 1 at once).

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use compute_tools_tests::{
    compute_ctl_command, psql, status, wait_running, wait_until, write_sample_spec, PostgresChild,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pg_test_support::crash::{count_entries, kill_tree};
use pg_test_support::{free_tcp_port, TestDir};

/// A compute-ctl on the sample spec (Postgres on `pg_port`), its stderr in `<dir>/<name>.log`.
struct Start {
    child: PostgresChild,
    http_port: u16,
    log: PathBuf,
}

impl Start {
    fn spawn(dir: &Path, name: &str, pg_port: u16, extra: &[&str], env: &[(&str, &str)]) -> Start {
        let spec = write_sample_spec(dir, pg_port);
        let pgdata = dir.join("pgdata");
        let http_port = free_tcp_port();
        let log = dir.join(format!("{name}.log"));
        let mut command = compute_ctl_command(&pgdata, http_port, 0);
        command
            .args(["-S", spec.to_str().unwrap()])
            .args(extra)
            .envs(env.iter().copied())
            .env_remove("AUTOSCALING")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap());
        Start {
            child: PostgresChild::new(command.spawn().unwrap(), &pgdata),
            http_port,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its exit code, once it exited within `timeout`.
    fn exit_within(&mut self, timeout: Duration) -> Option<i32> {
        let mut code = None;
        wait_until(timeout, || {
            code = self
                .child
                .try_wait()
                .unwrap()
                .map(|s| s.code().unwrap_or(-1));
            code.is_some()
        });
        code
    }
}

#[test]
fn a_second_compute_on_a_running_pgdata_exits_naming_it_and_the_data_survives() {
    let dir = TestDir::new("lock-second-");
    let pg_port = free_tcp_port();
    let first = Start::spawn(dir.path(), "first", pg_port, &[], &[]);
    wait_running(first.http_port, Duration::from_secs(90));
    let socket = dir.path().join("pgdata");
    psql(
        &socket,
        pg_port,
        "postgres",
        "CREATE TABLE precious AS SELECT 42 AS v",
    );
    compute_tools_tests::binary("compute-ctl"); // built before the clock starts
    let started = Instant::now();
    let mut second = Start::spawn(
        dir.path(),
        "second",
        pg_port,
        &["--pgdata-lock-timeout", "2s"],
        &[],
    );
    let code = second.exit_within(Duration::from_secs(20));
    let took = started.elapsed();
    assert_eq!(code, Some(1), "{}", second.log());
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let log = second.log();
    let holder = format!("taken by pid {} (compute-ctl, started ", first.child.id());
    assert!(log.contains(&holder), "{log}");
    assert!(log.contains("which is still running"), "{log}");
    assert!(!log.contains("HTTP API listening"), "{log}");
    assert_eq!(
        psql(&socket, pg_port, "postgres", "SELECT v FROM precious"),
        "42"
    );
    assert_eq!(status(first.http_port)["status"], "running");
    let aside = dir.path().join("pgdata.compute-tools-old");
    assert!(!aside.exists(), "the live PGDATA was moved aside");
}

#[test]
fn of_two_starts_at_once_on_an_empty_pgdata_exactly_one_proceeds() {
    let dir = TestDir::new("lock-race-");
    let pg_port = free_tcp_port();
    let args = ["--pgdata-lock-timeout", "1s"];
    let mut starts = [
        Start::spawn(dir.path(), "a", pg_port, &args, &[]),
        Start::spawn(dir.path(), "b", pg_port, &args, &[]),
    ];
    let mut exited = Vec::new();
    wait_until(Duration::from_secs(30), || {
        for (index, start) in starts.iter_mut().enumerate() {
            if !exited.iter().any(|(i, _)| *i == index) {
                if let Some(status) = start.child.try_wait().unwrap() {
                    exited.push((index, status.code()));
                }
            }
        }
        !exited.is_empty()
            && starts
                .iter()
                .any(|s| status(s.http_port)["status"] == "running")
    });
    assert_eq!(
        exited.len(),
        1,
        "exactly one must give up: {exited:?}\na: {}\nb: {}",
        starts[0].log(),
        starts[1].log()
    );
    let (loser, code) = exited[0];
    let winner = 1 - loser;
    assert_eq!(code, Some(1));
    assert!(
        starts[loser].log().contains("is in use"),
        "{}",
        starts[loser].log()
    );
    wait_running(starts[winner].http_port, Duration::from_secs(60));
    let socket = dir.path().join("pgdata");
    assert_eq!(psql(&socket, pg_port, "postgres", "SELECT 1"), "1");
}

/// Starts a compute, kills it once PGDATA holds `entries` entries (`whole_tree`: with every
/// process it started, at one instant; else compute-ctl alone, by SIGKILL), then checks that
/// the next start reaches `running` on the same PGDATA; returns the next start's log and
/// whether a process still held the PGDATA lock when the next start was spawned.
fn killed_mid_build(
    name: &str,
    entries: usize,
    whole_tree: bool,
    env: &[(&str, &str)],
) -> (String, bool) {
    let dir = TestDir::new("lock-kill-");
    let pg_port = free_tcp_port();
    let pgdata = dir.path().join("pgdata");
    let mut first = Start::spawn(dir.path(), "first", pg_port, &[], env);
    let reached = wait_until(Duration::from_secs(60), || {
        count_entries(&pgdata) >= entries || first.child.try_wait().unwrap().is_some()
    });
    assert!(
        reached && first.child.try_wait().unwrap().is_none(),
        "{name}: {}",
        first.log()
    );
    let seen = count_entries(&pgdata);
    let pid = first.child.id() as i32;
    if whole_tree {
        kill_tree(pid);
    } else {
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    }
    first.child.wait().unwrap();
    let held = lock_holders(&dir.path().join("pgdata.compute-tools.lock"));
    eprintln!("{name}: killed with {seen} entries in PGDATA; the lock held by {held:?}");
    let next = Start::spawn(dir.path(), "next", pg_port, &[], env);
    assert!(
        wait_until(Duration::from_secs(90), || {
            status(next.http_port)["status"] == "running"
        }),
        "{name}: the next start never ran: {}\n{}",
        status(next.http_port),
        next.log()
    );
    assert_eq!(psql(&pgdata, pg_port, "postgres", "SELECT 1"), "1");
    (next.log(), !held.is_empty())
}

/// The processes that have `lock` open, right now (from `/proc/<pid>/fd`).
fn lock_holders(lock: &std::path::Path) -> Vec<i32> {
    let mut holders = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == lock))
        {
            holders.push(pid);
        }
    }
    holders
}

const NO_CACHE: [(&str, &str); 1] = [("COMPUTE_TOOLS_NO_TEMPLATE_CACHE", "true")];

#[test]
fn compute_ctl_killed_during_initdb_leaves_it_the_lock_and_the_next_start_runs() {
    let (log, held) = killed_mid_build("compute-ctl alone, initdb", 300, false, &NO_CACHE);
    // What the build left behind kept the lock: the next start waited for it, naming it,
    // instead of wiping the tree it was still writing. initdb itself dies with pg-basebackup-
    // fetch (its death signal); the bootstrap `postgres` it runs under `sh` holds on until it
    // sees its input close — either may be the one named. On a loaded machine they may all be
    // gone before the next start is spawned: then there is nothing to wait for (the start
    // running is what is checked).
    if !held {
        eprintln!("no process held the lock any more when the next start came");
        return;
    }
    assert!(log.contains("is in use"), "{log}");
    assert!(log.contains("is no longer running"), "{log}");
    // The holders are listed when they still hold it as the message is written (they may
    // exit in between): then they are the build's own processes.
    if log.contains("processes holding it open") {
        assert!(
            ["(initdb)", "(postgres)", "(sh)"]
                .iter()
                .any(|name| log.contains(name)),
            "{log}"
        );
    }
}

#[test]
fn a_compute_killed_whole_during_initdb_or_the_copy_then_the_next_start_runs() {
    killed_mid_build("whole tree, initdb", 500, true, &NO_CACHE);
    killed_mid_build("whole tree, template cache", 1, true, &[]);
}

#[test]
fn a_non_utf8_pgdata_is_a_usage_error() {
    use std::os::unix::ffi::OsStrExt;
    let dir = TestDir::new("lock-utf8-");
    let pgdata = dir.path().join(std::ffi::OsStr::from_bytes(b"pg\xff"));
    let output = compute_ctl_command(&pgdata, free_tcp_port(), 0)
        .arg("--embedded-default")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not valid UTF-8"), "{stderr}");
    assert!(stderr.contains("--pgdata"), "{stderr}");
    assert!(!pgdata.exists());
}

#[test]
fn a_busy_http_port_exits_at_once_without_the_failed_grace() {
    let dir = TestDir::new("lock-http-");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut command = compute_ctl_command(&dir.path().join("pgdata"), port, 0);
    let started = Instant::now();
    let mut child: Child = command
        .args(["--embedded-default", "--failed-grace", "30s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut code = None;
    wait_until(Duration::from_secs(40), || {
        code = child.try_wait().unwrap().map(|s| s.code());
        code.is_some()
    });
    let took = started.elapsed();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("a busy HTTP port: exit after {} ms", took.as_millis());
    assert_eq!(code, Some(Some(1)), "{stderr}");
    assert!(took < Duration::from_secs(5), "{took:?}: {stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    drop(taken);
}
