//! Is a Postgres running on this data directory? Checked before any wipe, whatever vouches
//! for the tree: a live cluster is never deleted, lock or no lock (a postmaster started by
//! hand, or by a tool that knows nothing of compute-tools' lock).
//!
//! `postmaster.pid` names the postmaster (line 1), its port (line 4) and socket directory
//! (line 5). The directory is live when that pid runs a `postgres` executable whose working
//! directory is this one (a postmaster `chdir`s to its data directory; another cluster's
//! postgres that reused the pid does not match), or when the named Unix socket accepts a
//! connection (a postmaster in another pid namespace sharing the volume).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::error::BasebackupError;

/// An error when a Postgres runs on `pgdata`; Ok when none does (or there is no
/// `postmaster.pid`).
pub fn refuse_if_live(pgdata: &Path) -> Result<(), BasebackupError> {
    match live_postmaster(pgdata) {
        None => Ok(()),
        Some(detail) => Err(BasebackupError::Live {
            path: pgdata.to_path_buf(),
            detail,
        }),
    }
}

/// What shows that a Postgres runs on `pgdata`, or None.
pub fn live_postmaster(pgdata: &Path) -> Option<String> {
    let text = fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let pid = lines.first().and_then(|pid| pid.parse::<i32>().ok());
    if let Some(pid) = pid.filter(|pid| *pid > 0) {
        if let Some(exe) = postgres_in(pid, pgdata) {
            return Some(format!(
                "postmaster.pid names pid {pid}, a running {} whose working directory is \
                 this data directory",
                exe.display()
            ));
        }
    }
    let port = lines.get(3).and_then(|port| port.parse::<u16>().ok())?;
    let socket_dir = lines.get(4).filter(|dir| dir.starts_with('/'))?;
    let socket = Path::new(socket_dir).join(format!(".s.PGSQL.{port}"));
    UnixStream::connect(&socket).ok().map(|_| {
        format!(
            "postmaster.pid names the socket {}, which accepts connections (pid {} is not \
             visible here)",
            socket.display(),
            pid.map_or_else(|| "unknown".to_string(), |pid| pid.to_string())
        )
    })
}

/// The executable of `pid` when it is a `postgres` (or `postmaster`) working in `pgdata`.
fn postgres_in(pid: i32, pgdata: &Path) -> Option<PathBuf> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let exe = fs::read_link(proc_dir.join("exe")).ok()?;
    let name = exe.file_name()?.to_string_lossy().into_owned();
    let name = name.strip_suffix(" (deleted)").unwrap_or(&name);
    if name != "postgres" && name != "postmaster" {
        return None;
    }
    let cwd = fs::metadata(proc_dir.join("cwd")).ok()?;
    let dir = fs::metadata(pgdata).ok()?;
    (cwd.dev() == dir.dev() && cwd.ino() == dir.ino()).then_some(exe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pg_test_support::TestDir;

    #[test]
    fn a_stale_or_foreign_pid_is_not_live() {
        let root = TestDir::new("bbf-live-");
        let dir = root.path().join("pgdata");
        fs::create_dir(&dir).unwrap();
        assert!(live_postmaster(&dir).is_none());
        // This test process: alive, but not a postgres.
        let me = std::process::id();
        fs::write(
            dir.join("postmaster.pid"),
            format!("{me}\n{}\n", dir.display()),
        )
        .unwrap();
        assert!(live_postmaster(&dir).is_none());
        // A socket nobody listens on.
        fs::write(
            dir.join("postmaster.pid"),
            format!("999999999\n{0}\n1\n5432\n{0}\n", dir.display()),
        )
        .unwrap();
        assert!(refuse_if_live(&dir).is_ok());
        // A socket that answers.
        let listener = std::os::unix::net::UnixListener::bind(dir.join(".s.PGSQL.5432")).unwrap();
        let message = refuse_if_live(&dir).unwrap_err().to_string();
        assert!(message.contains("accepts connections"), "{message}");
        drop(listener);
    }
}
