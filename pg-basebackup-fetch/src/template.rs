//! The template cache for the `initdb` source: `initdb` runs once per (Postgres binaries,
//! `initdb` arguments, bootstrap superuser, owner), into a cache directory; later starts copy
//! that pristine cluster into their fresh PGDATA (a reflink where the file system supports
//! it, else a parallel copy) instead of running `initdb` again.
//!
//! **Layout**: `<cache dir>/initdb-<key hash>/` holds `data/` (what `initdb` wrote, untouched),
//! `version` (the full key, compared byte for byte) and `complete` (the manifest: every
//! directory and file with its size, written last).
//!
//! **Invariants**
//! - A template appears only whole: it is built in a `.build-…` sibling, `complete` is written
//!   last, and the directory is renamed into place (a concurrent start that lost the race
//!   discards its build and uses the winner's).
//! - A template is used only when its `version` equals the key and the tree matches its
//!   manifest exactly (no file missing, added or resized); otherwise it is moved aside,
//!   removed and rebuilt, never used.
//! - Every start still gets a fresh private PGDATA (the caller wipes and creates it, `0700`,
//!   owned by the Postgres user); the template is only read.
//! - The cache is an optimisation: any failure of it is logged and the start falls back to
//!   running `initdb` into a re-wiped PGDATA.
//! - Crashed builds and templates unused for two weeks are pruned after each start
//!   ([`crate::prune`]); a start refreshes the `last-used` stamp of the template it uses.
//! - Copies share the template's system identifier (`pg_control`): fine for the `initdb`
//!   source (a throwaway cluster); use `--no-template-cache` when clusters must differ.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use stage_kit::runas::PostgresUser;

use crate::clone::{self, Entry};
use crate::error::BasebackupError;
use crate::initdb::{initdb_in_place, run_initdb, INITDB_ARGS};

/// The environment variable naming the cache directory (the flag `--template-cache-dir`
/// takes precedence).
pub const CACHE_DIR_ENV: &str = "COMPUTE_TOOLS_TEMPLATE_CACHE";

/// The system-wide default cache directory, used when it (or `/var/cache`) is writable.
pub const SYSTEM_CACHE_DIR: &str = "/var/cache/compute-tools";

/// Where templates live, or `Off`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateCache {
    /// Always run `initdb`.
    Off,
    /// Templates in this directory (created when missing).
    Dir(PathBuf),
}

/// How PGDATA was made: the `template` value of the `basebackup` section.
pub use compute_spec::section::TemplateOutcome as Outcome;

impl TemplateCache {
    /// The default: `/var/cache/compute-tools` when it is (or can be made) writable, else
    /// `$XDG_CACHE_HOME/compute-tools`, else `$HOME/.cache/compute-tools`; `Off` when there
    /// is no home either.
    pub fn default_location() -> TemplateCache {
        let system = Path::new(SYSTEM_CACHE_DIR);
        let writable = |path: &Path| {
            nix::unistd::access(
                path,
                nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
            )
            .is_ok()
        };
        if writable(system) || (!system.exists() && system.parent().is_some_and(writable)) {
            return TemplateCache::Dir(system.to_path_buf());
        }
        let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        if let Some(xdg) = non_empty("XDG_CACHE_HOME") {
            return TemplateCache::Dir(PathBuf::from(xdg).join("compute-tools"));
        }
        match non_empty("HOME") {
            Some(home) => TemplateCache::Dir(PathBuf::from(home).join(".cache/compute-tools")),
            None => TemplateCache::Off,
        }
    }
}

/// Fills the private `pgdata` (empty but for our marker) with a pristine cluster made by `initdb` for `admin`:
/// from the template cache when it is on, else by running `initdb`.
pub fn provide(
    cache: &TemplateCache,
    initdb: &Path,
    pgdata: &Path,
    admin: &str,
    user: Option<&PostgresUser>,
) -> Result<Outcome, BasebackupError> {
    let TemplateCache::Dir(dir) = cache else {
        initdb_in_place(initdb, pgdata, admin, user)?;
        return Ok(Outcome::Off);
    };
    match from_template(dir, initdb, pgdata, admin, user) {
        Ok(outcome) => Ok(outcome),
        Err(error) => {
            tracing::warn!(
                "template cache {}: {error}; running initdb instead",
                dir.display()
            );
            crate::wipe::wipe_and_create_marked(pgdata, user)?;
            initdb_in_place(initdb, pgdata, admin, user)?;
            Ok(Outcome::Fallback)
        }
    }
}

