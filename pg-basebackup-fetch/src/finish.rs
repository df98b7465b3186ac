//! After the data is in place: `postgresql.conf`, the `pg_hba.conf` line, the socket
//! directory, and the marker that lets a later start wipe this PGDATA.

use std::fs;
use std::path::Path;

use compute_spec::document::{ComputeDocument, PGDATA_MARKER};
use compute_spec::pgconf::{self, ConfParams};
use compute_spec::spec::ComputeSpec;
use stage_kit::runas::PostgresUser;

use crate::error::BasebackupError;
use crate::wipe::create_private_dir;

/// Upstream's `pg_hba.conf` line for remote clients.
pub const HBA_LINE: &str = "host\tall\t\tall\t\tall\t\tmd5";

/// Writes the configuration files and the marker into `document.pgdata`.
pub fn finish_pgdata(
    document: &ComputeDocument,
    spec: &ComputeSpec,
    params: &ConfParams,
    user: Option<&PostgresUser>,
) -> Result<(), BasebackupError> {
    let pgdata = &document.pgdata;
    write_file(
        &pgdata.join("postgresql.conf"),
        &pgconf::render(spec, params)
            .map_err(|error| BasebackupError::Document(error.to_string()))?,
        user,
    )?;
    append_hba_line(&pgdata.join("pg_hba.conf"), user)?;
    let socket_dir = &document.instance.socket_dir;
    if socket_dir != pgdata {
        create_private_dir(socket_dir, user)?;
    }
    write_file(
        &pgdata.join(PGDATA_MARKER),
        "This data directory was built by compute-tools and is rebuilt on every start.\n",
        user,
    )
}

fn append_hba_line(path: &Path, user: Option<&PostgresUser>) -> Result<(), BasebackupError> {
    let mut text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(BasebackupError::io("reading", path, error)),
    };
    if text.lines().any(|line| line.trim() == HBA_LINE) {
        return Ok(());
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(HBA_LINE);
    text.push('\n');
    write_file(path, &text, user)
}

/// Writes `text` to `path` (mode 0600) and gives it to `user`.
pub fn write_file(
    path: &Path,
    text: &str,
    user: Option<&PostgresUser>,
) -> Result<(), BasebackupError> {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, text).map_err(|e| BasebackupError::io("writing", path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| BasebackupError::io("setting mode 0600 on", path, e))?;
    if let Some(user) = user {
        user.chown_recursive(path)
            .map_err(|e| BasebackupError::io("changing the owner of", path, e))?;
    }
    Ok(())
}

/// Upstream's file fixups after the data arrived: `zenith.signal` → `neon.signal` for old
/// pageservers, `pg_dynshmem` → a symlink to `/dev/shm/`.
pub fn fixups(pgdata: &Path, user: Option<&PostgresUser>) -> Result<(), BasebackupError> {
    let zenith = pgdata.join("zenith.signal");
    let neon = pgdata.join("neon.signal");
    if zenith.exists() && !neon.exists() {
        fs::copy(&zenith, &neon).map_err(|e| BasebackupError::io("copying to", &neon, e))?;
        if let Some(user) = user {
            user.chown_recursive(&neon)
                .map_err(|e| BasebackupError::io("changing the owner of", &neon, e))?;
        }
    }
    let dynshmem = pgdata.join("pg_dynshmem");
    match fs::symlink_metadata(&dynshmem) {
        Ok(metadata) if metadata.is_dir() => fs::remove_dir_all(&dynshmem)
            .map_err(|e| BasebackupError::io("removing", &dynshmem, e))?,
        Ok(_) => {
            fs::remove_file(&dynshmem).map_err(|e| BasebackupError::io("removing", &dynshmem, e))?
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink("/dev/shm/", &dynshmem)
        .map_err(|e| BasebackupError::io("linking /dev/shm/ as", &dynshmem, e))
}

/// Creates an empty `standby.signal` (kept when present).
pub fn standby_signal(pgdata: &Path, user: Option<&PostgresUser>) -> Result<(), BasebackupError> {
    let path = pgdata.join("standby.signal");
    if path.exists() {
        return Ok(());
    }
    write_file(&path, "", user)
}
