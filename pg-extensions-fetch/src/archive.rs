//! Unpacking an extension archive (a zstd-compressed tar) into the Postgres installation.
//!
//! Layout, as upstream: each top-level entry under `share/extension/` goes into the
//! installation's extension directory, each under `lib/` into its library directory; other
//! entries are ignored. The archive is hostile until proven otherwise (the same rules as
//! basebackup tars): only regular files and directories, names relative and free of `..`,
//! no link of any kind anywhere in the archive, a cap on the unpacked size and one on the
//! number of entries (an archive of 100,000 empty files costs nothing to send and a file each
//! to unpack).
//!
//! **Atomic.** Every top-level entry is first written beside its destination under a
//! hidden name unique to this process and call (`.<name>.compute-tools-<pid>-<n>`), inside
//! a tree this call created (so nothing can be written through a link), and renamed into
//! place only after the whole archive was read and its zstd frame checked: a file appears
//! complete or not at all, and a bad archive leaves nothing behind.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tar::EntryType;

use crate::layout::Installation;
use crate::FetchError;

/// What an archive put into the installation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Regular files written.
    pub files: u64,
    /// Bytes of file data written.
    pub bytes: u64,
    /// Top-level entries renamed into place.
    pub installed: u64,
}

/// Which installation directory an entry belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Target {
    Extension,
    Library,
}

/// Distinguishes the staging names of concurrent calls in one process.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The default of `--max-entries`: far more than any extension ships (PostGIS: a few hundred).
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;

/// What one archive may unpack to.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    /// Bytes of file data.
    pub bytes: u64,
    /// Entries of the tar stream, of any type (ignored ones too).
    pub entries: u64,
}

/// Unpacks the zstd-compressed tar stream `compressed` (the archive `name`, for messages)
/// into `installation`, within `caps`. The stream is read to its end.
pub fn unpack(
    compressed: impl Read,
    name: &str,
    installation: &Installation,
    caps: Caps,
) -> Result<Unpacked, FetchError> {
    let mut staging = Staging {
        installation,
        tops: HashMap::new(),
        order: Vec::new(),
    };
    let result = staging.read_all(compressed, name, caps);
    match result {
        Ok(mut unpacked) => {
            unpacked.installed = staging.commit();
            Ok(unpacked)
        }
        Err(error) => {
            staging.discard();
            Err(error)
        }
    }
}

/// The staged top-level entries of one archive.
struct Staging<'i> {
    installation: &'i Installation,
    /// (target, top-level name) → its staging path.
    tops: HashMap<(Target, String), PathBuf>,
    /// The same keys in archive order.
    order: Vec<(Target, String)>,
}

