//! Spawning the postmaster so it can never outlive the supervisor, and reaping children.
//!
//! The postmaster is spawned from a dedicated thread ([`spawn`]) that then waits for children
//! with `waitpid(-1)` until the postmaster has exited. `PR_SET_PDEATHSIG` fires when the
//! *spawning thread* exits, so that thread must live as long as the postmaster: it does, since it
//! is the one waiting for it. The postmaster leads its own process group, and the death signal
//! (`stage_kit::child::own`) is set after the drop to the `postgres` user (a credential change
//! clears it); the child checks that its parent is still alive afterwards. Because the supervisor is a child subreaper (and, as PID 1, the namespace's
//! init), orphaned descendants are re-parented to it; the same `waitpid(-1)` loop reaps them.
//!
//! [`postgres_command`] builds the command (user, environment); [`spawn`] adds the death
//! signal last, so it runs after the credential change, and puts the child's stdout and stderr
//! on one pipe whose read end it returns, to forward (redacted) to our stderr. [`catches`] tells whether the postmaster
//! handles a signal yet, so a shutdown request right after spawning is not fatal to it.

use std::fs::File;
use std::io;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use compute_spec::document::ComputeDocument;
use compute_spec::error::{ErrorKind, StageError};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use stage_kit::child::Pidfd;
use stage_kit::runas::{apply_user, PostgresUser};

use crate::STAGE;

/// How the postmaster ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl ExitStatus {
    /// The exit code and the signal, as the `exited` event reports them.
    pub fn code_and_signal(self) -> (Option<i32>, Option<i32>) {
        match self {
            ExitStatus::Code(code) => (Some(code), None),
            ExitStatus::Signal(signal) => (None, Some(signal)),
        }
    }

    /// The supervisor's exit code for this status: Postgres's code passed through, a
    /// run-time failure for a signal ([`compute_spec::exit_code::of_postgres`]).
    pub fn supervisor_code(self) -> u8 {
        let (code, signal) = self.code_and_signal();
        compute_spec::exit_code::of_postgres(code, signal)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(signal) => match Signal::try_from(*signal) {
                Ok(signal) => write!(f, "signal {signal}"),
                Err(_) => write!(f, "signal {signal}"),
            },
        }
    }
}

/// A spawned postmaster.
#[derive(Debug)]
pub struct Spawned {
    /// Its process id.
    pub pid: Pid,
    /// Its pidfd, opened before it can be reaped (`None` when the kernel has none): signals
    /// through it never reach a process that reused the pid after the postmaster thread
    /// reaped it.
    pub pidfd: Option<Pidfd>,
    /// The read end of the pipe its stdout and stderr both write to, to forward.
    pub output: File,
}

/// Makes this process a child subreaper, so orphaned descendants are re-parented to it and
/// reaped by the postmaster thread instead of escaping to the host's init.
pub fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// Spawns `command` on a new long-lived thread with a parent-death signal of `SIGKILL`, its
/// stdout and stderr both on one pipe (so everything it writes is forwarded, redacted, and
/// nothing reaches our stderr directly), and returns once it runs. The thread then reaps children, and calls `on_exit` with the
/// postmaster's pid and exit status (then ends).
pub fn spawn(
    mut command: Command,
    on_exit: impl FnOnce(Pid, ExitStatus) + Send + 'static,
) -> io::Result<Spawned> {
    // Its own process group, SIGKILL when the supervisor dies, and the parent re-check
    // (`stage_kit::child::own`), registered after any pre_exec that changes credentials: a
    // uid change clears the parent-death signal. Forked locally, on the thread below, which
    // lives until the postmaster has exited (it is the one waiting for it), not on
    // stage-kit's spawner thread: this thread must be the child's parent thread and its only
    // reaper. A parent that died before the prctl fails the spawn with ESRCH.
    stage_kit::child::own(&mut command, Signal::SIGKILL);
    // Close-on-exec: only the descriptors made from the write end (stdout and stderr) reach the
    // child.
    let (reader, writer) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    command
        .stdout(Stdio::from(writer.try_clone()?))
        .stderr(Stdio::from(writer));
    let output = File::from(reader);
    let (started_tx, started_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("postmaster".into())
        .spawn(move || {
            let spawned = command.spawn();
            // Our copies of the write end: closed, so the output ends when postgres's does.
            drop(command);
            let child = match spawned {
                Ok(child) => {
                    let pid = Pid::from_raw(child.id() as i32);
                    // Before `reap_until`: this thread is its only reaper.
                    let pidfd = Pidfd::open(&child)
                        .inspect_err(|error| {
                            tracing::warn!("no pidfd for postgres ({error}): signalled by pid")
                        })
                        .ok();
                    let _ = started_tx.send(Ok(Spawned { pid, pidfd, output }));
                    pid
                }
                Err(error) if error.raw_os_error() == Some(libc::ESRCH) => {
                    // Only the parent re-check of `own` fails with ESRCH.
                    let _ = started_tx.send(Err(io::Error::other(
                        "the supervisor exited before postgres started",
                    )));
                    return;
                }
                Err(error) => {
                    let _ = started_tx.send(Err(error));
                    return;
                }
            };
            let status = reap_until(child);
            reap_leftovers(stage_kit::deadline::after(LEFTOVER_GRACE));
            on_exit(child, status);
        })?;
    started_rx
        .recv()
        .map_err(|_| io::Error::other("the postmaster thread ended before spawning postgres"))?
}

/// How long to wait, after the postmaster exited, for re-parented descendants (backends of a
/// killed postmaster notice its death within milliseconds) to exit.
const LEFTOVER_GRACE: Duration = Duration::from_secs(2);
/// How often to look for them.
const LEFTOVER_POLL: Duration = Duration::from_millis(5);

/// Reaps every child (the postmaster and re-parented orphans) until the postmaster exits.
fn reap_until(postmaster: Pid) -> ExitStatus {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == postmaster => {
                return ExitStatus::Code(code)
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == postmaster => {
                return ExitStatus::Signal(signal as i32)
            }
            Ok(WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)) => {
                tracing::debug!("reaped orphaned process {pid}");
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(error) => {
                // ECHILD cannot happen while the postmaster lives; report it as gone.
                tracing::error!("waiting for postgres (pid {postmaster}): {error}");
                return ExitStatus::Signal(Signal::SIGKILL as i32);
            }
        }
    }
}

