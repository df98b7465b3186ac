//! Safe wipe: PGDATA is removed only when nothing in it is foreign.
//!
//! A directory may be removed when it is missing or empty, or when **every top-level entry
//! is one PostgreSQL or compute-tools puts there** ([`KNOWN_ENTRIES`], plus the server's
//! socket files `.s.PGSQL.<port>[.lock]` when the socket directory is PGDATA) **and** it is
//! vouched for: either by our marker [`PGDATA_MARKER`] (written before any data, so a
//! half-built tree from a failed attempt is recognised), or by being a real cluster
//! (`PG_VERSION` holds a major version and `global/pg_control` is a file). A name alone
//! proves nothing: a junk `PG_VERSION`, or a marker next to a user's files, is refused.
//! A refusal lists the foreign entries and deletes nothing. Then PGDATA is created `0700`
//! and given to the user Postgres runs as. At the start of the stage, [`retire`] moves a
//! previous PGDATA aside and removes it while the new one is fetched. A directory a live
//! Postgres runs on is never removed ([`crate::live`]). Removal itself is crash-safe
//! ([`remove_tree`]: marker first, marker last).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Instant;

use compute_spec::document::PGDATA_MARKER;
use compute_spec::pgconf::TEMP_OVERRIDE_FILE;
use stage_kit::runas::PostgresUser;

use crate::error::BasebackupError;

/// The top-level entries PostgreSQL 14–17 (`initdb`, a running server, a base backup,
/// recovery) and compute-tools (this stage, `pg-sync-safekeepers`, `pg-reconcile`, Neon's
/// pageserver basebackup) create in a data directory. Anything else is foreign.
pub const KNOWN_ENTRIES: &[&str] = &[
    // initdb
    "base",
    "global",
    "pg_commit_ts",
    "pg_dynshmem",
    "pg_logical",
    "pg_multixact",
    "pg_notify",
    "pg_replslot",
    "pg_serial",
    "pg_snapshots",
    "pg_stat",
    "pg_stat_tmp",
    "pg_subtrans",
    "pg_tblspc",
    "pg_twophase",
    "pg_wal",
    "pg_xact",
    "PG_VERSION",
    "postgresql.conf",
    "postgresql.auto.conf",
    "pg_hba.conf",
    "pg_ident.conf",
    // a running or stopped server
    "postmaster.opts",
    "postmaster.pid",
    "current_logfiles",
    "log",
    // recovery and base backups
    "standby.signal",
    "recovery.signal",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "tablespace_map.old",
    "backup_manifest",
    // Neon's pageserver basebackup
    "neon.signal",
    "zenith.signal",
    // compute-tools
    PGDATA_MARKER,
    crate::initdb::INITDB_SUBDIR,
    TEMP_OVERRIDE_FILE,
];

/// How many foreign entries a refusal names.
const LISTED: usize = 10;

/// Removes `pgdata` when it is safe to, and creates it empty, `0700`, owned by `user`.
pub fn wipe_and_create(pgdata: &Path, user: Option<&PostgresUser>) -> Result<(), BasebackupError> {
    wipe(pgdata)?;
    create_private_dir(pgdata, user)
}

/// [`wipe_and_create`], then our marker in the new directory at once: whatever a crash
/// leaves of the build from now on is recognisably ours, and wiped by the next start.
pub fn wipe_and_create_marked(
    pgdata: &Path,
    user: Option<&PostgresUser>,
) -> Result<(), BasebackupError> {
    wipe_and_create(pgdata, user)?;
    let marker = pgdata.join(PGDATA_MARKER);
    crate::finish::write_file(&marker, "compute-tools: partial\n", user)
}

/// Removes `pgdata` if it may be removed (see the module); otherwise refuses and deletes
/// nothing.
pub fn wipe(pgdata: &Path) -> Result<(), BasebackupError> {
    let metadata = match fs::symlink_metadata(pgdata) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(BasebackupError::io("inspecting", pgdata, error)),
    };
    if !metadata.is_dir() {
        return Err(foreign(
            pgdata,
            "it is not a directory (a file or a symbolic link)".to_string(),
        ));
    }
    let names = top_level_names(pgdata)?;
    if !names.is_empty() {
        vouch(pgdata, &names)?;
    }
    remove_tree(pgdata).map_err(|e| BasebackupError::io("removing", pgdata, e))
}

