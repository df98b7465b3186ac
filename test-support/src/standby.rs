//! A streaming replica's data directory: `pg_basebackup -R` of its primary.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::{as_postgres_user, chown_to_postgres};

/// `pg_basebackup` of the server at `primary` into `data_dir` (below `dir`), as the
/// `postgres` user, with the standby configuration (`-R`) and the WAL it needs.
pub(crate) fn base_backup(bin_dir: &Path, primary: &str, dir: &Path, data_dir: &Path) {
    chown_to_postgres(dir);
    let pg_basebackup = crate::majors::client_program(bin_dir, "pg_basebackup");
    let mut cmd = Command::new(&pg_basebackup);
    as_postgres_user(&mut cmd)
        .args([
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
            "-d",
            primary,
            "-D",
        ])
        .arg(data_dir)
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", pg_basebackup.display()));
    assert!(
        out.status.success(),
        "pg_basebackup of {primary} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
