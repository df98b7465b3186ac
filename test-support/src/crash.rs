//! Simulated crashes: a process and everything it started killed at one instant (as a
//! container or a machine dies), and a small tmpfs that can be filled and then grown.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The live descendants of `root` (children, their children...), from `/proc`.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        for (pid, ppid) in &parents {
            if *ppid == parent && !found.contains(pid) {
                found.push(*pid);
            }
        }
        index += 1;
    }
    found.remove(0);
    found
}

/// SIGKILLs `root` and all its descendants at once: each is stopped (SIGSTOP) until no new
/// process appears, then all get SIGKILL, so none of them runs a step after another died.
/// Returns how many processes were killed.
pub fn kill_tree(root: i32) -> usize {
    let mut stopped = vec![root];
    let _ = kill(Pid::from_raw(root), Signal::SIGSTOP);
    loop {
        let mut grew = false;
        for pid in descendants(root) {
            if !stopped.contains(&pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
                stopped.push(pid);
                grew = true;
            }
        }
        if !grew {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for pid in &stopped {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    stopped.len()
}

/// How many directories and files are below `dir` (0 when it is missing).
pub fn count_entries(dir: &Path) -> usize {
    let mut count = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            count += 1;
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                pending.push(entry.path());
            }
        }
    }
    count
}

/// A tmpfs mounted on a directory of the test's own, unmounted on drop (also when the test
/// panics).
pub struct SmallTmpfs {
    path: PathBuf,
}

impl SmallTmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"8m"`) on `path` (created). `None` when mounting is not
    /// permitted here (not root, no CAP_SYS_ADMIN): the caller skips, loudly, or fails under
    /// `CI`.
    pub fn mount(path: &Path, size: &str) -> Option<SmallTmpfs> {
        std::fs::create_dir_all(path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755"))
            .arg("tmpfs")
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
        if !output.status.success() {
            let why = String::from_utf8_lossy(&output.stderr);
            crate::skip_or_fail(
                &format!("the test on a small tmpfs at {}", path.display()),
                &format!(
                    "mounting it failed ({}): run as root with CAP_SYS_ADMIN",
                    why.trim()
                ),
            );
            return None;
        }
        Some(SmallTmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Grows (or shrinks) it to `size`, keeping its files.
    pub fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o"])
            .arg(format!("remount,size={size}"))
            .arg(&self.path)
            .status()
            .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
        assert!(
            status.success(),
            "remounting {} failed",
            self.path.display()
        );
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            // Busy (a process still has a file open there): detach it instead.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}