/// Removes the vouched-for tree `dir` so that a crash at any moment leaves one that is
/// still ours to remove: our marker is written first (when missing), every other entry is
/// removed, the marker last, then `dir` itself (left, empty, when it is a mount point).
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    let marker = dir.join(PGDATA_MARKER);
    let mut entries = fs::read_dir(dir)?.peekable();
    if entries.peek().is_some() && fs::symlink_metadata(&marker).is_err() {
        fs::write(&marker, "compute-tools: being removed\n")?;
    }
    for entry in entries {
        let entry = entry?;
        if entry.file_name() == PGDATA_MARKER {
            continue;
        }
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    match fs::remove_file(&marker) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    match fs::remove_dir(dir) {
        Err(error) if error.raw_os_error() == Some(nix::libc::EBUSY) => Ok(()),
        other => other,
    }
}

/// The suffix of the sibling a previous PGDATA is moved to by [`retire`].
pub const RETIRED_SUFFIX: &str = ".compute-tools-old";

/// A previous PGDATA moved aside to a sibling and being removed by a background thread.
/// Dropping it waits until the removal is done (a failure is logged; the next start tries
/// again).
pub struct Retiring {
    path: PathBuf,
    remover: Option<JoinHandle<io::Result<()>>>,
}

impl Retiring {
    /// Waits until the old tree is gone.
    pub fn finish(mut self) {
        self.wait();
    }

    fn wait(&mut self) {
        let Some(remover) = self.remover.take() else {
            return;
        };
        let started = Instant::now();
        match remover.join() {
            Ok(Ok(())) => tracing::info!(
                "removed the previous PGDATA {} (waited {} ms for it)",
                self.path.display(),
                started.elapsed().as_millis()
            ),
            Ok(Err(error)) => tracing::warn!(
                "could not remove the previous PGDATA {}: {error}; the next start tries again, \
                 or remove it yourself",
                self.path.display()
            ),
            Err(_) => tracing::warn!(
                "removing the previous PGDATA {} panicked; remove it yourself",
                self.path.display()
            ),
        }
    }
}

impl Drop for Retiring {
    fn drop(&mut self) {
        self.wait();
    }
}

/// Makes `pgdata` absent, like [`wipe`] and under the same rule, but without waiting for the
/// old tree to be deleted: a non-empty PGDATA is renamed to the sibling
/// `<pgdata>`[`RETIRED_SUFFIX`] and removed by a background thread while the new one is
/// fetched. Deleting a tree right before creating one is slow on ext4 without a journal (see
/// the README): the deletion itself (seconds for a few hundred MB with `discard`), and then
/// the inode allocator skips the inodes just freed. The background removal is used only when
/// the file system has room for a second tree as large as the old one beside it; otherwise,
/// or when the rename fails (a mount point), the old tree is removed first, as [`wipe`] does.
/// A left-over sibling from an earlier start is removed too, if our rule allows it.
pub fn retire(pgdata: &Path) -> Result<Option<Retiring>, BasebackupError> {
    let metadata = match fs::symlink_metadata(pgdata) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(BasebackupError::io("inspecting", pgdata, error)),
    };
    if !metadata.is_dir() {
        return wipe(pgdata).map(|()| None);
    }
    let names = top_level_names(pgdata)?;
    if names.is_empty() {
        return wipe(pgdata).map(|()| None);
    }
    vouch(pgdata, &names)?;
    let Some(aside) = retired_path(pgdata) else {
        return wipe(pgdata).map(|()| None);
    };
    if let Err(error) = wipe(&aside) {
        tracing::warn!("leaving {} alone: {error}", aside.display());
        return wipe(pgdata).map(|()| None);
    }
    if !room_for_another(pgdata) {
        return wipe(pgdata).map(|()| None);
    }
    if let Err(error) = fs::rename(pgdata, &aside) {
        tracing::info!(
            "cannot move {} aside ({error}); removing it first",
            pgdata.display()
        );
        return wipe(pgdata).map(|()| None);
    }
    let doomed = aside.clone();
    let remover = std::thread::Builder::new()
        .name("remove-old-pgdata".into())
        .spawn(move || remove_tree(&doomed));
    match remover {
        Ok(remover) => Ok(Some(Retiring {
            path: aside,
            remover: Some(remover),
        })),
        Err(error) => {
            tracing::warn!("cannot start a thread to remove the old PGDATA ({error})");
            remove_tree(&aside).map_err(|e| BasebackupError::io("removing", &aside, e))?;
            Ok(None)
        }
    }
}

