//! Readiness: the last line of `PGDATA/postmaster.pid` reads `ready` (and its first line is our
//! postmaster's pid), as upstream. No SQL connection is used for readiness. Like `pg_ctl`,
//! `standby` (a standby that does not take connections, `hot_standby = off`) also counts as
//! started, since such a server never says `ready`.
//!
//! The watcher sleeps on inotify (a watch on the data directory reports the creation of
//! `postmaster.pid` and every write to it), so readiness is seen within a millisecond or so of
//! Postgres writing it. The file is also re-read every [`FALLBACK_POLL`] whatever inotify says,
//! which covers file systems without inotify and a failed inotify set-up.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::unistd::Pid;

/// How often the pid file is re-read without an inotify event (upstream: 100 ms).
pub const FALLBACK_POLL: Duration = Duration::from_millis(100);
/// The pid file's name in PGDATA.
pub const PID_FILE: &str = "postmaster.pid";

/// How readiness is detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detection {
    /// inotify events, and re-reading the file after this long without one.
    Inotify(Duration),
    /// Polling only, at this interval.
    Poll(Duration),
}

impl Detection {
    /// What the supervisor uses: inotify with the [`FALLBACK_POLL`] fallback.
    pub const DEFAULT: Detection = Detection::Inotify(FALLBACK_POLL);
}

/// Whether the pid file text says the postmaster `pid` is ready (or a standby without
/// connections).
pub fn says_ready(text: &str, pid: Pid) -> bool {
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    let first = lines.next();
    let last = lines.next_back();
    first == Some(pid.as_raw().to_string().as_str()) && matches!(last, Some("ready" | "standby"))
}

/// Watches `pgdata/postmaster.pid` on a thread; once it says ready, calls `on_ready` with the
/// moment it was seen (taken here, so a busy machine's delay in handing it on does not count).
/// Stops quietly when `stop` is set.
pub fn watch(
    pgdata: &Path,
    pid: Pid,
    stop: Arc<AtomicBool>,
    on_ready: impl FnOnce(Instant) + Send + 'static,
) {
    let pgdata = pgdata.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("ready".into())
        .spawn(move || {
            if wait_ready(&pgdata, pid, &stop, Detection::DEFAULT) {
                on_ready(Instant::now());
            }
        });
    if let Err(error) = spawned {
        tracing::error!("cannot start the readiness thread: {error}");
    }
}

/// Blocks until the pid file in `pgdata` says `pid` is ready (true) or `stop` is set (false).
pub fn wait_ready(pgdata: &Path, pid: Pid, stop: &AtomicBool, detection: Detection) -> bool {
    let pid_file: PathBuf = pgdata.join(PID_FILE);
    let (inotify, interval) = match detection {
        Detection::Inotify(interval) => (watch_directory(pgdata, interval), interval),
        Detection::Poll(interval) => (None, interval),
    };
    while !stop.load(Ordering::Relaxed) {
        if is_ready(&pid_file, pid) {
            return true;
        }
        match &inotify {
            Some(inotify) => wait_for_event(inotify, interval),
            None => std::thread::sleep(interval),
        }
    }
    false
}

fn is_ready(pid_file: &Path, pid: Pid) -> bool {
    std::fs::read_to_string(pid_file).is_ok_and(|text| says_ready(&text, pid))
}

/// An inotify instance watching `pgdata` for files created, moved in, or written; None (and a
/// warning) when inotify is not available.
fn watch_directory(pgdata: &Path, interval: Duration) -> Option<Inotify> {
    let flags = AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_CLOSE_WRITE;
    let watched =
        Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).and_then(|inotify| {
            inotify.add_watch(pgdata, flags)?;
            Ok(inotify)
        });
    match watched {
        Ok(inotify) => Some(inotify),
        Err(error) => {
            tracing::warn!(
                "cannot watch {} with inotify ({error}); polling {PID_FILE} every {} ms",
                pgdata.display(),
                interval.as_millis()
            );
            None
        }
    }
}

/// Sleeps until an event on the data directory arrives,
/// or `interval` passes.
fn wait_for_event(inotify: &Inotify, interval: Duration) {
    let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(interval).unwrap_or(PollTimeout::MAX);
    if poll(&mut fds, timeout).is_ok_and(|n| n > 0) {
        // Drain; the caller re-reads the file whatever the events were.
        while inotify.read_events().is_ok_and(|events| !events.is_empty()) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_ready_pid_file_counts() {
        let pid = Pid::from_raw(42);
        let ready = "42\n/d\n1\n5432\n/s\n\n  5432001  0\nready   \n";
        assert!(says_ready(ready, pid));
        assert!(!says_ready(&ready.replace("ready", "starting"), pid));
        assert!(!says_ready(&ready.replace("ready", "stopping"), pid));
        assert!(says_ready(&ready.replace("ready", "standby"), pid));
        assert!(!says_ready(ready, Pid::from_raw(43)));
        assert!(!says_ready("", pid));
        assert!(!says_ready("42\n", pid));
    }

    /// Writes `starting`, then `ready` 30 ms later, as Postgres would; returns how long after
    /// the `ready` write the watcher saw it.
    fn detection_delay(detection: Detection) -> Duration {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join(PID_FILE);
        let path = dir.path().to_path_buf();
        let watcher = std::thread::spawn(move || {
            let stop = AtomicBool::new(false);
            assert!(wait_ready(&path, Pid::from_raw(7), &stop, detection));
            Instant::now()
        });
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&pid_file, "7\n/data\nstarting\n").unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let written = Instant::now();
        std::fs::write(&pid_file, "7\n/data\nready   \n").unwrap();
        let seen = watcher.join().unwrap();
        seen.saturating_duration_since(written)
    }

    #[test]
    fn inotify_sees_ready_without_the_fallback() {
        // With a 10 s fallback only inotify can see it in time.
        let delay = detection_delay(Detection::Inotify(Duration::from_secs(10)));
        eprintln!("inotify saw ready {delay:?} after the write");
        assert!(delay < Duration::from_secs(3), "inotify took {delay:?}");
    }

    #[test]
    fn polling_sees_ready_within_its_interval() {
        let delay = detection_delay(Detection::Poll(FALLBACK_POLL));
        eprintln!("polling saw ready {delay:?} after the write");
        assert!(delay <= FALLBACK_POLL * 4, "polling took {delay:?}");
        // A long interval really is slow: the write lands while the watcher sleeps.
        let slow = detection_delay(Detection::Poll(Duration::from_millis(400)));
        assert!(
            slow >= Duration::from_millis(200),
            "400 ms polling took {slow:?}"
        );
    }

    #[test]
    fn the_watcher_stops_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(true);
        assert!(!wait_ready(
            dir.path(),
            Pid::from_raw(7),
            &stop,
            Detection::DEFAULT
        ));
    }
}
