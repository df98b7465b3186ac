//! The child runner on real processes: a long-lived child outlives the thread that asked for
//! it and dies with the process; the deadline and the output cap kill the whole group; output
//! and status are kept.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pg_test_support::probe::{process_alive, wait_dead};
use pg_test_support::TestDir;
use stage_kit::child::{run, run_with_input, RunError, STDERR_CAP};

/// Set in the environment of the helper process of [`long_lived_parent`].
const HELPER: &str = "STAGE_KIT_CHILD_TEST_HELPER";

fn wait_gone(pid: i32, within: Duration, what: &str) {
    assert!(wait_dead(pid, within), "{what} (pid {pid}) still runs");
}

fn shell(script: &str) -> Command {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(script);
    command
}

/// The helper process: starts a long-lived `sleep` from a thread that then exits, prints
/// its pid, and waits to be killed. Runs only when [`HELPER`] is set (from
/// `a_long_lived_child_outlives_its_thread_and_dies_with_the_process`).
#[test]
#[ignore = "a helper process of another test"]
fn long_lived_parent() {
    if std::env::var_os(HELPER).is_none() {
        return;
    }
    // The child is never reaped here: this helper process is SIGKILLed by the test.
    #[allow(clippy::zombie_processes)]
    let pid = std::thread::spawn(|| {
        let mut command = Command::new("sleep");
        command
            .arg("300")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let child = stage_kit::child::spawn_long_lived(command, Signal::SIGKILL).unwrap();
        child.id()
    })
    .join()
    .unwrap();
    println!("CHILD {pid}");
    std::thread::sleep(Duration::from_secs(300));
}

/// This test binary re-run as the helper test `child::<name>`, its stdout piped.
fn helper_process(name: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &format!("child::{name}"),
            "--ignored",
            "--nocapture",
        ])
        .env(HELPER, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_long_lived_child_outlives_its_thread_and_dies_with_the_process() {
    let mut parent = helper_process("long_lived_parent");
    let stdout = BufReader::new(parent.stdout.take().unwrap());
    let child: i32 = stdout
        .lines()
        .map(Result::unwrap)
        .find_map(|line| line.strip_prefix("CHILD ").map(|pid| pid.parse().unwrap()))
        .expect("the helper printed no child pid");
    // The thread that asked for the child has exited; the child must not have died with it.
    std::thread::sleep(Duration::from_millis(300));
    let alive = process_alive(child);
    kill(Pid::from_raw(parent.id() as i32), Signal::SIGKILL).unwrap();
    parent.wait().unwrap();
    assert!(alive, "the child died with the thread that asked for it");
    wait_gone(
        child,
        Duration::from_secs(5),
        "the child of a SIGKILLed parent",
    );
}

/// The helper process of `a_child_whose_parent_died_before_the_prctl_exits_before_exec`:
/// forks a child that pauses in `pre_exec` (before the death signal is set) and would
/// then run `sleep 300`. Runs only when [`HELPER`] is set.
#[test]
#[ignore = "a helper process of another test"]
fn slow_fork_parent() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(HELPER).is_none() {
        return;
    }
    let mut command = Command::new("sleep");
    command
        .arg("300")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // SAFETY: the closure only calls nanosleep (std's sleep, no allocation).
    unsafe {
        command.pre_exec(|| {
            std::thread::sleep(Duration::from_millis(800));
            Ok(())
        });
    }
    println!("FORKING");
    let _ = stage_kit::child::spawn(&mut command, Signal::SIGKILL).map(|mut child| child.wait());
    std::thread::sleep(Duration::from_secs(300));
}

/// The children of every thread of `pid` (`/proc/<pid>/task/*/children`).
fn children_of(pid: u32) -> Vec<i32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        found.extend(
            text.split_whitespace()
                .map(|pid| pid.parse::<i32>().unwrap()),
        );
    }
    found
}