/// `<parent>/<name>.compute-tools-old` (None for a path without a file name, like `/`).
fn retired_path(pgdata: &Path) -> Option<PathBuf> {
    let name = pgdata.file_name()?;
    let mut retired = name.to_os_string();
    retired.push(RETIRED_SUFFIX);
    Some(pgdata.with_file_name(retired))
}

/// Whether the file system of `pgdata` has at least as much free space as the tree takes.
fn room_for_another(pgdata: &Path) -> bool {
    let Ok(stats) = nix::sys::statvfs::statvfs(pgdata) else {
        return false;
    };
    let free = stats
        .blocks_available()
        .saturating_mul(stats.fragment_size());
    tree_bytes(pgdata, free).is_some_and(|used| used <= free)
}

/// The space the tree under `dir` takes, or None when it cannot be read; stops counting
/// (returning more than `limit`) once past `limit`.
fn tree_bytes(dir: &Path, limit: u64) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in fs::read_dir(&next).ok()? {
            let entry = entry.ok()?;
            let metadata = entry.metadata().ok()?;
            total = total.saturating_add(metadata.blocks().saturating_mul(512));
            if total > limit {
                return Some(total);
            }
            if metadata.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Some(total)
}

/// The names of the entries directly in `dir`, sorted.
fn top_level_names(dir: &Path) -> Result<Vec<String>, BasebackupError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| BasebackupError::io("reading", dir, e))? {
        let entry = entry.map_err(|e| BasebackupError::io("reading", dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Ok when the non-empty `pgdata` holding `names` is ours to remove.
fn vouch(pgdata: &Path, names: &[String]) -> Result<(), BasebackupError> {
    crate::live::refuse_if_live(pgdata)?;
    let strangers: Vec<&String> = names.iter().filter(|name| !is_known(name)).collect();
    if !strangers.is_empty() {
        let mut listed: Vec<String> = strangers
            .iter()
            .take(LISTED)
            .map(|name| format!("{name:?}"))
            .collect();
        if strangers.len() > LISTED {
            listed.push(format!("and {} more", strangers.len() - LISTED));
        }
        return Err(foreign(
            pgdata,
            format!(
                "it holds entries that neither PostgreSQL nor compute-tools creates: {}",
                listed.join(", ")
            ),
        ));
    }
    if names.iter().any(|name| name == PGDATA_MARKER) {
        return Ok(());
    }
    match cluster_problem(pgdata) {
        None => Ok(()),
        Some(problem) => Err(foreign(
            pgdata,
            format!("it has no {PGDATA_MARKER} marker and is not a PostgreSQL cluster: {problem}"),
        )),
    }
}

/// Whether `name` is something PostgreSQL or compute-tools creates in PGDATA.
pub fn is_known(name: &str) -> bool {
    KNOWN_ENTRIES.contains(&name)
        || is_socket_file(name)
        || stage_kit::core_dump::is_core_dump_name(name)
}

/// `.s.PGSQL.<port>` and `.s.PGSQL.<port>.lock`: the server's socket, when its socket
/// directory is PGDATA.
fn is_socket_file(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(".s.PGSQL.") else {
        return false;
    };
    let port = rest.strip_suffix(".lock").unwrap_or(rest);
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

/// Why `pgdata` is not a real cluster; None when it is (`PG_VERSION` holds a major version,
/// `global/pg_control` is a file).
fn cluster_problem(pgdata: &Path) -> Option<String> {
    let version_file = pgdata.join("PG_VERSION");
    match fs::symlink_metadata(&version_file) {
        Ok(metadata) if metadata.is_file() && metadata.len() <= 16 => {}
        Ok(_) => return Some("PG_VERSION is not a small regular file".to_string()),
        Err(error) => return Some(format!("PG_VERSION cannot be read ({error})")),
    }
    let text = match fs::read(&version_file) {
        Ok(bytes) => bytes,
        Err(error) => return Some(format!("PG_VERSION cannot be read ({error})")),
    };
    if !is_major_version(&text) {
        return Some(format!(
            "PG_VERSION holds {:?}, not a major version",
            String::from_utf8_lossy(&text)
        ));
    }
    match fs::symlink_metadata(pgdata.join("global").join("pg_control")) {
        Ok(metadata) if metadata.is_file() => None,
        Ok(_) => Some("global/pg_control is not a regular file".to_string()),
        Err(error) => Some(format!("global/pg_control is missing ({error})")),
    }
}

/// `15`, `9.6` (an older cluster), with one trailing newline at most.
fn is_major_version(text: &[u8]) -> bool {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let mut parts = text.split(|b| *b == b'.');
    let number =
        |part: &[u8]| !part.is_empty() && part.len() <= 3 && part.iter().all(u8::is_ascii_digit);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(major), None, None) => number(major) && major[0] != b'0',
        (Some(major), Some(minor), None) => number(major) && number(minor) && major[0] != b'0',
        _ => false,
    }
}

fn foreign(path: &Path, why: String) -> BasebackupError {
    BasebackupError::Foreign {
        path: path.to_path_buf(),
        why,
    }
}

/// Creates `dir` (and missing parents) mode `0700`, owned by `user`; an existing one is made
/// so through its descriptor, never through a link ([`stage_kit::fsutil::private_dir`]).
pub fn create_private_dir(dir: &Path, user: Option<&PostgresUser>) -> Result<(), BasebackupError> {
    stage_kit::fsutil::private_dir(dir, user.map(PostgresUser::owner))
        .map_err(|e| BasebackupError::io("creating", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pg_test_support::TestDir;

    fn refused(dir: &Path) -> String {
        let error = wipe(dir).unwrap_err();
        assert!(matches!(error, BasebackupError::Foreign { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains(&dir.display().to_string()), "{message}");
        message
    }

    #[test]
    fn a_user_file_is_never_wiped_whatever_vouches_for_the_rest() {
        let root = TestDir::new("bbf-wipe-");
        let dir = root.path().join("pgdata");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("precious.txt"), "x").unwrap();
        assert!(refused(&dir).contains("\"precious.txt\""));
        // A junk PG_VERSION does not make it a cluster.
        fs::write(dir.join("PG_VERSION"), "junk").unwrap();
        assert!(refused(&dir).contains("\"precious.txt\""));
        // Nor does our marker vouch for a user's file.
        fs::write(dir.join(PGDATA_MARKER), "").unwrap();
        let message = refused(&dir);
        assert!(message.contains("\"precious.txt\""), "{message}");
        assert!(!message.contains("PG_VERSION"), "{message}");
        assert_eq!(fs::read(dir.join("precious.txt")).unwrap(), b"x");
        assert!(dir.join(PGDATA_MARKER).exists() && dir.join("PG_VERSION").exists());
    }

    #[test]
    fn known_names_without_the_marker_must_be_a_real_cluster() {
        let root = TestDir::new("bbf-wipe-");
        let dir = root.path().join("pgdata");
        fs::create_dir_all(dir.join("global")).unwrap();
        fs::write(dir.join("PG_VERSION"), "junk\n").unwrap();
        assert!(refused(&dir).contains("not a major version"));
        fs::write(dir.join("PG_VERSION"), "15\n").unwrap();
        assert!(refused(&dir).contains("global/pg_control"));
        fs::write(dir.join("global/pg_control"), [0u8; 8192]).unwrap();
        wipe(&dir).unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn a_half_built_tree_of_ours_is_wiped() {
        let root = TestDir::new("bbf-wipe-");
        let dir = root.path().join("pgdata");
        fs::create_dir_all(dir.join("base/1")).unwrap();
        fs::write(dir.join(PGDATA_MARKER), "compute-tools: partial\n").unwrap();
        fs::write(dir.join("PG_VERSION"), "").unwrap(); // cut while being written
        fs::write(dir.join(".s.PGSQL.55432.lock"), "").unwrap();
        wipe(&dir).unwrap();
        assert!(!dir.exists());
        // Missing and empty directories are fine.
        wipe(&dir).unwrap();
        fs::create_dir(&dir).unwrap();
        wipe(&dir).unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn a_wipe_cut_short_leaves_a_tree_that_is_still_ours() {
        let root = TestDir::new("bbf-wipe-");
        let dir = root.path().join("pgdata");
        // `base` first (listed last on tmpfs), a mount point: removing it fails after the
        // rest went, like a crash in the middle of the wipe.
        let Some(mount) = pg_test_support::crash::SmallTmpfs::mount(&dir.join("base"), "1m") else {
            return;
        };
        fs::write(dir.join("base/1"), "x").unwrap();
        // A real cluster, without our marker.
        fs::create_dir_all(dir.join("global")).unwrap();
        fs::write(dir.join("global/pg_control"), [0u8; 8192]).unwrap();
        fs::write(dir.join("PG_VERSION"), "15\n").unwrap();
        assert!(wipe(&dir).is_err());
        drop(mount);
        wipe(&dir).unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn a_file_or_a_link_is_refused() {
        let root = TestDir::new("bbf-wipe-");
        let file = root.path().join("file");
        fs::write(&file, "x").unwrap();
        assert!(refused(&file).contains("not a directory"));
        let link = root.path().join("link");
        std::os::unix::fs::symlink(root.path(), &link).unwrap();
        refused(&link);
        assert!(file.exists() && link.exists());
    }

    #[test]
    fn a_retired_tree_is_gone_at_once_and_removed_in_the_background() {
        let root = TestDir::new("bbf-wipe-");
        let dir = root.path().join("pgdata");
        let aside = root.path().join(format!("pgdata{RETIRED_SUFFIX}"));
        fs::create_dir_all(dir.join("base/1")).unwrap();
        fs::write(dir.join("base/1/1259"), [1u8; 8192]).unwrap();
        fs::write(dir.join(PGDATA_MARKER), "").unwrap();
        // A left-over of an earlier start goes too.
        fs::create_dir_all(aside.join("base")).unwrap();
        fs::write(aside.join(PGDATA_MARKER), "").unwrap();
        let retiring = retire(&dir).unwrap().expect("moved aside");
        assert!(!dir.exists());
        retiring.finish();
        assert!(!aside.exists());
        // Missing and empty: nothing to retire.
        assert!(retire(&dir).unwrap().is_none());
        fs::create_dir(&dir).unwrap();
        assert!(retire(&dir).unwrap().is_none());
        assert!(!dir.exists());
    }

    #[test]
    fn retiring_follows_the_same_rule_and_never_touches_a_foreign_sibling() {
        let root = TestDir::new("bbf-wipe-");
        let dir = root.path().join("pgdata");
        let aside = root.path().join(format!("pgdata{RETIRED_SUFFIX}"));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join(PGDATA_MARKER), "").unwrap();
        fs::write(dir.join("precious.txt"), "x").unwrap();
        assert!(matches!(retire(&dir), Err(BasebackupError::Foreign { .. })));
        assert!(dir.join("precious.txt").exists() && !aside.exists());
        // Someone else's directory under the sibling's name is left alone; PGDATA is then
        // removed the old way.
        fs::remove_file(dir.join("precious.txt")).unwrap();
        fs::create_dir(&aside).unwrap();
        fs::write(aside.join("mine.txt"), "y").unwrap();
        assert!(retire(&dir).unwrap().is_none());
        assert!(!dir.exists());
        assert_eq!(fs::read(aside.join("mine.txt")).unwrap(), b"y");
    }

    #[test]
    fn versions_and_socket_names() {
        for good in ["15", "15\n", "9.6\n", "17"] {
            assert!(is_major_version(good.as_bytes()), "{good:?}");
        }
        for bad in [
            "", "\n", "junk", "15\n\n", "015", "1.2.3", "15 ", "1234", "15.x",
        ] {
            assert!(!is_major_version(bad.as_bytes()), "{bad:?}");
        }
        assert!(is_known(".s.PGSQL.5432") && is_known(".s.PGSQL.5432.lock"));
        assert!(!is_known(".s.PGSQL.") && !is_known(".s.PGSQL.x") && !is_known("pg_wal2"));
    }
}
