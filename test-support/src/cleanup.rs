//! Killing postmasters left behind by test processes that were killed from outside.

use std::fs;
use std::path::Path;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::test_root;

/// Deepest level below the test root at which `postmaster.pid` files are searched.
const MAX_DEPTH: usize = 4;

/// Finds every `postmaster.pid` under the test root (normally
/// `/dev/shm/compute-tools-tests/`, at most 4 levels deep) and sends `SIGKILL` to each
/// process that is still alive and still looks like a postmaster. Returns the killed pids.
///
/// Meant for CI scripts after a test run (or a timed-out one); do not call it while tests
/// are running, it would kill their servers too. The `pg-test-cleanup` binary calls it.
pub fn kill_leftover_postmasters() -> Vec<i32> {
    let mut killed = Vec::new();
    scan(&test_root(), 1, &mut killed);
    killed
}

fn scan(dir: &Path, depth: usize, killed: &mut Vec<i32>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() && depth < MAX_DEPTH {
            scan(&entry.path(), depth + 1, killed);
        } else if kind.is_file() && entry.file_name() == "postmaster.pid" {
            if let Some(pid) = live_postmaster(&entry.path()) {
                if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                    killed.push(pid);
                }
            }
        }
    }
}

/// The pid in `pid_file` if that process is alive and (as far as `/proc` tells) is a
/// PostgreSQL server running on the data directory holding `pid_file`.
fn live_postmaster(pid_file: &Path) -> Option<i32> {
    let text = fs::read_to_string(pid_file).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    if pid <= 0 || kill(Pid::from_raw(pid), None).is_err() {
        return None;
    }
    // Guard against a recycled pid: the postmaster's command line names its data dir.
    if let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) {
        let cmdline = String::from_utf8_lossy(&cmdline);
        let data_dir = pid_file.parent()?.to_string_lossy();
        if !cmdline.contains("postgres") || !cmdline.contains(data_dir.as_ref()) {
            return None;
        }
    }
    Some(pid)
}