/// The parent dies between the fork and the `prctl`: the death signal would never come, so
/// the `getppid()` re-check must end the child before it runs the program.
#[test]
fn a_child_whose_parent_died_before_the_prctl_exits_before_exec() {
    let mut parent = helper_process("slow_fork_parent");
    let mut stdout = BufReader::new(parent.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("FORKING") {
        line.clear();
        assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "the helper ended");
    }
    let child = pg_test_support::wait_for(Duration::from_secs(5), || {
        children_of(parent.id()).first().copied()
    })
    .expect("the helper forked no child");
    kill(Pid::from_raw(parent.id() as i32), Signal::SIGKILL).unwrap();
    parent.wait().unwrap();
    // The child wakes from its pause orphaned; it must not go on to run `sleep 300`.
    let gone = wait_dead(child, Duration::from_secs(5));
    if !gone {
        let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
    }
    assert!(gone, "the orphaned child (pid {child}) ran the program");
}

#[test]
fn a_grandchild_in_the_group_dies_at_the_deadline() {
    let dir = TestDir::new("child-");
    let pid_file = dir.path().join("grandchild.pid");
    let script = format!("sleep 300 & echo $! > '{}'; wait", pid_file.display());
    let started = Instant::now();
    let error = run(&mut shell(&script), Duration::from_millis(500), 1024).unwrap_err();
    assert!(matches!(error, RunError::TimedOut { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let grandchild: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_gone(grandchild, Duration::from_secs(2), "the grandchild");
}

#[test]
fn a_grandchild_holding_the_output_is_killed_at_the_deadline() {
    // The shell exits at once; its background child keeps the stdout pipe open.
    let dir = TestDir::new("child-");
    let pid_file = dir.path().join("grandchild.pid");
    let script = format!("sleep 300 & echo $! > '{}'", pid_file.display());
    let error = run(&mut shell(&script), Duration::from_millis(500), 1024).unwrap_err();
    assert!(matches!(error, RunError::TimedOut { .. }), "{error}");
    let grandchild: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_gone(grandchild, Duration::from_secs(2), "the grandchild");
}

#[test]
fn keeps_output_and_status() {
    let output = run(
        &mut shell("echo out; echo err >&2; exit 3"),
        Duration::from_secs(10),
        1024,
    )
    .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(output.stdout, b"out\n");
    assert_eq!(output.stderr, b"err\n");
}

#[test]
fn input_reaches_stdin() {
    let output = run_with_input(
        &mut shell("tr a-z A-Z"),
        b"hello",
        Duration::from_secs(10),
        64,
    )
    .unwrap();
    assert!(output.status.success());
    assert_eq!(output.stdout, b"HELLO");
}

#[test]
fn kills_at_the_deadline() {
    let started = Instant::now();
    let error = run(&mut shell("sleep 30"), Duration::from_millis(200), 1024).unwrap_err();
    assert!(matches!(error, RunError::TimedOut { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(error.to_string().contains("did not finish within 0.2 s"));
}

#[test]
fn kills_past_the_cap() {
    let error = run(&mut shell("yes"), Duration::from_secs(10), 4096).unwrap_err();
    assert!(
        matches!(error, RunError::TooLarge { cap: 4096, .. }),
        "{error}"
    );
}

#[test]
fn names_a_missing_program() {
    let error = run(
        &mut Command::new("/nonexistent/pg_dump"),
        Duration::from_secs(1),
        16,
    )
    .unwrap_err();
    assert!(error.to_string().contains("starting /nonexistent/pg_dump"));
}

#[test]
fn a_noisy_stderr_does_not_block() {
    let output = run(
        &mut shell("head -c 200000 /dev/zero >&2; echo done"),
        Duration::from_secs(10),
        1024,
    )
    .unwrap();
    assert!(output.status.success());
    assert_eq!(output.stderr.len(), STDERR_CAP);
    assert_eq!(output.stdout, b"done\n");
}