/// Reaps children that are left (only after an abnormal end: a normal shutdown waits for every
/// backend) until there are none or `deadline` passes, so the supervisor leaves nothing behind.
fn reap_leftovers(deadline: Instant) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                std::thread::sleep(LEFTOVER_POLL)
            }
            Ok(WaitStatus::StillAlive) => {
                tracing::warn!("children of postgres are still running after it exited");
                return;
            }
            Ok(status) => tracing::debug!("reaped a child of postgres: {status:?}"),
            Err(Errno::EINTR) => {}
            // ECHILD: nothing left.
            Err(_) => return,
        }
    }
}

/// The `postgres -D PGDATA` command: as the postgres user when root, `NEON_AUTH_TOKEN` when the
/// spec has a storage token; [`spawn`] sends its stdout and stderr to the forwarder.
pub fn postgres_command(
    document: &ComputeDocument,
    user_name: Option<&str>,
) -> Result<Command, StageError> {
    let user = PostgresUser::for_current_process(user_name)
        .map_err(|error| StageError::new(STAGE, ErrorKind::Usage, error.to_string()))?;
    if user.is_none() && user_name.is_some() {
        tracing::warn!("--user is ignored: not running as root, postgres runs as this user");
    }
    let mut command = stage_kit::cgexec::command(&document.pgbin);
    // Postgres built with systemd support would announce READY=1 itself; only the supervisor
    // (or compute-ctl) speaks to systemd.
    command.env_remove(stage_kit::notify::NOTIFY_SOCKET);
    command
        .arg("-D")
        .arg(&document.pgdata)
        .current_dir(&document.pgdata)
        .stdin(Stdio::null());
    let token = document
        .spec
        .as_ref()
        .and_then(|spec| spec.storage_auth_token.as_ref());
    if let Some(token) = token {
        command.env("NEON_AUTH_TOKEN", token.expose());
    }
    apply_user(&mut command, user.as_ref());
    Ok(command)
}

/// Sends `signal` to the postmaster: through `pidfd` when there is one (once the postmaster
/// thread reaped it, nothing is sent, even if its pid was given to another process), else by
/// pid. A failure is logged (it may have exited already).
pub fn signal_postmaster(pid: Pid, pidfd: Option<&Pidfd>, signal: Signal) {
    let sent = match pidfd {
        Some(pidfd) => pidfd.signal(Some(signal)),
        None => kill(pid, signal).map_err(io::Error::from),
    };
    if let Err(error) = sent {
        tracing::warn!("sending {signal} to postgres (pid {pid}): {error}");
    }
}

/// Whether process `pid` has a handler for `signal` (the `SigCgt` mask in `/proc/<pid>/status`).
/// When that cannot be read, assume it has.
pub fn catches(pid: Pid, signal: Signal) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok());
    match mask {
        Some(mask) => mask & (1u64 << (signal as i32 - 1)) != 0,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn caught_signals_are_read_from_proc() {
        let me = nix::unistd::getpid();
        assert!(!catches(me, Signal::SIGUSR2));
        let flag = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGUSR2, flag).unwrap();
        assert!(catches(me, Signal::SIGUSR2));
        // An unreadable status (no such process) counts as handled: send rather than hang.
        assert!(catches(Pid::from_raw(i32::MAX), Signal::SIGINT));
    }
}