impl Staging<'_> {
    fn dir(&self, target: Target) -> &Path {
        match target {
            Target::Extension => &self.installation.extension_dir,
            Target::Library => &self.installation.library_dir,
        }
    }

    fn read_all(
        &mut self,
        compressed: impl Read,
        name: &str,
        caps: Caps,
    ) -> Result<Unpacked, FetchError> {
        let max_bytes = caps.bytes;
        let mut seen: u64 = 0;
        let bad = |why: String| FetchError::Archive(format!("archive {name}: {why}"));
        let decoder = zstd::stream::read::Decoder::new(compressed)
            .map_err(|error| bad(format!("not zstd: {error}")))?;
        let mut archive = tar::Archive::new(decoder);
        let mut unpacked = Unpacked::default();
        let entries = archive
            .entries()
            .map_err(|error| bad(format!("reading it: {error}")))?;
        for entry in entries {
            seen += 1;
            if seen > caps.entries {
                return Err(bad(format!(
                    "holds more than {} entries (the --max-entries cap); nothing was installed",
                    caps.entries
                )));
            }
            let mut entry = entry.map_err(|error| bad(format!("reading it: {error}")))?;
            let path_bytes = entry.path_bytes().into_owned();
            let path = std::str::from_utf8(&path_bytes)
                .map_err(|_| bad(format!("entry name {path_bytes:?} is not UTF-8")))?
                .to_string();
            let kind = entry.header().entry_type();
            let is_dir = match kind {
                EntryType::Regular | EntryType::Continuous => false,
                EntryType::Directory => true,
                EntryType::XGlobalHeader => continue,
                other => {
                    return Err(bad(format!(
                        "entry {path:?} is a {other:?}; only regular files and directories \
                         are unpacked (no links, devices or FIFOs)"
                    )))
                }
            };
            let parts =
                relative_parts(&path).map_err(|why| bad(format!("entry {path:?} {why}")))?;
            let (target, rest) = match parts.as_slice() {
                [share, extension, rest @ ..] if share == "share" && extension == "extension" => {
                    (Target::Extension, rest)
                }
                [lib, rest @ ..] if lib == "lib" => (Target::Library, rest),
                _ => continue,
            };
            let Some((top, below)) = rest.split_first() else {
                continue;
            };
            let top_path = self.stage_top(target, top);
            let mut staged = top_path;
            for part in below {
                staged.push(part);
            }
            if is_dir {
                create_dirs(&staged)?;
                continue;
            }
            if let Some(parent) = staged.parent() {
                create_dirs(parent)?;
            }
            let left = max_bytes.saturating_sub(unpacked.bytes);
            let mode = entry.header().mode().ok();
            let written = write_file(&staged, &mut entry, left, mode)?;
            if written > left {
                return Err(bad(format!(
                    "unpacks to more than {max_bytes} bytes (the --max-unpacked-bytes cap)"
                )));
            }
            unpacked.files += 1;
            unpacked.bytes += written;
        }
        // The tar reader stops at its end marker; reading the zstd stream to its end checks
        // the frame, so a cut archive is an error, never a partial install.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink())
            .map_err(|error| bad(format!("the compressed stream is damaged or cut: {error}")))?;
        Ok(unpacked)
    }

    /// The staging path of top-level entry `top` of `target` (the same for every entry
    /// under it).
    fn stage_top(&mut self, target: Target, top: &str) -> PathBuf {
        let key = (target, top.to_string());
        if let Some(path) = self.tops.get(&key) {
            return path.clone();
        }
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let staged = self.dir(target).join(format!(
            ".{top}.compute-tools-{}-{sequence}",
            std::process::id()
        ));
        self.tops.insert(key.clone(), staged.clone());
        self.order.push(key);
        staged
    }

    /// Renames every staged entry into place; returns how many were.
    fn commit(&mut self) -> u64 {
        let mut installed = 0;
        for key in std::mem::take(&mut self.order) {
            let Some(staged) = self.tops.remove(&key) else {
                continue;
            };
            let destination = self.dir(key.0).join(&key.1);
            if fs::symlink_metadata(&staged).is_err() {
                continue; // a top-level directory entry with nothing under it.
            }
            match fs::rename(&staged, &destination) {
                Ok(()) => installed += 1,
                Err(error) => {
                    // As upstream: a failed rename (a directory already there) is a warning.
                    tracing::warn!(
                        %error,
                        destination = %destination.display(),
                        "cannot move an unpacked extension file into place; keeping the existing one"
                    );
                    remove_any(&staged);
                }
            }
        }
        installed
    }

    fn discard(&mut self) {
        for staged in self.tops.values() {
            remove_any(staged);
        }
        self.tops.clear();
        self.order.clear();
    }
}

/// The normal components of a relative entry name (`./` ignored); absolute names and `..`
/// are refused.
fn relative_parts(name: &str) -> Result<Vec<String>, &'static str> {
    let mut parts = Vec::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => match part.to_str() {
                Some(part) => parts.push(part.to_string()),
                None => return Err("is not UTF-8"),
            },
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
            Component::ParentDir => return Err("contains `..`"),
        }
    }
    Ok(parts)
}

fn create_dirs(path: &Path) -> Result<(), FetchError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(|error| FetchError::Io(format!("creating {}: {error}", path.display())))
}

/// Writes `data` into the new file `path` (never through a link, never over an existing
/// file), stopping one byte past `limit`; returns the bytes written.
fn write_file(
    path: &Path,
    data: &mut impl Read,
    limit: u64,
    mode: Option<u32>,
) -> Result<u64, FetchError> {
    let io_error =
        |error: io::Error| FetchError::Io(format!("writing {}: {error}", path.display()));
    let executable = mode.is_some_and(|mode| mode & 0o111 != 0);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if executable { 0o755 } else { 0o644 })
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_error)?;
    let copied = io::copy(&mut data.take(limit.saturating_add(1)), &mut file).map_err(|error| {
        FetchError::Archive(format!("reading the data of {}: {error}", path.display()))
    })?;
    file.flush().map_err(io_error)?;
    Ok(copied)
}

fn remove_any(path: &Path) {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    };
    if let Err(error) = result {
        tracing::warn!(%error, path = %path.display(), "cannot remove a staged extension file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(
            relative_parts("./share/extension/a.control").unwrap(),
            ["share", "extension", "a.control"]
        );
        assert!(relative_parts("/etc/passwd").is_err());
        assert!(relative_parts("lib/../../x").is_err());
    }
}