/// Copies the valid template for this key into `pgdata`, building it first when needed.
fn from_template(
    dir: &Path,
    initdb: &Path,
    pgdata: &Path,
    admin: &str,
    user: Option<&PostgresUser>,
) -> Result<Outcome, BasebackupError> {
    let key = key(initdb, admin, user)?;
    let slot = dir.join(format!("initdb-{:016x}", fnv1a(key.as_bytes())));
    let mut outcome = Outcome::Hit;
    let entries = match check(&slot, &key)? {
        Some(entries) => entries,
        None => {
            outcome = Outcome::Miss;
            build(dir, &slot, &key, initdb, admin, user)?
        }
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    crate::prune::stamp(&slot);
    clone::copy_tree(&slot.join("data"), pgdata, &entries, threads)?;
    if let Some(user) = user {
        if user.uid != nix::unistd::geteuid().as_raw() {
            user.chown_recursive(pgdata)
                .map_err(|e| BasebackupError::io("changing the owner of", pgdata, e))?;
        }
    }
    tracing::info!(
        "PGDATA copied from the template {} ({})",
        slot.display(),
        outcome.as_str()
    );
    crate::prune::prune(dir, &slot, SystemTime::now());
    Ok(outcome)
}

/// What the template depends on: the binaries (path, size, modification time), the
/// `initdb` arguments, the superuser and the owner.
fn key(initdb: &Path, admin: &str, user: Option<&PostgresUser>) -> Result<String, BasebackupError> {
    let mut key = String::from("compute-tools initdb template 1\n");
    let postgres = initdb.with_file_name("postgres");
    for binary in [initdb, postgres.as_path()] {
        let resolved =
            fs::canonicalize(binary).map_err(|e| BasebackupError::io("resolving", binary, e))?;
        let metadata =
            fs::metadata(&resolved).map_err(|e| BasebackupError::io("inspecting", binary, e))?;
        key.push_str(&format!(
            "binary {} size {} mtime {}.{:09}\n",
            resolved.display(),
            metadata.size(),
            metadata.mtime(),
            metadata.mtime_nsec()
        ));
    }
    key.push_str(&format!("args {INITDB_ARGS:?}\nsuperuser {admin:?}\n"));
    let owner = user.map_or_else(|| nix::unistd::geteuid().as_raw(), |user| user.uid);
    key.push_str(&format!("owner {owner}\n"));
    Ok(key)
}

/// FNV-1a, 64 bits: a stable name for a key (the key itself is compared in full).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The template's entries when `slot` holds a valid template for `key`; `None` when it is
/// missing, or damaged or stale (then it has been moved aside and removed).
fn check(slot: &Path, key: &str) -> Result<Option<Vec<Entry>>, BasebackupError> {
    let version = match fs::read_to_string(slot.join("version")) {
        Ok(version) => version,
        Err(error) if error.kind() == io::ErrorKind::NotFound && !slot.exists() => return Ok(None),
        Err(error) => return discard(slot, &format!("its version file is unreadable: {error}")),
    };
    if version != key {
        return discard(slot, "it was made by other binaries or settings");
    }
    let manifest = match fs::read_to_string(slot.join("complete")) {
        Ok(manifest) => manifest,
        Err(error) => return discard(slot, &format!("its marker is unreadable: {error}")),
    };
    let entries = match clone::walk(&slot.join("data")) {
        Ok(entries) => entries,
        Err(error) => return discard(slot, &format!("its data is unreadable: {error}")),
    };
    if render_manifest(&entries) != manifest {
        return discard(slot, "its files differ from its manifest");
    }
    Ok(Some(entries))
}

/// Moves a bad template aside (atomically: a concurrent start sees it or not) and removes it.
fn discard(slot: &Path, why: &str) -> Result<Option<Vec<Entry>>, BasebackupError> {
    tracing::warn!(
        "template {} is not used: {why}; rebuilding it",
        slot.display()
    );
    let aside = unique_sibling(slot, ".trash");
    match fs::rename(slot, &aside) {
        Ok(()) => fs::remove_dir_all(&aside)
            .map_err(|e| BasebackupError::io("removing the discarded template", &aside, e))?,
        // Another start discarded it first.
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(BasebackupError::io("moving aside", slot, error)),
    }
    Ok(None)
}

/// One line per entry: `d <mode> <path>` or `f <mode> <size> <path>`.
fn render_manifest(entries: &[Entry]) -> String {
    let mut text = String::new();
    for entry in entries {
        match entry.size {
            None => text.push_str(&format!("d {:o} {}\n", entry.mode, entry.path.display())),
            Some(size) => text.push_str(&format!(
                "f {:o} {size} {}\n",
                entry.mode,
                entry.path.display()
            )),
        }
    }
    text
}

/// `<dir>/<prefix>-<slot name>-<pid>-<nanoseconds>`: a name no other start uses.
fn unique_sibling(slot: &Path, prefix: &str) -> PathBuf {
    let name = slot.file_name().map_or_else(
        || "template".to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    slot.with_file_name(format!("{prefix}-{name}-{}-{nanos}", std::process::id()))
}

/// Builds the template beside `slot` and renames it into place; its entries.
fn build(
    dir: &Path,
    slot: &Path,
    key: &str,
    initdb: &Path,
    admin: &str,
    user: Option<&PostgresUser>,
) -> Result<Vec<Entry>, BasebackupError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| BasebackupError::io("creating the template cache", dir, e))?;
    let building = unique_sibling(slot, ".build");
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&building)
        .map_err(|e| BasebackupError::io("creating", &building, e))?;
    let built = build_in(&building, key, initdb, admin, user);
    let entries = match built {
        Ok(entries) => entries,
        Err(error) => {
            let _ = fs::remove_dir_all(&building);
            return Err(error);
        }
    };
    match fs::rename(&building, slot) {
        Ok(()) => Ok(entries),
        Err(error)
            if matches!(
                error.raw_os_error(),
                Some(nix::libc::ENOTEMPTY | nix::libc::EEXIST)
            ) =>
        {
            // A concurrent start placed its template first: use that one.
            let _ = fs::remove_dir_all(&building);
            check(slot, key)?.ok_or_else(|| {
                BasebackupError::io(
                    "using the template another start built",
                    slot,
                    io::Error::from(io::ErrorKind::InvalidData),
                )
            })
        }
        Err(error) => {
            let _ = fs::remove_dir_all(&building);
            Err(BasebackupError::io("placing the template", slot, error))
        }
    }
}

