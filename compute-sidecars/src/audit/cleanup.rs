//! The audit log directory's upkeep (upstream's §11.2): every `--audit-log-cleanup-interval`
//! (60 s), the `audit*.log` files in `<PGDATA>/log` older than 15 minutes are deleted (rsyslog
//! has forwarded them by then; pgauditlogtofile rotates every 5 minutes), and
//! `compute_audit_log_dir_size` is set to the bytes of the regular files there whose names
//! end in `log`. The thread ends when the compute terminates.
//!
//! The compute's state is its caller's: the thread reports the size and asks whether to stop
//! through [`UpkeepHost`], which compute-ctl implements on its shared state.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// What the upkeep thread needs from the compute it runs for.
pub trait UpkeepHost: Send + Sync + 'static {
    /// Records the bytes of the directory's `*log` files (`compute_audit_log_dir_size`).
    fn record_size(&self, bytes: u64);
    /// Waits until the compute is terminating or terminated, at most `interval`; true when
    /// it is (the thread ends).
    fn wait_stopped(&self, interval: Duration) -> bool;
}

/// Audit files older than this are deleted.
pub const MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// What one pass found and did.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Pass {
    /// Files deleted.
    pub deleted: Vec<PathBuf>,
    /// Bytes of the regular `*log` files left.
    pub size: u64,
}

/// One pass over `dir` at `now`: deletes the old `audit*.log` files, then measures. A missing
/// directory is an empty one.
pub fn pass(dir: &Path, now: SystemTime) -> std::io::Result<Pass> {
    let mut result = Pass::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(result),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        // symlink_metadata: a link is not a regular file, and is neither followed nor counted.
        let Ok(metadata) = entry.path().symlink_metadata() else {
            continue;
        };
        if !metadata.is_file() {
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let old = metadata
            .modified()
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .is_some_and(|age| age > MAX_AGE);
        if name.starts_with("audit") && name.ends_with(".log") && old {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    result.deleted.push(entry.path());
                    continue;
                }
                Err(error) => {
                    tracing::warn!(file = %entry.path().display(), %error, "cannot delete an old audit log file");
                }
            }
        }
        if name.ends_with("log") {
            result.size += metadata.len();
        }
    }
    Ok(result)
}

/// Starts the upkeep thread for `<pgdata>/log`, a pass at once and then every `interval`,
/// until `host` says the compute stopped.
pub fn spawn<H: UpkeepHost>(host: &Arc<H>, pgdata: &Path, interval: Duration) {
    let host = host.clone();
    let dir = pgdata.join("log");
    let started = std::thread::Builder::new()
        .name("audit-log-upkeep".into())
        .spawn(move || loop {
            match pass(&dir, SystemTime::now()) {
                Ok(done) => {
                    if !done.deleted.is_empty() {
                        tracing::info!(files = done.deleted.len(), dir = %dir.display(), "deleted old audit log files");
                    }
                    host.record_size(done.size);
                }
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "cannot read the audit log directory");
                }
            }
            if host.wait_stopped(interval) {
                return;
            }
        });
    if let Err(error) = started {
        tracing::error!(%error, "cannot start the audit log upkeep");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_audit_files_go_and_the_rest_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: usize| {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![b'x'; bytes]).unwrap();
            path
        };
        let old_audit = write("audit-20260101_0000.log", 100);
        write("audit-20260101_0005.log", 10);
        let old_server = write("postgresql-old.log", 20);
        write("notes.txt", 1000);
        write("catalog", 1000);
        write("weird.xlog", 3);
        std::fs::create_dir(dir.path().join("dir.log")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link.log")).unwrap();
        let now = SystemTime::now() + MAX_AGE + Duration::from_secs(60);
        // Only the first and third are old.
        let fresh = SystemTime::now() + Duration::from_secs(120);
        for name in ["audit-20260101_0005.log", "weird.xlog"] {
            std::fs::File::options()
                .write(true)
                .open(dir.path().join(name))
                .unwrap()
                .set_modified(fresh)
                .unwrap();
        }
        let done = pass(dir.path(), now).unwrap();
        assert_eq!(done.deleted, std::slice::from_ref(&old_audit));
        assert!(!old_audit.exists());
        assert!(old_server.exists(), "only audit*.log files are deleted");
        // Upstream's rule: names ending in `log`, so `catalog` counts and `notes.txt`, the
        // directory and the link do not.
        assert_eq!(done.size, 10 + 20 + 1000 + 3);
        let missing = pass(&dir.path().join("missing"), now).unwrap();
        assert_eq!(missing, Pass::default());
    }

    /// Records the sizes it is given; says "stopped" at its second wait.
    #[derive(Default)]
    struct Host {
        sizes: std::sync::Mutex<Vec<u64>>,
        waits: std::sync::atomic::AtomicUsize,
    }

    impl UpkeepHost for Host {
        fn record_size(&self, bytes: u64) {
            self.sizes.lock().unwrap().push(bytes);
        }

        fn wait_stopped(&self, interval: Duration) -> bool {
            assert_eq!(interval, Duration::from_millis(5));
            let seen = self.waits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            seen >= 1
        }
    }

    /// The thread reports each pass's size to its host and ends once the host says the
    /// compute stopped (it drops its handle on the host).
    #[test]
    fn the_thread_reports_to_its_host_until_it_stops() {
        let pgdata = tempfile::tempdir().unwrap();
        std::fs::create_dir(pgdata.path().join("log")).unwrap();
        std::fs::write(pgdata.path().join("log/postgresql.log"), [b'x'; 42]).unwrap();
        let host = Arc::new(Host::default());
        spawn(&host, pgdata.path(), Duration::from_millis(5));
        let ended = pg_test_support::probe::wait_until(Duration::from_secs(10), || {
            Arc::strong_count(&host) == 1
        });
        assert!(
            ended,
            "the upkeep thread still runs after its host said stop"
        );
        assert_eq!(*host.sizes.lock().unwrap(), [42, 42]);
    }
}
