//! Running a stage binary the way the pipeline does (a document on stdin, a document or an
//! error envelope on stdout) and the one result type every test reads: [`StageRun`].

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// What one run of a stage binary produced.
#[derive(Debug)]
pub struct StageRun {
    /// The exit code; `-1` when the process was killed by a signal.
    pub code: i32,
    /// stdout parsed as JSON; `Null` when it was not JSON (see [`StageRun::expect_json`]).
    pub json: Value,
    /// stdout as text.
    pub stdout: String,
    /// stderr as text.
    pub stderr: String,
}

impl StageRun {
    /// The result of a finished process.
    pub fn from_output(output: &Output) -> StageRun {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        StageRun {
            code: output.status.code().unwrap_or(-1),
            json: serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
            stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts that stdout was JSON (a stage always prints a document or an error envelope).
    ///
    /// # Panics
    ///
    /// Panics with stdout and stderr when stdout is not JSON.
    pub fn expect_json(self) -> StageRun {
        if let Err(error) = serde_json::from_str::<Value>(self.stdout.trim()) {
            panic!(
                "stdout is not JSON ({error}): {:?}; stderr: {}",
                self.stdout, self.stderr
            );
        }
        self
    }

    /// Asserts that stdout is an error envelope of `kind`; the error object.
    ///
    /// # Panics
    ///
    /// Panics with the envelope when the kind differs.
    pub fn error_of_kind(&self, kind: &str) -> &Value {
        let error = &self.json["error"];
        assert_eq!(error["kind"], kind, "{}", self.json);
        error
    }

    /// Asserts that the run exited with `code` and printed an error envelope of `kind`; the
    /// error object.
    ///
    /// # Panics
    ///
    /// Panics with stderr (or the envelope) when the code or the kind differs.
    pub fn failed_with(&self, code: u8, kind: &str) -> &Value {
        assert_eq!(self.code, i32::from(code), "{}", self.stderr);
        let error = &self.json["error"];
        assert_eq!(error["kind"], kind, "{error}");
        error
    }
}

/// Runs `program` with `args`, writing `stdin` to it, and waits for it to end.
///
/// # Panics
///
/// Panics naming the program when it cannot be spawned or waited for.
pub fn run_stage(program: impl AsRef<OsStr>, args: &[&str], stdin: &str) -> StageRun {
    StageRun::from_output(&crate::run_with_stdin(program, args, stdin))
}

/// Runs `program` with `args` on `stdin`, which must end within `limit` (else it is killed and
/// the test fails); the result and how long the run took.
///
/// # Panics
///
/// Panics when the program cannot be spawned, or still runs after `limit`.
pub fn run_stage_within(
    program: impl AsRef<OsStr>,
    args: &[&str],
    stdin: &str,
    limit: Duration,
) -> (StageRun, Duration) {
    let (run, took, _) = run_until(program.as_ref(), args, stdin, limit, |child| {
        let status = child.try_wait().ok().flatten()?;
        Some((status, 0))
    });
    (run, took)
}

/// [`run_stage_within`], also measuring the program's peak resident memory: the result, how
/// long the run took, and the peak in KiB (`ru_maxrss` of `wait4(2)`: exact, however short
/// the run).
///
/// # Panics
///
/// Panics when the program cannot be spawned or waited for, or still runs after `limit`.
pub fn run_stage_measured(
    program: impl AsRef<OsStr>,
    args: &[&str],
    stdin: &str,
    limit: Duration,
) -> (StageRun, Duration, u64) {
    run_until(program.as_ref(), args, stdin, limit, |child| {
        let pid = i32::try_from(child.id()).ok()?;
        reap(pid)
    })
}

/// Runs `program` on `stdin` until `ended` (polled) returns its exit status and peak memory,
/// for at most `limit`.
fn run_until(
    program: &OsStr,
    args: &[&str],
    stdin: &str,
    limit: Duration,
    mut ended: impl FnMut(&mut Child) -> Option<(ExitStatus, u64)>,
) -> (StageRun, Duration, u64) {
    let name = program.to_string_lossy().into_owned();
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
    let mut guard = KillOnDrop(Some(child.id()));
    if let Some(mut input) = child.stdin.take() {
        // A program that exits without reading its input closes the pipe: not a failure here.
        let _ = input.write_all(stdin.as_bytes());
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let (status, peak_kib) = crate::probe::wait_for(limit, || ended(&mut child))
        .unwrap_or_else(|| panic!("{name} still runs after {limit:?}"));
    guard.0 = None;
    let took = started.elapsed();
    let output = Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    (StageRun::from_output(&output), took, peak_kib)
}

/// Reaps child `pid` if it has ended: its exit status and peak resident memory (KiB).
fn reap(pid: i32) -> Option<(ExitStatus, u64)> {
    use std::os::unix::process::ExitStatusExt;
    let mut status = 0;
    // SAFETY: all-zero bytes are a valid `rusage` (plain integers).
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `status` and `usage` are valid, writable and live for the call; `pid` is a
    // child of this process that nothing else waits for (its `Child` is never waited on,
    // and it is reaped here once).
    let reaped = unsafe { nix::libc::wait4(pid, &mut status, nix::libc::WNOHANG, &mut usage) };
    match reaped {
        0 => None,
        reaped if reaped == pid => Some((
            ExitStatus::from_raw(status),
            u64::try_from(usage.ru_maxrss).unwrap_or(0),
        )),
        _ => panic!(
            "waiting for child {pid}: {}",
            std::io::Error::last_os_error()
        ),
    }
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

/// Kills the process with this id when dropped (a test that fails leaves nothing running).
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|pid| i32::try_from(pid).ok()) {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}
