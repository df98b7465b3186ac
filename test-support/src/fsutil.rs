//! Small file-system helpers: recursive copy and chown, reading the end of a log.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{lchown, symlink, PermissionsExt};
use std::path::Path;

/// Copies the directory `src` to `dst` (which must not exist), recursively, preserving the
/// permission bits of files and directories and recreating symlinks as symlinks.
pub(crate) fn copy_dir_recursive(src: &Path, dst: &Path) {
    let meta =
        fs::symlink_metadata(src).unwrap_or_else(|e| panic!("cannot stat {}: {e}", src.display()));
    fs::create_dir(dst).unwrap_or_else(|e| panic!("cannot create {}: {e}", dst.display()));
    let entries =
        fs::read_dir(src).unwrap_or_else(|e| panic!("cannot list {}: {e}", src.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", src.display()));
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let kind = entry
            .file_type()
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", from.display()));
        if kind.is_dir() {
            copy_dir_recursive(&from, &to);
        } else if kind.is_symlink() {
            let target = fs::read_link(&from)
                .unwrap_or_else(|e| panic!("cannot read link {}: {e}", from.display()));
            symlink(&target, &to)
                .unwrap_or_else(|e| panic!("cannot create symlink {}: {e}", to.display()));
        } else {
            // `fs::copy` also copies the permission bits.
            fs::copy(&from, &to).unwrap_or_else(|e| {
                panic!("cannot copy {} to {}: {e}", from.display(), to.display())
            });
        }
    }
    // Set the directory's mode last, so a read-only directory can still be filled.
    let mode = meta.permissions().mode() & 0o7777;
    fs::set_permissions(dst, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", dst.display()));
}

/// Changes the owner of `path` and everything below it, without following symlinks.
pub(crate) fn chown_recursive(path: &Path, uid: u32, gid: u32) {
    lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("cannot chown {} to {uid}:{gid}: {e}", path.display()));
    let meta = fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()));
    if meta.is_dir() {
        let entries =
            fs::read_dir(path).unwrap_or_else(|e| panic!("cannot list {}: {e}", path.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", path.display()));
            chown_recursive(&entry.path(), uid, gid);
        }
    }
}

/// The last `max_bytes` bytes of the file at `path` as (lossy) UTF-8, or a note saying why
/// it could not be read. Used for panic messages.
pub(crate) fn file_tail(path: &Path, max_bytes: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = fs::File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(max_bytes)))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    read().unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}
