//! Peak memory of a process, for tests that perform a memory attack: [`run_measured`] runs a
//! program to its end and reports its peak resident set (from `wait4`'s `ru_maxrss`, exact
//! even for a process that lives a few milliseconds); [`peak_rss_kib`] reads a running
//! process's high-water mark (`VmHWM`).

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::libc;

use crate::stage_run::StageRun;

/// What [`run_measured`] saw.
#[derive(Debug)]
pub struct Measured {
    /// Exit code, stdout (as JSON when it is), stderr.
    pub run: StageRun,
    /// From spawn to exit.
    pub took: Duration,
    /// The process's peak resident set, in KiB.
    pub peak_rss_kib: u64,
}

/// Runs `command` to its end with stdout and stderr captured (stdin as the caller set it: set
/// it, the default inherits the test's), under an address-space limit of `address_space`
/// bytes when given (so a test of a memory attack cannot take the machine down when the
/// defence is missing: the program then fails to allocate instead).
///
/// # Panics
///
/// Panics when the program cannot be spawned, or still runs after `limit` (it is then killed;
/// the message says how much memory it had reached).
pub fn run_measured(
    command: &mut Command,
    limit: Duration,
    address_space: Option<u64>,
) -> Measured {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(bytes) = address_space {
        let limit = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: bytes,
        };
        // SAFETY: between fork and exec the closure only calls setrlimit, which is
        // async-signal-safe and touches no memory of the parent but the `limit` copy.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let name = command.get_program().to_string_lossy().into_owned();
    let started = Instant::now();
    // Reaped by `wait4` below (which also gives its resource usage), never by std.
    #[allow(clippy::zombie_processes)]
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
    let pid = child.id() as libc::pid_t;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut killed = false;
    loop {
        // SAFETY: `status` and `usage` are valid for writes; `pid` is our own unreaped child
        // (std never waits for it: `child` is only dropped).
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            break;
        }
        assert!(
            reaped == 0,
            "wait4 on {name}: {}",
            std::io::Error::last_os_error()
        );
        if !killed && started.elapsed() > limit {
            let peak = peak_rss_kib(pid).unwrap_or(0);
            // SAFETY: signalling our own unreaped child, whose pid cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
            eprintln!("{name} still ran after {limit:?} (peak {peak} KiB so far); killed");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = started.elapsed();
    let peak_rss_kib = u64::try_from(usage.ru_maxrss).unwrap_or(0);
    assert!(
        !killed,
        "{name} still ran after {limit:?} (peak {peak_rss_kib} KiB); it was killed"
    );
    let output = Output {
        status: ExitStatus::from_raw(status),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    Measured {
        run: StageRun::from_output(&output),
        took,
        peak_rss_kib,
    }
}

/// The high-water mark of process `pid`'s resident set (`VmHWM`), in KiB; None when it is gone
/// (or a zombie).
pub fn peak_rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Reads a pipe to its end on a thread (so a full pipe never blocks the child).
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}
