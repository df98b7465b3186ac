//! After the data is in place: `postgresql.conf`, the `pg_hba.conf` line, the socket
//! directory, and the marker that lets a later start wipe this PGDATA.

use std::fs;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use compute_spec::document::{ComputeDocument, PGDATA_MARKER};
use compute_spec::pgconf::{self, ConfParams};
use compute_spec::spec::ComputeSpec;
use stage_kit::fsutil::{replace_file, FileOptions};
use stage_kit::runas::PostgresUser;

use crate::error::BasebackupError;

/// What a socket directory that cannot be made private is reported as.
const SOCKET_DIR: &str = "preparing the socket directory (compute-spec --socket-dir)";

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
        // Often `/tmp/compute-tools-<hash>`: a name anyone could have created first.
        stage_kit::fsutil::private_dir(socket_dir, user.map(PostgresUser::owner))
            .map_err(|e| BasebackupError::io(SOCKET_DIR, socket_dir, e))?;
    }
    write_file(
        &pgdata.join(PGDATA_MARKER),
        "This data directory was built by compute-tools and is rebuilt on every start.\n",
        user,
    )
}

fn append_hba_line(path: &Path, user: Option<&PostgresUser>) -> Result<(), BasebackupError> {
    // Never read through a link (its target would be copied into PGDATA).
    let read = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .and_then(|mut file| {
            let mut text = String::new();
            file.read_to_string(&mut text).map(|_| text)
        });
    let mut text = match read {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) if error.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(BasebackupError::io(
                "refusing to read through the symbolic link",
                path,
                error,
            ))
        }
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

/// Writes `text` as the whole of `path` (mode 0600, `user`'s from the start), through a new
/// temporary file renamed over it: a link planted at `path` is replaced, never written
/// through ([`stage_kit::fsutil::replace_file`]).
pub fn write_file(
    path: &Path,
    text: &str,
    user: Option<&PostgresUser>,
) -> Result<(), BasebackupError> {
    let options = FileOptions::mode(0o600).owned_by(user.map(PostgresUser::owner));
    replace_file(path, text.as_bytes(), options)
        .map_err(|e| BasebackupError::io("writing", path, e))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A link planted at a configuration file: replaced by a 0600 file, its target (outside
    /// PGDATA) neither written nor read into PGDATA.
    #[test]
    fn a_link_planted_at_a_config_file_is_never_written_through_or_read() {
        let dir = pg_test_support::TestDir::new("bbf-finish-");
        let victim = dir.path().join("shadow");
        fs::write(&victim, "root:secret\n").unwrap();
        let pgdata = dir.path().join("pgdata");
        fs::create_dir(&pgdata).unwrap();
        let conf = pgdata.join("postgresql.conf");
        std::os::unix::fs::symlink(&victim, &conf).unwrap();
        write_file(&conf, "port = 5432\n", None).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "root:secret\n");
        let metadata = fs::symlink_metadata(&conf).unwrap();
        assert!(metadata.is_file());
        assert_eq!(metadata.mode() & 0o7777, 0o600);

        let hba = pgdata.join("pg_hba.conf");
        std::os::unix::fs::symlink(&victim, &hba).unwrap();
        let error = append_hba_line(&hba, None).unwrap_err().to_string();
        assert!(error.contains("symbolic link"), "{error}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "root:secret\n");
        assert!(fs::symlink_metadata(&hba).unwrap().file_type().is_symlink());
    }
}
