//! Finding the stage binaries and running one stage as a child process through the JSON
//! contract: the document on its stdin, the document (or an error envelope) on its stdout.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use compute_spec::error::{ErrorEnvelope, ErrorKind, StageError};
use compute_spec::ComputeDocument;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use stage_kit::child::Pidfd;

/// The name compute-ctl uses in its own errors.
pub const STAGE: &str = "compute-ctl";

/// An internal error of compute-ctl.
pub fn internal(message: impl Into<String>) -> StageError {
    StageError::new(STAGE, ErrorKind::Internal, message)
}

/// The stage binaries compute-ctl runs.
pub mod name {
    /// Loads the spec and starts the document.
    pub const COMPUTE_SPEC: &str = "compute-spec";
    /// Decides the start LSN.
    pub const SYNC_SAFEKEEPERS: &str = "pg-sync-safekeepers";
    /// Prepares PGDATA.
    pub const BASEBACKUP_FETCH: &str = "pg-basebackup-fetch";
    /// Writes remote extensions' control files, downloads the preload libraries.
    pub const EXTENSIONS_FETCH: &str = "pg-extensions-fetch";
    /// Reconciles settings and catalog.
    pub const RECONCILE: &str = "pg-reconcile";
    /// Owns the postmaster.
    pub const SUPERVISE: &str = "pg-supervise";
    /// The autoscaling agent (started only with AUTOSCALING).
    pub const VM_MONITOR: &str = "vm-monitor";
}

/// The memory cgroup the stages wrap Postgres in (`cgexec -g memory:<cgroup>`, with
/// `AUTOSCALING`): compute-ctl's `--cgroup`, passed to every stage it starts as
/// `COMPUTE_CTL_CGROUP`, so the flag alone moves both the vm-monitor and Postgres. Set once,
/// at start ([`set_cgroup`]).
static CGROUP: OnceLock<String> = OnceLock::new();

/// Makes `cgroup` the memory cgroup of every stage started from now on (the first call wins).
pub fn set_cgroup(cgroup: &str) {
    let _ = CGROUP.set(cgroup.to_string());
}

/// The lock on PGDATA compute-ctl holds for its life, handed to every stage it runs (never
/// to a sidecar). Set once, at start ([`set_pgdata_lock`]).
static PGDATA_LOCK: OnceLock<stage_kit::pgdata_lock::PgdataLock> = OnceLock::new();

/// Makes `lock` the PGDATA lock handed to every stage started from now on (the first call
/// wins).
pub fn set_pgdata_lock(lock: stage_kit::pgdata_lock::PgdataLock) {
    let _ = PGDATA_LOCK.set(lock);
}

/// The environment variable that overrides where stage `stage` is found.
pub fn override_variable(stage: &str) -> String {
    format!(
        "COMPUTE_CTL_STAGE_{}",
        stage.to_ascii_uppercase().replace('-', "_")
    )
}

/// Where stage `stage` is: `$COMPUTE_CTL_STAGE_<NAME>`, else beside this executable, else the
/// bare name (looked up on PATH).
pub fn locate(stage: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(override_variable(stage)).filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(stage)));
    match beside {
        Some(path) if path.exists() => path,
        _ => PathBuf::from(stage),
    }
}

/// The child running right now (a stage, or pg-supervise), so a signal from another thread
/// can reach it. The owner marks it [`starting`](ChildPid::starting) before the spawn, so a
/// signal sent between the spawn and [`record`](ChildPid::record) is kept and delivered once
/// recorded, never lost; it [`clear`](ChildPid::clear)s it *before* reaping the child, so a
/// recorded pid (and group id) always names the child: a signal never reaches a process that
/// reused the pid. The child itself is reached through a pidfd.
#[derive(Clone, Debug, Default)]
pub struct ChildPid(Arc<Mutex<Slot>>);

#[derive(Debug, Default)]
enum Slot {
    /// No child.
    #[default]
    Idle,
    /// A child is being spawned; the signal that arrived meanwhile (and whether for its
    /// group).
    Starting(Option<(Signal, bool)>),
    /// The child (not reaped yet); its pidfd when one could be opened.
    Running(Pid, Option<Pidfd>),
}

impl ChildPid {
    /// A child is about to be spawned: a signal sent from now until [`ChildPid::record`] is
    /// kept (a second call keeps what the first one kept).
    pub fn starting(&self) {
        self.with(|slot| {
            if !matches!(slot, Slot::Starting(_)) {
                *slot = Slot::Starting(None);
            }
        });
    }