/// `initdb` into `building/data`, then `version`, then the manifest `complete` (last).
fn build_in(
    building: &Path,
    key: &str,
    initdb: &Path,
    admin: &str,
    user: Option<&PostgresUser>,
) -> Result<Vec<Entry>, BasebackupError> {
    if let Some(user) = user {
        user.chown_recursive(building)
            .map_err(|e| BasebackupError::io("changing the owner of", building, e))?;
    }
    let data = building.join("data");
    run_initdb(initdb, &data, admin, user)?;
    let entries = clone::walk(&data)?;
    // `building` is the postgres user's (initdb ran in it): never written through a link.
    let write = |name: &str, text: &str| {
        let path = building.join(name);
        let options = stage_kit::fsutil::FileOptions::mode(0o644);
        stage_kit::fsutil::replace_file(&path, text.as_bytes(), options)
            .map_err(|e| BasebackupError::io("writing", &path, e))
    };
    write("version", key)?;
    write("complete", &render_manifest(&entries))?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_names_modes_sizes_and_paths() {
        let entries = [
            Entry {
                path: PathBuf::from("base"),
                size: None,
                mode: 0o700,
            },
            Entry {
                path: PathBuf::from("base/1"),
                size: Some(8192),
                mode: 0o600,
            },
        ];
        assert_eq!(render_manifest(&entries), "d 700 base\nf 600 8192 base/1\n");
    }

    #[test]
    fn the_slot_name_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
