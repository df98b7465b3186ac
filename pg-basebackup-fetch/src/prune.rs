//! Pruning the template cache: what a crashed start left behind, and templates nothing has
//! used for a long time (old Postgres binaries, other superusers), so the cache does not grow
//! without bound.
//!
//! **Invariants**
//! - Only names the cache itself makes are ever removed: `initdb-<16 hex digits>` templates
//!   and the `.build-initdb-…` / `.trash-initdb-…` siblings of one; anything else in the
//!   directory is someone else's and is left alone.
//! - A build in progress is never removed: a `.build-` directory goes only when it has not
//!   changed for [`STALE_BUILD`] (an `initdb` takes seconds).
//! - A template goes only when its last use (the `last-used` stamp every start refreshes, or
//!   its `complete` marker for a template that was never stamped) is older than
//!   [`UNUSED_TEMPLATE`], and never the one the running start uses. It is renamed aside
//!   first, so a start sees it whole or not at all; a start that was copying from it falls
//!   back to `initdb`, as for any cache failure.
//! - Pruning is best effort: a failure is logged, never the start's failure.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// A `.build-` or `.trash-` directory unchanged for this long is a crashed start's.
pub const STALE_BUILD: Duration = Duration::from_secs(60 * 60);
/// A template unused for this long is removed.
pub const UNUSED_TEMPLATE: Duration = Duration::from_secs(14 * 24 * 60 * 60);
/// The stamp a start refreshes in the template it uses.
pub const LAST_USED: &str = "last-used";

/// Records that `slot` was just used (best effort).
pub fn stamp(slot: &Path) {
    let path = slot.join(LAST_USED);
    let stamped = fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .and_then(|file| file.set_modified(SystemTime::now()));
    if let Err(error) = stamped {
        tracing::warn!(
            "cannot stamp the template's last use in {}: {error}",
            path.display()
        );
    }
}

/// Removes, from the cache directory `dir`, crashed builds and templates unused for
/// [`UNUSED_TEMPLATE`], keeping `current`; what was removed (for the log and the tests).
pub fn prune(dir: &Path, current: &Path, now: SystemTime) -> Vec<String> {
    let mut removed = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!("cannot list the template cache {}: {error}", dir.display());
            return removed;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == current {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let age = |path: &Path| {
            fs::symlink_metadata(path)
                .and_then(|metadata| metadata.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
        };
        // Only real directories: a symlink or file with our name is not ours.
        if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        let stale = if is_leftover(&name) {
            age(&path).is_some_and(|age| age > STALE_BUILD)
        } else if is_template(&name) {
            let stamp = path.join(LAST_USED);
            let used = if stamp.exists() {
                age(&stamp)
            } else {
                age(&path.join("complete"))
            };
            // A template with neither is a damaged one: the next start for its key
            // discards it; age alone does not say it is unused.
            used.is_some_and(|age| age > UNUSED_TEMPLATE)
        } else {
            false
        };
        if !stale {
            continue;
        }
        match remove(dir, &path, &name) {
            Ok(()) => removed.push(name),
            Err(error) => tracing::warn!(
                "cannot prune {} from the template cache: {error}",
                path.display()
            ),
        }
    }
    if !removed.is_empty() {
        tracing::info!(removed = %removed.join(", "), "template cache pruned");
    }
    removed
}

/// `initdb-` and 16 lower-case hex digits: a template slot.
fn is_template(name: &str) -> bool {
    name.strip_prefix("initdb-").is_some_and(|hash| {
        hash.len() == 16
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// `.build-initdb-…` or `.trash-initdb-…`: a build or a discarded template.
fn is_leftover(name: &str) -> bool {
    [".build-initdb-", ".trash-initdb-"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// Renames `path` aside (a template; a leftover is already aside), then removes it.
fn remove(dir: &Path, path: &Path, name: &str) -> std::io::Result<()> {
    if !is_template(name) {
        return fs::remove_dir_all(path);
    }
    let aside = dir.join(format!(".trash-{name}-{}-pruned", std::process::id()));
    fs::rename(path, &aside)?;
    fs::remove_dir_all(&aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_cache_makes_and_no_others() {
        assert!(is_template("initdb-0123456789abcdef"));
        assert!(!is_template("initdb-0123456789ABCDEF"));
        assert!(!is_template("initdb-0123"));
        assert!(!is_template("initdb-0123456789abcdef0"));
        assert!(!is_template("my-initdb-0123456789abcdef"));
        assert!(is_leftover(".build-initdb-0123456789abcdef-12-34"));
        assert!(is_leftover(".trash-initdb-0123456789abcdef-12-34"));
        assert!(!is_leftover(".build-other"));
        assert!(!is_leftover("build-initdb-x"));
    }
}
