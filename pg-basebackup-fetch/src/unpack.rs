//! A safe, streaming tar extractor: entries go straight from the stream into PGDATA.
//!
//! The archive is hostile until proven otherwise. Only regular files and directories are
//! written; symlinks, hard links, devices, FIFOs and sparse files are refused (PGDATA from a
//! pageserver or a tablespace-free primary has none), so nothing can be written through a
//! link. Names must be relative and free of `..`; sizes are never used to allocate, and a
//! file whose data ends before its header's size is an error (a cut stream), never a short
//! file. Tar's end-of-archive zeros are skipped and the stream is read to its very end, so
//! an error the server sends after the archive is not missed.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use crate::error::BasebackupError;

/// Size of the copy buffer between the archive and a file.
const COPY_BUFFER: usize = 1 << 20;

/// Why unpacking failed: reading the stream, writing a file, or a refused entry.
#[derive(Debug)]
pub enum UnpackError {
    /// Reading the archive stream failed (a network or server error is its source).
    Read(io::Error),
    /// Writing into PGDATA failed, or an entry was refused.
    Write(BasebackupError),
}

/// What was unpacked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Regular files written.
    pub files: u64,
    /// Bytes of file data written.
    pub bytes: u64,
}

/// Unpacks the tar `stream` into the existing directory `dest`.
pub fn unpack(stream: impl Read, dest: &Path) -> Result<Unpacked, UnpackError> {
    let mut archive = tar::Archive::new(stream);
    archive.set_ignore_zeros(true);
    let mut unpacked = Unpacked::default();
    let mut made_dirs: HashSet<PathBuf> = HashSet::new();
    let mut buffer = vec![0u8; COPY_BUFFER];
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        let relative = match kind {
            EntryType::XGlobalHeader => continue,
            EntryType::Regular | EntryType::Continuous | EntryType::Directory => {
                safe_relative_path(&name).map_err(UnpackError::Write)?
            }
            EntryType::Symlink | EntryType::Link => return Err(refuse(&name, "links are refused")),
            _ => {
                return Err(refuse(
                    &name,
                    "only regular files and directories are accepted",
                ))
            }
        };
        let Some(relative) = relative else { continue };
        let target = dest.join(&relative);
        if let Some(parent) = relative.parent() {
            ensure_dir(dest, parent, &mut made_dirs).map_err(UnpackError::Write)?;
        }
        if kind == EntryType::Directory {
            ensure_dir(dest, &relative, &mut made_dirs).map_err(UnpackError::Write)?;
            continue;
        }
        let expected = entry.header().size().map_err(UnpackError::Read)?;
        let written = write_file(&mut entry, &target, &mut buffer)?;
        if written != expected {
            return Err(UnpackError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the stream ended inside {name} ({written} of {expected} bytes)"),
            )));
        }
        unpacked.files += 1;
        unpacked.bytes += written;
    }
    Ok(unpacked)
}

/// Reads `stream` to its end (after the archive), surfacing a late error.
pub fn drain(mut stream: impl Read) -> io::Result<u64> {
    io::copy(&mut stream, &mut io::sink())
}

/// The entry name as a relative path of normal components; `None` for the archive root
/// (`./`). Absolute names and `..` are refused.
pub fn safe_relative_path(name: &str) -> Result<Option<PathBuf>, BasebackupError> {
    if name.is_empty() || name.contains('\0') {
        return Err(BasebackupError::UnsafeEntry {
            entry: name.to_string(),
            why: "empty name",
        });
    }
    let mut relative = PathBuf::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(BasebackupError::UnsafeEntry {
                    entry: name.to_string(),
                    why: "absolute paths are refused",
                })
            }
            Component::ParentDir => {
                return Err(BasebackupError::UnsafeEntry {
                    entry: name.to_string(),
                    why: "`..` in a path is refused",
                })
            }
        }
    }
    Ok((!relative.as_os_str().is_empty()).then_some(relative))
}

fn refuse(name: &str, why: &'static str) -> UnpackError {
    UnpackError::Write(BasebackupError::UnsafeEntry {
        entry: name.to_string(),
        why,
    })
}

/// Creates `dest/relative` and its parents (mode 0700), refusing to pass through anything
/// that is not a real directory.
fn ensure_dir(
    dest: &Path,
    relative: &Path,
    made_dirs: &mut HashSet<PathBuf>,
) -> Result<(), BasebackupError> {
    if relative.as_os_str().is_empty() || made_dirs.contains(relative) {
        return Ok(());
    }
    if let Some(parent) = relative.parent() {
        ensure_dir(dest, parent, made_dirs)?;
    }
    let path = dest.join(relative);
    match fs::DirBuilder::new().mode(0o700).create(&path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            let metadata = fs::symlink_metadata(&path)
                .map_err(|e| BasebackupError::io("inspecting", &path, e))?;
            if !metadata.is_dir() {
                return Err(BasebackupError::UnsafeEntry {
                    entry: relative.display().to_string(),
                    why: "a directory is expected where a file already is",
                });
            }
        }
        Err(error) => return Err(BasebackupError::io("creating", &path, error)),
    }
    made_dirs.insert(relative.to_path_buf());
    Ok(())
}

/// Copies the entry's data into a new file at `target` (never following a symlink there).
fn write_file(entry: &mut impl Read, target: &Path, buffer: &mut [u8]) -> Result<u64, UnpackError> {
    let write_error = |e| UnpackError::Write(BasebackupError::io("writing", target, e));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(target)
        .map_err(write_error)?;
    let mut written = 0u64;
    loop {
        // Fill the buffer before writing: the stream arrives in small pieces (a primary
        // sends ~32 KiB CopyData messages), and one large write costs less than many.
        let n = fill(entry, buffer).map_err(UnpackError::Read)?;
        if n == 0 {
            return Ok(written);
        }
        file.write_all(&buffer[..n]).map_err(write_error)?;
        written += n as u64;
    }
}

/// Reads until `buffer` is full or the reader is at its end; returns the bytes read.
fn fill(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        let ok = |name: &str| safe_relative_path(name).unwrap();
        assert_eq!(ok("./"), None);
        assert_eq!(ok("base/1/123"), Some(PathBuf::from("base/1/123")));
        assert_eq!(
            ok("./global/pg_control"),
            Some(PathBuf::from("global/pg_control"))
        );
        for bad in ["/etc/passwd", "../x", "a/../../x", "a/..", ""] {
            assert!(safe_relative_path(bad).is_err(), "{bad}");
        }
    }
}
