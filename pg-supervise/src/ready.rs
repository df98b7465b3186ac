//! Readiness: the last line of `PGDATA/postmaster.pid` reads `ready` (and its first line is our
//! postmaster's pid), as upstream. No SQL connection is used for readiness.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::unistd::Pid;

/// How often the pid file is read.
const POLL: Duration = Duration::from_millis(5);

/// Whether the pid file text says the postmaster `pid` is ready.
pub fn says_ready(text: &str, pid: Pid) -> bool {
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    let first = lines.next();
    let last = lines.next_back();
    first == Some(pid.as_raw().to_string().as_str()) && last == Some("ready")
}

/// Watches `pgdata/postmaster.pid` on a thread; calls `on_ready` once it says ready. Stops
/// quietly when `stop` is set.
pub fn watch(
    pgdata: &Path,
    pid: Pid,
    stop: Arc<AtomicBool>,
    on_ready: impl FnOnce() + Send + 'static,
) {
    let pid_file: PathBuf = pgdata.join("postmaster.pid");
    let spawned = std::thread::Builder::new()
        .name("ready".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(text) = std::fs::read_to_string(&pid_file) {
                    if says_ready(&text, pid) {
                        on_ready();
                        return;
                    }
                }
                std::thread::sleep(POLL);
            }
        });
    if let Err(error) = spawned {
        tracing::error!("cannot start the readiness thread: {error}");
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
        assert!(!says_ready(ready, Pid::from_raw(43)));
        assert!(!says_ready("", pid));
        assert!(!says_ready("42\n", pid));
    }
}
