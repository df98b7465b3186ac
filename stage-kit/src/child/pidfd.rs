//! A process handle that cannot reach a process that reused its pid (`pidfd_open(2)`,
//! `pidfd_send_signal(2)`, Linux 5.3+).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Child;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// One process, by pidfd. Opened while the child is not reaped, it refers to that process
/// for good: once the process is reaped, signals fail with `ESRCH`, even after the kernel
/// gave its pid to another process.
#[derive(Debug)]
pub struct Pidfd {
    fd: OwnedFd,
    pid: Pid,
}

impl Pidfd {
    /// A handle on `child`. Call it before `child` is reaped (before `wait` or a
    /// `try_wait` that saw it exit).
    pub fn open(child: &Child) -> io::Result<Pidfd> {
        let raw = i32::try_from(child.id()).map_err(io::Error::other)?;
        // SAFETY: pidfd_open takes a pid and a flags word and returns a new descriptor or
        // -1; no memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = i32::try_from(fd).map_err(io::Error::other)?;
        // SAFETY: `fd` is a descriptor the kernel just returned to us and nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Pidfd {
            fd,
            pid: Pid::from_raw(raw),
        })
    }

    /// The process id it was opened for.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Sends `signal` (`None`: only checks that the process is not reaped yet) to the
    /// process; `ESRCH` once it has been reaped.
    pub fn signal(&self, signal: Option<Signal>) -> io::Result<()> {
        let number = signal.map_or(0, |signal| signal as i32);
        // SAFETY: pidfd_send_signal takes our open descriptor, a signal number, a null
        // siginfo pointer (the kernel fills in the default one) and a zero flags word.
        let result = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                number,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends `signal` to the process group the process leads, only while the process is not
    /// reaped (its pid, and so the group id, cannot be another's then). The caller must keep
    /// the process from being reaped between the check and the signal (reap only after
    /// dropping the handle, under the same lock).
    pub fn signal_group(&self, signal: Signal) -> io::Result<()> {
        self.signal(None)?;
        killpg(self.pid, signal).map_err(io::Error::from)
    }
}
