//! The "none" source: a fresh cluster from `initdb`, bootstrapped with the admin user.
//!
//! Authentication is `trust` for local connections (`-A trust`): the tools reach the
//! instance only through its Unix socket directory, which is PGDATA itself or a `0700`
//! directory owned by the Postgres user, so only that user (and root) can connect there.
//! Remote clients go through the `pg_hba.conf` `md5` line added afterwards, as upstream.

use std::fs;
use std::path::Path;
use std::process::Command;

use stage_kit::runas::{apply_user, PostgresUser};

use crate::error::BasebackupError;

/// The arguments after `-D PGDATA -U ADMIN` (part of the template cache key).
pub const INITDB_ARGS: [&str; 6] = ["--no-sync", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"];

/// Runs `initdb` into the (empty, owned) `pgdata` as `user`, with `admin` as bootstrap
/// superuser.
pub fn run_initdb(
    initdb: &Path,
    pgdata: &Path,
    admin: &str,
    user: Option<&PostgresUser>,
) -> Result<(), BasebackupError> {
    let mut command = Command::new(initdb);
    command
        .arg("-D")
        .arg(pgdata)
        .args(["-U", admin])
        .args(INITDB_ARGS)
        .env("LC_ALL", "C.UTF-8")
        .current_dir("/");
    apply_user(&mut command, user);
    crate::child::run_checked(&mut command)
}

/// The subdirectory of PGDATA `initdb` runs in ([`initdb_in_place`]); a known entry for the
/// wipe, so a crash leaves nothing foreign.
pub const INITDB_SUBDIR: &str = "compute-tools.initdb";

/// Runs `initdb` into the private `pgdata`, which already holds our marker: `initdb`
/// refuses a non-empty directory, so it runs in [`INITDB_SUBDIR`], whose entries are then
/// renamed up into `pgdata` (the marked directory never holds anything unrecognisable, and
/// `pgdata` may be a mount point, which cannot be renamed into place).
pub fn initdb_in_place(
    initdb: &Path,
    pgdata: &Path,
    admin: &str,
    user: Option<&PostgresUser>,
) -> Result<(), BasebackupError> {
    let built = pgdata.join(INITDB_SUBDIR);
    run_initdb(initdb, &built, admin, user)?;
    let listing = fs::read_dir(&built).map_err(|e| BasebackupError::io("listing", &built, e))?;
    for entry in listing {
        let entry = entry.map_err(|e| BasebackupError::io("listing", &built, e))?;
        let target = pgdata.join(entry.file_name());
        fs::rename(entry.path(), &target)
            .map_err(|e| BasebackupError::io("moving into place", &target, e))?;
    }
    fs::remove_dir(&built).map_err(|e| BasebackupError::io("removing", &built, e))
}