    /// Records `child` (spawned, not reaped) and delivers a signal sent while it started.
    pub fn record(&self, child: &Child) {
        let Ok(raw) = i32::try_from(child.id()) else {
            return;
        };
        let pid = Pid::from_raw(raw);
        let pidfd = match Pidfd::open(child) {
            Ok(pidfd) => Some(pidfd),
            Err(error) => {
                tracing::warn!(%pid, %error, "no pidfd for a child: signalled by pid");
                None
            }
        };
        self.with(|slot| {
            let pending = match std::mem::replace(slot, Slot::Running(pid, pidfd)) {
                Slot::Starting(pending) => pending,
                _ => None,
            };
            if let Some((signal, group)) = pending {
                tracing::info!(%signal, %pid, "delivering a signal that arrived while the child started");
                slot.send(signal, group);
            }
        });
    }

    /// Forgets the child; call it before reaping the child (or when its spawn failed).
    pub fn clear(&self) {
        self.with(|slot| *slot = Slot::Idle);
    }

    /// Sends `signal` to the child (kept for it while it is starting).
    pub fn signal(&self, signal: Signal) {
        self.with(|slot| slot.send(signal, false));
    }

    /// Sends `signal` to the child's whole process group (a stage and its helpers).
    pub fn signal_group(&self, signal: Signal) {
        self.with(|slot| slot.send(signal, true));
    }

    fn with(&self, change: impl FnOnce(&mut Slot)) {
        // A poisoned lock still holds a consistent slot: every change is one assignment.
        let mut slot = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut slot);
    }
}

impl Slot {
    fn send(&mut self, signal: Signal, group: bool) {
        match self {
            Slot::Idle => {}
            Slot::Starting(pending) => {
                if pending.is_none() {
                    *pending = Some((signal, group));
                }
            }
            Slot::Running(pid, Some(pidfd)) => {
                let sent = if group {
                    pidfd.signal_group(signal)
                } else {
                    pidfd.signal(Some(signal))
                };
                if let Err(error) = sent {
                    tracing::debug!(%signal, %pid, %error, "signalling a child");
                }
            }
            // Recorded and not reaped (the owner clears before reaping): the pid is its own.
            Slot::Running(pid, None) => {
                let sent = if group {
                    nix::sys::signal::killpg(*pid, signal)
                } else {
                    nix::sys::signal::kill(*pid, signal)
                };
                if let Err(error) = sent {
                    tracing::debug!(%signal, %pid, %error, "signalling a child");
                }
            }
        }
    }
}

/// Keeps compute-ctl's systemd notification socket from a child: compute-ctl alone tells
/// systemd when the compute is ready (not Postgres, not a stage, not a tool):
/// [`stage_kit::notify::hide_from`].
pub fn hide_notify_socket(command: &mut Command) {
    stage_kit::notify::hide_from(command);
}

/// Spawns stage `stage` with `args`, stdin/stdout piped, stderr inherited: in its own process
/// group (a terminal's Ctrl-C reaches compute-ctl only, which forwards exactly one shutdown
/// signal: a second one would escalate pg-supervise's shutdown), with SIGTERM when
/// compute-ctl dies, even by SIGKILL (so pg-supervise stops Postgres cleanly), forked on the
/// spawner thread ([`stage_kit::child::spawn_long_lived`]): whichever thread asks, the stage
/// dies only with the process.
pub fn spawn(stage: &str, args: &[OsString]) -> Result<Child, StageError> {
    let path = locate(stage);
    let mut command = Command::new(&path);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(cgroup) = CGROUP.get() {
        command.env(stage_kit::cgexec::CGROUP_ENV, cgroup);
    }
    hide_notify_socket(&mut command);
    if let Some(lock) = PGDATA_LOCK.get() {
        lock.hand_to(&mut command);
    }
    stage_kit::child::spawn_long_lived(command, Signal::SIGTERM).map_err(|error| {
        StageError::new(
            STAGE,
            ErrorKind::Child,
            format!(
                "starting stage {stage} ({}): {error}; install it beside compute-ctl or set {}",
                path.display(),
                override_variable(stage)
            ),
        )
    })
}

/// Runs stage `stage` with `args` on `input` (a document or a spec envelope) and returns the
/// document it wrote. A non-zero exit is the stage's own error envelope when it wrote one.
pub fn run(
    stage: &str,
    args: &[OsString],
    input: &[u8],
    running: &ChildPid,
) -> Result<ComputeDocument, StageError> {
    running.starting();
    let mut child = spawn(stage, args).inspect_err(|_| running.clear())?;
    running.record(&child);
    exchange(stage, &mut child, input, running)
}

