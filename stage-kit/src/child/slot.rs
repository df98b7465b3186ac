//! [`ChildPid`]: the child another thread may have to signal (compute-ctl's running stage or
//! pg-supervise, signalled by its signal thread), recorded by pidfd, with no window where a
//! signal is lost or reaches the wrong process.

use std::process::Child;
use std::sync::{Arc, Mutex};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::Pidfd;

/// The child running right now (for compute-ctl: a stage, or pg-supervise), so a signal from
/// another thread can reach it. The owner marks it [`starting`](ChildPid::starting) before the spawn, so a
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;
    use std::time::{Duration, Instant};

    fn sleeper() -> Child {
        let mut command = Command::new("sleep");
        command.arg("30");
        crate::child::spawn(&mut command, Signal::SIGKILL).unwrap()
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
            crate::child::kill_group(&mut child);
        }
        assert_eq!(
            status.and_then(|status| status.signal()),
            Some(Signal::SIGTERM as i32),
            "the signal sent while the child started was lost"
        );
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
        let Some(mut stranger) = pg_test_support::probe::sleeper_with_pid(pid) else {
            panic!("could not start a process with pid {pid} (ns_last_pid)");
        };
        running.signal(Signal::SIGKILL);
        running.signal_group(Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(100));
        let status = stranger.try_wait().unwrap();
        crate::child::kill_group(&mut stranger);
        assert_eq!(status, None, "a process that reused the pid was signalled");
    }
}
