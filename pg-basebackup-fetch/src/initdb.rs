//! The "none" source: a fresh cluster from `initdb`, bootstrapped with the admin user.
//!
//! Authentication is `trust` for local connections (`-A trust`): the tools reach the
//! instance only through its Unix socket directory, which is PGDATA itself or a `0700`
//! directory owned by the Postgres user, so only that user (and root) can connect there.
//! Remote clients go through the `pg_hba.conf` `md5` line added afterwards, as upstream.

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