/// Feeds the stage, reads its output, then reaps it ([`ChildPid::clear`]ed first).
fn exchange(
    stage: &str,
    child: &mut Child,
    input: &[u8],
    running: &ChildPid,
) -> Result<ComputeDocument, StageError> {
    let child_error = |message: String| StageError::new(STAGE, ErrorKind::Child, message);
    let writer = child.stdin.take().map(|mut stdin| {
        let input = input.to_vec();
        std::thread::spawn(move || {
            // A stage that does not read its stdin (or exits early) is not an error here.
            let _ = stdin.write_all(&input);
        })
    });
    let mut output = Vec::new();
    let read = match child.stdout.take() {
        Some(mut stdout) => stdout.read_to_end(&mut output).map(|_| ()),
        None => Ok(()),
    };
    if read.is_err() {
        stage_kit::child::kill_group_unreaped(child);
    }
    // Noticed without reaping, so the recorded pid stays the stage's until it is cleared.
    let _ = stage_kit::child::exited_unreaped(child, true);
    running.clear();
    let status = child.wait();
    read.map_err(|error| child_error(format!("reading stage {stage}'s stdout: {error}")))?;
    let status =
        status.map_err(|error| child_error(format!("waiting for stage {stage}: {error}")))?;
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    if !status.success() {
        if let Ok(envelope) = serde_json::from_slice::<ErrorEnvelope>(&output) {
            return Err(envelope.error);
        }
        return Err(child_error(format!(
            "stage {stage} failed ({status}) without an error envelope on stdout; see its log above"
        )));
    }
    serde_json::from_slice(&output).map_err(|error| {
        child_error(format!(
            "stage {stage} exited 0 but its stdout is not a compute document: {error}"
        ))
    })
}

/// Serialises a document for a stage's stdin.
pub fn document_bytes(document: &ComputeDocument) -> Result<Vec<u8>, StageError> {
    serde_json::to_vec(document).map_err(|error| {
        StageError::new(
            STAGE,
            ErrorKind::Internal,
            format!("serialising the document: {error}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::time::{Duration, Instant};

    fn sleeper() -> Child {
        let mut command = Command::new("sleep");
        command.arg("30");
        stage_kit::child::spawn(&mut command, Signal::SIGKILL).unwrap()
    }

    /// Waits (at most 5 s) for `child` to end; its status, `None` when it still runs.
    fn ended(child: &mut Child) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// A SIGTERM that arrives after the spawn started but before the pid was recorded (the
    /// signal thread finds no pid yet) still reaches the child once it is recorded.
    #[test]
    fn a_signal_while_the_child_starts_is_delivered() {
        let running = ChildPid::default();
        running.starting();
        running.signal_group(Signal::SIGTERM);
        let mut child = sleeper();
        running.record(&child);
        let status = ended(&mut child);
        running.clear();
        if status.is_none() {
            stage_kit::child::kill_group(&mut child);
        }
        assert_eq!(
            status.and_then(|status| status.signal()),
            Some(Signal::SIGTERM as i32),
            "the signal sent while the child started was lost"
        );
    }

    /// Starts `sleep` with the pid `wanted` (through `ns_last_pid`, retried while other
    /// processes take it first); `None` when that never worked.
    fn sleeper_with_pid(wanted: i32) -> Option<Child> {
        for _ in 0..200 {
            std::fs::write("/proc/sys/kernel/ns_last_pid", (wanted - 1).to_string()).ok()?;
            let mut child = sleeper();
            if child.id() as i32 == wanted {
                return Some(child);
            }
            stage_kit::child::kill_group(&mut child);
        }
        None
    }

    /// A recorded child that exited and was reaped: its pid, given to another process since,
    /// is not signalled (the record holds a pidfd, not a pid).
    #[test]
    fn a_reaped_child_s_reused_pid_is_not_signalled() {
        let running = ChildPid::default();
        running.starting();
        let mut first = Command::new("true").spawn().unwrap();
        running.record(&first);
        let pid = first.id() as i32;
        // Reaped while still recorded (what a stale record looks like).
        first.wait().unwrap();
        let Some(mut stranger) = sleeper_with_pid(pid) else {
            panic!("could not start a process with pid {pid} (ns_last_pid)");
        };
        running.signal(Signal::SIGKILL);
        running.signal_group(Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(100));
        let status = stranger.try_wait().unwrap();
        stage_kit::child::kill_group(&mut stranger);
        assert_eq!(status, None, "a process that reused the pid was signalled");
    }

    #[test]
    fn override_names() {
        assert_eq!(
            override_variable("pg-reconcile"),
            "COMPUTE_CTL_STAGE_PG_RECONCILE"
        );
        assert_eq!(
            override_variable("compute-spec"),
            "COMPUTE_CTL_STAGE_COMPUTE_SPEC"
        );
    }
}
