//! The managed block of `$PGDATA/postgresql.conf`: the spec's settings, between
//! `compute_spec::pgconf::MANAGED_BEGIN` and `MANAGED_END`, rewritten when they changed.

use std::path::Path;

use compute_spec::pgconf::{managed_block, ConfError, MANAGED_BEGIN, MANAGED_END};
use compute_spec::spec::GenericOption;

/// Why the managed block could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The begin marker has no end marker after it.
    #[error("{file}: the line {MANAGED_BEGIN:?} has no {MANAGED_END:?} after it; fix or remove the block")]
    Unterminated {
        /// The file.
        file: String,
    },
    /// A setting cannot be written (a bad name or value): nothing is written.
    #[error("{0}; fix the spec")]
    Refused(ConfError),
    /// Reading or writing the file failed.
    #[error("{file}: {source}; check that PGDATA is the instance's data directory")]
    Io {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The file text with its managed block replaced by `settings` (appended when the file has
/// none and there are settings), or `None` when nothing changes.
pub fn rewrite(
    text: &str,
    settings: &[GenericOption],
    file: &str,
) -> Result<Option<String>, SettingsError> {
    let block = managed_block(settings).map_err(SettingsError::Refused)?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let begin = lines
        .iter()
        .position(|line| line.trim_end() == MANAGED_BEGIN);
    let new_text = match begin {
        Some(begin) => {
            let end = lines[begin..]
                .iter()
                .position(|line| line.trim_end() == MANAGED_END)
                .map(|offset| begin + offset)
                .ok_or_else(|| SettingsError::Unterminated {
                    file: file.to_string(),
                })?;
            let mut new_text: String = lines[..begin].concat();
            new_text.push_str(&block);
            new_text.push_str(&lines[end + 1..].concat());
            new_text
        }
        None if settings.is_empty() => return Ok(None),
        None => {
            let mut new_text = text.to_string();
            if !new_text.is_empty() && !new_text.ends_with('\n') {
                new_text.push('\n');
            }
            new_text.push_str(&block);
            new_text
        }
    };
    Ok((new_text != text).then_some(new_text))
}

/// Whether the file was modified after `loaded_at` (seconds since the epoch; the server's
/// `pg_conf_load_time()`): then the server has not seen it yet. Unknown times count as
/// modified, so a reload is never missed (say, after a run that died between writing the
/// file and reloading).
pub fn modified_after(path: &Path, loaded_at: Option<f64>) -> bool {
    let modified = std::fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok());
    match (modified, loaded_at) {
        (Some(modified), Some(loaded_at)) => modified.as_secs_f64() > loaded_at,
        _ => true,
    }
}

/// Reads the configuration file.
pub fn read(path: &Path) -> Result<String, SettingsError> {
    std::fs::read_to_string(path).map_err(|source| SettingsError::Io {
        file: path.display().to_string(),
        source,
    })
}

/// Replaces the file atomically, keeping its owner and mode (Postgres must still read it
/// when this runs as root): a new temporary file beside it (`O_EXCL|O_NOFOLLOW`, 0600 until
/// its final mode), written and fsynced, renamed over it, then the directory fsynced —
/// Postgres never reads a half-written file, and nothing is written through a link planted
/// in PGDATA ([`stage_kit::fsutil::replace_file`]).
pub fn write(path: &Path, text: &str) -> Result<(), SettingsError> {
    let metadata = std::fs::metadata(path).map_err(|source| SettingsError::Io {
        file: path.display().to_string(),
        source,
    })?;
    write_new(path, text, &metadata)
}

/// Writes `text` as the whole of `path` (replaced as in [`write`]), with the owner and mode
/// of `like`.
pub fn write_new(path: &Path, text: &str, like: &std::fs::Metadata) -> Result<(), SettingsError> {
    let options = stage_kit::fsutil::FileOptions::like(like).synced();
    stage_kit::fsutil::replace_file(path, text.as_bytes(), options).map_err(|source| {
        SettingsError::Io {
            file: path.display().to_string(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(name: &str, value: &str, vartype: &str) -> GenericOption {
        GenericOption {
            name: name.into(),
            value: Some(value.into()),
            vartype: vartype.into(),
        }
    }

    /// Links planted in PGDATA at the temporary name the old code used and at the override
    /// file's path: their target is neither truncated nor written.
    #[test]
    fn a_link_planted_in_pgdata_is_never_written_through() {
        let dir = pg_test_support::TestDir::new("reconcile-link-");
        let victim = dir.path().join("shadow");
        std::fs::write(&victim, "root:secret\n").unwrap();
        let conf = dir.path().join("postgresql.conf");
        std::fs::write(&conf, "port = 5432\n").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("postgresql.conf.pg-reconcile"))
            .unwrap();
        write(&conf, "port = 5433\n").unwrap();
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "port = 5433\n");
        let override_file = dir.path().join("compute_ctl_temp_override.conf");
        std::os::unix::fs::symlink(&victim, &override_file).unwrap();
        let like = std::fs::metadata(&conf).unwrap();
        write_new(&override_file, "neon.max_cluster_size=-1", &like).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:secret\n");
        assert!(std::fs::symlink_metadata(&override_file).unwrap().is_file());
    }

    #[test]
    fn replaces_only_the_block() {
        let text = format!("a = 1\n{MANAGED_BEGIN}\nold = 1\n{MANAGED_END}\nport = 5\n");
        let settings = [setting("work_mem", "4MB", "string")];
        let new = rewrite(&text, &settings, "f").unwrap().unwrap();
        assert_eq!(
            new,
            format!("a = 1\n{MANAGED_BEGIN}\nwork_mem = '4MB'\n{MANAGED_END}\nport = 5\n")
        );
        assert_eq!(
            rewrite(&new, &settings, "f").unwrap(),
            None,
            "unchanged → None"
        );
    }

    #[test]
    fn appends_when_missing_and_needed() {
        assert_eq!(rewrite("a = 1", &[], "f").unwrap(), None);
        let new = rewrite("a = 1", &[setting("fsync", "off", "bool")], "f")
            .unwrap()
            .unwrap();
        assert_eq!(
            new,
            format!("a = 1\n{MANAGED_BEGIN}\nfsync = off\n{MANAGED_END}\n")
        );
    }

    #[test]
    fn unterminated_block_is_an_error() {
        let error = rewrite(&format!("{MANAGED_BEGIN}\nx = 1\n"), &[], "pg.conf").unwrap_err();
        assert!(
            error.to_string().starts_with("pg.conf: the line"),
            "{error}"
        );
    }
}
