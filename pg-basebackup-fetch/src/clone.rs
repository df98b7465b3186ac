//! Copying a directory tree fast: a walk that lists every directory and regular file (the
//! template manifest is built from the same list), then a parallel copy that clones each file
//! (`FICLONE`, a reflink: no data copied on btrfs, XFS and other copy-on-write file systems)
//! and falls back to `copy_file_range` (through `std::fs::copy`) where cloning is refused.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::error::BasebackupError;

/// One entry of a tree: its path relative to the root, and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Relative path (no leading `/`).
    pub path: PathBuf,
    /// `None` for a directory, the size in bytes for a regular file.
    pub size: Option<u64>,
    /// Permission bits.
    pub mode: u32,
}

/// Every directory and regular file below `root` (not `root` itself), parents before
/// children, sorted by path. Anything else (a symbolic link, a socket) is an error: a
/// pristine cluster has none.
pub fn walk(root: &Path) -> Result<Vec<Entry>, BasebackupError> {
    let mut entries = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = root.join(&relative);
        let listing = fs::read_dir(&dir).map_err(|e| BasebackupError::io("listing", &dir, e))?;
        for item in listing {
            let item = item.map_err(|e| BasebackupError::io("listing", &dir, e))?;
            let path = relative.join(item.file_name());
            let metadata = item
                .metadata()
                .map_err(|e| BasebackupError::io("inspecting", item.path(), e))?;
            let mode = metadata.permissions().mode() & 0o7777;
            if metadata.is_dir() {
                pending.push(path.clone());
                entries.push(Entry {
                    path,
                    size: None,
                    mode,
                });
            } else if metadata.is_file() {
                entries.push(Entry {
                    path,
                    size: Some(metadata.size()),
                    mode,
                });
            } else {
                return Err(BasebackupError::io(
                    "copying (not a directory or regular file)",
                    item.path(),
                    io::Error::from(io::ErrorKind::InvalidInput),
                ));
            }
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// Copies `entries` (from [`walk`]) from `from` into the existing directory `to`: directories
/// first, then the files on up to `threads` threads. Modes are kept; the new files belong to
/// the running process.
pub fn copy_tree(
    from: &Path,
    to: &Path,
    entries: &[Entry],
    threads: usize,
) -> Result<(), BasebackupError> {
    for entry in entries.iter().filter(|entry| entry.size.is_none()) {
        let target = to.join(&entry.path);
        fs::DirBuilder::new()
            .mode(entry.mode)
            .create(&target)
            .map_err(|e| BasebackupError::io("creating", &target, e))?;
    }
    let files: Vec<&Entry> = entries.iter().filter(|e| e.size.is_some()).collect();
    let next = AtomicUsize::new(0);
    let clone_works = AtomicBool::new(true);
    let worker = || -> Result<(), BasebackupError> {
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(entry) = files.get(index) else {
                return Ok(());
            };
            copy_file(
                &from.join(&entry.path),
                &to.join(&entry.path),
                entry.mode,
                &clone_works,
            )?;
        }
    };
    let threads = threads.clamp(1, files.len().max(1));
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(worker)).collect();
        let mut result = worker();
        for helper in helpers {
            let joined = helper.join().unwrap_or_else(|_| {
                Err(BasebackupError::Document(
                    "a copying thread panicked".to_string(),
                ))
            });
            result = result.and(joined);
        }
        result
    })
}

/// `FICLONE` from `<linux/fs.h>`: `_IOW(0x94, 9, int)`.
const FICLONE: u64 = 0x4004_9409;

/// Copies one file: a clone when the file system allows it (remembered in `clone_works`),
/// else a kernel-side copy.
fn copy_file(
    from: &Path,
    to: &Path,
    mode: u32,
    clone_works: &AtomicBool,
) -> Result<(), BasebackupError> {
    let source = fs::File::open(from).map_err(|e| BasebackupError::io("opening", from, e))?;
    let target = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(to)
        .map_err(|e| BasebackupError::io("creating", to, e))?;
    if clone_works.load(Ordering::Relaxed) {
        // SAFETY: both descriptors are open files owned by this function for the whole call;
        // FICLONE reads the int argument (the source descriptor) and touches no memory of ours.
        let done = unsafe {
            nix::libc::ioctl(
                target.as_raw_fd(),
                FICLONE as nix::libc::Ioctl,
                source.as_raw_fd(),
            )
        };
        if done == 0 {
            return Ok(());
        }
        // EOPNOTSUPP, EXDEV, EINVAL: this file system does not clone; copy from now on.
        clone_works.store(false, Ordering::Relaxed);
    }
    drop(target);
    drop(source);
    fs::copy(from, to).map_err(|e| BasebackupError::io("copying into", to, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_copied_with_its_modes_and_contents() {
        let base = std::env::temp_dir().join(format!("bbf-clone-{}", std::process::id()));
        let (from, to) = (base.join("from"), base.join("to"));
        fs::create_dir_all(from.join("a/b")).unwrap();
        fs::create_dir_all(&to).unwrap();
        fs::write(from.join("a/b/f"), "data").unwrap();
        fs::write(from.join("top"), vec![7u8; 100_000]).unwrap();
        fs::set_permissions(from.join("top"), fs::Permissions::from_mode(0o600)).unwrap();
        let entries = walk(&from).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.path.clone()).collect();
        assert_eq!(names, ["a", "a/b", "a/b/f", "top"].map(PathBuf::from));
        copy_tree(&from, &to, &entries, 3).unwrap();
        assert_eq!(walk(&to).unwrap(), entries);
        assert_eq!(fs::read(to.join("a/b/f")).unwrap(), b"data");
        assert_eq!(fs::read(to.join("top")).unwrap(), vec![7u8; 100_000]);
        fs::remove_dir_all(&base).unwrap();
    }
}
