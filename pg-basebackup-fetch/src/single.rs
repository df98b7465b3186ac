//! Finishing a clone of a vanilla primary in single-user mode, before Postgres serves
//! clients: replay the backup's WAL with `fsync=off` (see README: durability) and create the
//! compute's admin role when the primary has none by that name.

use std::path::Path;
use std::process::Command;

use compute_spec::quote::{do_block_tag, quote_ident, quote_literal};
use stage_kit::runas::{apply_user, PostgresUser};

use crate::child::command_line;
use crate::error::BasebackupError;

/// Runs `postgres --single` on `pgdata` (as `user`): recovery ends, the admin role exists
/// (as a superuser that can log in), and the cluster is shut down cleanly.
pub fn finish_clone(
    postgres: &Path,
    pgdata: &Path,
    admin: &str,
    user: Option<&PostgresUser>,
) -> Result<(), BasebackupError> {
    let create = format!(
        "IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {}) THEN \
         CREATE ROLE {} WITH SUPERUSER LOGIN; END IF;",
        quote_literal(admin),
        quote_ident(admin)
    );
    let tag = format!("${}$", do_block_tag([create.as_str()]));
    let script = format!(
        "DO {tag} BEGIN {create} END {tag}\n\
         SELECT rolname AS compute_admin FROM pg_catalog.pg_roles WHERE rolname = {}\n",
        quote_literal(admin)
    );
    let mut command = Command::new(postgres);
    command
        .arg("--single")
        .arg("-D")
        .arg(pgdata)
        .args(["-c", "fsync=off", "-c", "exit_on_error=on", "template1"])
        .current_dir("/");
    apply_user(&mut command, user);
    let line = command_line(&command);
    let failed = |detail: String| BasebackupError::Child {
        command: line.clone(),
        detail,
    };
    let output = crate::child::run_with_input(&mut command, script.as_bytes())?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = format!("compute_admin = \"{admin}\"");
    if output.status.success() && stdout.contains(&expected) {
        return Ok(());
    }
    Err(failed(format!(
        "{}; could not make sure the admin role {admin:?} exists in the cloned cluster: create \
         it on the primary or pass -C with an existing superuser; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}
