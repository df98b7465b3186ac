//! Safe wipe: PGDATA is removed only when it is empty, a PostgreSQL data directory
//! (`PG_VERSION`), or carries the marker this tool leaves; then it is created `0700` and
//! given to the user Postgres runs as.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use compute_spec::document::PGDATA_MARKER;
use compute_spec::runas::PostgresUser;

use crate::error::BasebackupError;

/// Removes `pgdata` when it is safe to, and creates it empty, `0700`, owned by `user`.
pub fn wipe_and_create(pgdata: &Path, user: Option<&PostgresUser>) -> Result<(), BasebackupError> {
    wipe(pgdata)?;
    create_private_dir(pgdata, user)
}

/// Removes `pgdata` if it may be removed; refuses a foreign non-empty directory.
pub fn wipe(pgdata: &Path) -> Result<(), BasebackupError> {
    let metadata = match fs::symlink_metadata(pgdata) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(BasebackupError::io("inspecting", pgdata, error)),
    };
    if !metadata.is_dir() {
        return Err(BasebackupError::Foreign {
            path: pgdata.to_path_buf(),
            marker: PGDATA_MARKER,
        });
    }
    let mut entries =
        fs::read_dir(pgdata).map_err(|e| BasebackupError::io("reading", pgdata, e))?;
    let empty = entries.next().is_none();
    let ours = pgdata.join("PG_VERSION").exists() || pgdata.join(PGDATA_MARKER).exists();
    if !empty && !ours {
        return Err(BasebackupError::Foreign {
            path: pgdata.to_path_buf(),
            marker: PGDATA_MARKER,
        });
    }
    fs::remove_dir_all(pgdata).map_err(|e| BasebackupError::io("removing", pgdata, e))
}

/// Creates `dir` (and missing parents), sets mode `0700`, and chowns it to `user`.
pub fn create_private_dir(dir: &Path, user: Option<&PostgresUser>) -> Result<(), BasebackupError> {
    fs::create_dir_all(dir).map_err(|e| BasebackupError::io("creating", dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| BasebackupError::io("setting mode 0700 on", dir, e))?;
    if let Some(user) = user {
        user.chown_recursive(dir)
            .map_err(|e| BasebackupError::io("changing the owner of", dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_directories_are_refused_and_kept() {
        let dir = std::env::temp_dir().join(format!("bbf-wipe-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("precious.txt"), "x").unwrap();
        let error = wipe(&dir).unwrap_err();
        assert!(matches!(error, BasebackupError::Foreign { .. }), "{error}");
        assert!(error.to_string().contains(&dir.display().to_string()));
        assert!(dir.join("precious.txt").exists());
        fs::write(dir.join(PGDATA_MARKER), "").unwrap();
        wipe(&dir).unwrap();
        assert!(!dir.exists());
        // Missing and empty directories are fine.
        wipe(&dir).unwrap();
        fs::create_dir(&dir).unwrap();
        wipe(&dir).unwrap();
        assert!(!dir.exists());
    }
}
