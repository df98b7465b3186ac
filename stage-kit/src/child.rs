//! The one child runner of the workspace: every program a stage or compute-ctl starts goes
//! through here, so every child dies with its parent.
//!
//! * [`own`]: the child leads its own process group (a terminal's Ctrl-C reaches only the
//!   parent; [`kill_group`] reaches the child's helpers too) and gets `death_signal` when its
//!   parent dies, even by SIGKILL (`PR_SET_PDEATHSIG`, then a `getppid()` re-check against the
//!   parent captured before the fork: a parent that died before the `prctl` makes the child
//!   exit at once instead of running orphaned). Registered last, so it runs after a
//!   credential change ([`crate::runas::apply_user`]), which would clear the death signal.
//! * Which thread forks: `PR_SET_PDEATHSIG` fires when the *thread* that forked exits, not
//!   the process. A child that outlives the call that started it (a stage read by another
//!   thread, pg-supervise, vm-monitor) is forked by [`spawn_long_lived`] on a process-wide
//!   spawner thread that never exits. A child that the spawning thread itself waits for
//!   ([`run`], [`run_with_input`], [`spawn`] followed by a wait on the same thread) is forked
//!   locally: that thread outlives it by construction.
//! * [`run`]: a short-lived program with a deadline and capped output; at the deadline or
//!   past the cap the whole group is killed, and the child is always reaped.
//! * [`Pidfd`]: a handle that signals exactly the process it was opened for, never a process
//!   that reused its pid; [`ChildPid`]: the child another thread may signal, kept for it
//!   while it starts, never signalled once reaped.
//!
//! Tests: `stage-kit/tests/it/child.rs` (real processes).

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::Mutex;

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

mod pidfd;
mod run;
mod slot;

pub use pidfd::Pidfd;
pub use run::{join, read_capped, run, run_with_input, Output, RunError, STDERR_CAP};
pub use slot::ChildPid;

/// Makes `command`'s child lead its own process group and receive `death_signal` when this
/// process dies. Call it after any credential change registered on `command` (the spawn
/// functions of this module call it themselves, last).
pub fn own(command: &mut Command, death_signal: Signal) {
    command.process_group(0);
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child, where only async-signal-safe functions
    // may be called. It makes two system calls (prctl(PR_SET_PDEATHSIG), getppid) through
    // nix's thin wrappers and compares with `parent`, a pid copied before the fork. Its
    // errors carry only an errno (`from_raw_os_error` does not allocate). A parent that died
    // already (the child was re-parented before the prctl) fails the exec with ESRCH: std
    // then ends the child with `_exit`.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(death_signal)
                .map_err(|errno| io::Error::from_raw_os_error(errno as i32))?;
            if nix::unistd::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Forks `command` on the calling thread ([`own`]ed with `death_signal`). Only for a child
/// this thread waits for (or that must die with this thread): it gets `death_signal` when
/// this *thread* exits.
pub fn spawn(command: &mut Command, death_signal: Signal) -> io::Result<Child> {
    own(command, death_signal);
    command.spawn()
}

/// A fork request for the spawner thread.
struct Job {
    command: Command,
    death_signal: Signal,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// The spawner thread's queue, started on first use.
static SPAWNER: Mutex<Option<mpsc::Sender<Job>>> = Mutex::new(None);

/// Forks `command` ([`own`]ed with `death_signal`) on the process-wide spawner thread, which
/// never exits: the child gets `death_signal` only when this *process* dies, whichever thread
/// called this and whenever that thread ends. `command` is dropped on the spawner thread
/// before this returns (so descriptors it held for the child are closed in the parent).
pub fn spawn_long_lived(command: Command, death_signal: Signal) -> io::Result<Child> {
    let queue = spawner()?;
    let (reply, answer) = mpsc::channel();
    queue
        .send(Job {
            command,
            death_signal,
            reply,
        })
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the spawner thread dropped a request"))?
}

fn spawner() -> io::Result<mpsc::Sender<Job>> {
    let mut slot = SPAWNER
        .lock()
        .map_err(|_| io::Error::other("the spawner's lock is poisoned"))?;
    if let Some(queue) = slot.as_ref() {
        return Ok(queue.clone());
    }
    let (queue, jobs) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("child-spawner".into())
        .spawn(move || {
            // The queue's sender lives in SPAWNER for the life of the process: this loop
            // (and so this thread, the parent thread of every long-lived child) never ends.
            for job in jobs {
                let Job {
                    mut command,
                    death_signal,
                    reply,
                } = job;
                own(&mut command, death_signal);
                let spawned = command.spawn();
                drop(command);
                let _ = reply.send(spawned);
            }
        })?;
    *slot = Some(queue.clone());
    Ok(queue)
}

/// Kills `child`'s whole process group (it leads it) with SIGKILL and reaps the child. Call
/// it only while `child` is not reaped yet: its pid then still names its group.
pub fn kill_group(child: &mut Child) {
    kill_group_unreaped(child);
    let _ = child.wait();
}

/// Sends SIGKILL to `child`'s whole process group without reaping the child (the caller
/// reaps it). Call it only while `child` is not reaped yet.
pub fn kill_group_unreaped(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.kill();
}

/// Whether `child` has exited, without reaping it (`waitid` with `WNOWAIT`): while it is
/// unreaped its pid, and so its process group id, cannot name another process. `block`
/// waits for the exit.
pub fn exited_unreaped(child: &Child, block: bool) -> io::Result<bool> {
    let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
    let mut flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
    if !block {
        flags |= WaitPidFlag::WNOHANG;
    }
    loop {
        return match waitid(Id::Pid(Pid::from_raw(pid)), flags) {
            Ok(WaitStatus::StillAlive) => Ok(false),
            Ok(_) => Ok(true),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => Err(io::Error::from(errno)),
        };
    }
}
