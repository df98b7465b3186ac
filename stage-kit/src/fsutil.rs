//! Files and directories written as root where another user may have planted a link.
//!
//! * [`chown_tree`]: gives a tree to a user without ever following a symbolic link, even one
//!   swapped in while the walk runs: every directory is opened relative to its parent's
//!   descriptor with `O_NOFOLLOW|O_DIRECTORY` and changed with `fchown`; every other entry
//!   is changed with `fchownat(AT_SYMLINK_NOFOLLOW)` relative to that descriptor. A symlink
//!   is changed itself; its target never is.
//! * [`replace_file`]: writes a whole file through a new temporary file beside it (created
//!   `O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600), gives it its owner and final mode through the
//!   descriptor, then renames it over the path. A link planted at the temporary name is
//!   refused (another name is tried), a link at the path is replaced, never written
//!   through, and the content is never readable by others before the final mode is set.
//! * [`private_dir`]: creates a directory 0700 for its owner. One that exists already in a
//!   directory others can write to (`/tmp`: group- or world-writable, or owned by a user
//!   other than root, us and the owner-to-be) is accepted only when it is a real directory
//!   (not a link), owned by us or the owner-to-be, mode 0700; otherwise the call fails
//!   naming the path. Elsewhere an existing directory is adopted (made 0700 and chowned
//!   through its descriptor); a link there is refused too.
//! * [`open_own_file`]: opens (creating) a file to keep, such as a lock file, never through a
//!   link; in a directory others can write to, an existing file must be ours.
//!
//! Tests: `stage-kit/tests/it/fsutil.rs` (each plants the link or the foreign directory).

use std::ffi::{CString, OsStr};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fchmod, fstat, Mode};
use nix::unistd::{fchown, fchownat, Gid, Uid};

/// An owner to give a file or directory to: a user id and a group id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The user id.
    pub uid: u32,
    /// The group id.
    pub gid: u32,
}

impl Owner {
    fn ids(self) -> (Option<Uid>, Option<Gid>) {
        (Some(Uid::from_raw(self.uid)), Some(Gid::from_raw(self.gid)))
    }
}

fn failed(what: &str, path: &Path, errno: Errno) -> io::Error {
    io::Error::new(
        io::Error::from(errno).kind(),
        format!("{what} {}: {errno}", path.display()),
    )
}

/// Opens the directory `name` (relative to `dir`), never through a symbolic link.
fn open_dir(dir: impl AsFd, name: &(impl nix::NixPath + ?Sized)) -> nix::Result<OwnedFd> {
    nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// A directory being walked: its descriptor, its path (for messages) and the entries left.
struct Frame {
    fd: OwnedFd,
    path: PathBuf,
    entries: std::vec::IntoIter<(CString, Option<Type>)>,
}

impl Frame {
    fn new(fd: OwnedFd, path: PathBuf) -> io::Result<Frame> {
        let listing = fd.try_clone().map_err(|error| {
            io::Error::new(error.kind(), format!("{}: {error}", path.display()))
        })?;
        let mut listing = Dir::from_fd(listing).map_err(|e| failed("listing", &path, e))?;
        let mut entries = Vec::new();
        for entry in listing.iter() {
            let entry = entry.map_err(|e| failed("listing", &path, e))?;
            let name = entry.file_name();
            if matches!(name.to_bytes(), b"." | b"..") {
                continue;
            }
            entries.push((name.to_owned(), entry.file_type()));
        }
        Ok(Frame {
            fd,
            path,
            entries: entries.into_iter(),
        })
    }
}

/// Gives `path` and everything below it to `owner`, never following a symbolic link (see
/// the module). An entry removed while the walk runs is skipped. The walk holds one
/// descriptor per level of depth, and no recursion: a deep tree fails with `EMFILE`.
pub fn chown_tree(path: &Path, owner: Owner) -> io::Result<()> {
    let (uid, gid) = owner.ids();
    let root = match open_dir(AT_FDCWD, path) {
        Ok(fd) => fd,
        Err(Errno::ELOOP | Errno::ENOTDIR) => {
            // Not a directory (a symlink is changed itself).
            return fchownat(AT_FDCWD, path, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| failed("changing the owner of", path, e));
        }
        Err(errno) => return Err(failed("opening", path, errno)),
    };
    fchown(&root, uid, gid).map_err(|e| failed("changing the owner of", path, e))?;
    let mut stack = vec![Frame::new(root, path.to_path_buf())?];
    while let Some(frame) = stack.last_mut() {
        let Some((name, kind)) = frame.entries.next() else {
            stack.pop();
            continue;
        };
        let child = frame.path.join(OsStr::from_bytes(name.as_bytes()));
        let maybe_dir = matches!(kind, None | Some(Type::Directory));
        if maybe_dir {
            match open_dir(&frame.fd, name.as_c_str()) {
                Ok(fd) => {
                    fchown(&fd, uid, gid)
                        .map_err(|e| failed("changing the owner of", &child, e))?;
                    let next = Frame::new(fd, child)?;
                    stack.push(next);
                    continue;
                }
                // Not a directory (any more): changed below as an entry.
                Err(Errno::ELOOP | Errno::ENOTDIR) => {}
                Err(Errno::ENOENT) => continue,
                Err(errno) => return Err(failed("opening", &child, errno)),
            }
        }
        match fchownat(
            &frame.fd,
            name.as_c_str(),
            uid,
            gid,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(errno) => return Err(failed("changing the owner of", &child, errno)),
        }
    }
    Ok(())
}

/// How [`replace_file`] leaves the file.
#[derive(Clone, Copy, Debug)]
pub struct FileOptions {
    /// The final mode (permission bits).
    pub mode: u32,
    /// The final owner; `None`: the creating user's.
    pub owner: Option<Owner>,
    /// Whether the data is synced before the rename (and the directory after it).
    pub sync: bool,
}

impl FileOptions {
    /// Mode `mode`, kept by the creating user, not synced.
    pub fn mode(mode: u32) -> FileOptions {
        FileOptions {
            mode,
            owner: None,
            sync: false,
        }
    }

    /// The same, given to `owner` when there is one.
    pub fn owned_by(self, owner: Option<Owner>) -> FileOptions {
        FileOptions { owner, ..self }
    }

    /// The same, synced.
    pub fn synced(self) -> FileOptions {
        FileOptions { sync: true, ..self }
    }

    /// The mode and owner of an existing file (`metadata`), not synced.
    pub fn like(metadata: &std::fs::Metadata) -> FileOptions {
        FileOptions {
            mode: metadata.mode() & 0o7777,
            owner: Some(Owner {
                uid: metadata.uid(),
                gid: metadata.gid(),
            }),
            sync: false,
        }
    }
}

/// Names of temporary files made by this process.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// How many temporary names are tried before giving up (each taken one was planted or left).
const NAME_ATTEMPTS: u32 = 16;

/// Creates a new file beside `path` (mode 0600, `O_EXCL|O_NOFOLLOW`): the file and its name.
fn create_beside(path: &Path) -> io::Result<(File, PathBuf)> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let mut last = None;
    for _ in 0..NAME_ATTEMPTS {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let temporary = path.with_file_name(format!(
            ".{}.compute-tools-{}-{}-{stamp:08x}",
            name.to_string_lossy(),
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temporary)
        {
            Ok(file) => return Ok((file, temporary)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => last = Some(temporary),
            Err(error) => {
                return Err(io::Error::new(
                    error.kind(),
                    format!("creating {}: {error}", temporary.display()),
                ))
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "creating a temporary file beside {}: {NAME_ATTEMPTS} names were taken (the last \
             {}); remove the stray files there",
            path.display(),
            last.as_deref().unwrap_or(path).display()
        ),
    ))
}

/// Writes `bytes` as the whole of `path` (see the module): a new temporary file beside it,
/// given `options`' owner and mode through its descriptor, renamed over `path`. On an error
/// `path` is unchanged and the temporary file removed. The error names the file.
pub fn replace_file(path: &Path, bytes: &[u8], options: FileOptions) -> io::Result<()> {
    let (mut file, temporary) = create_beside(path)?;
    let written = (|| {
        file.write_all(bytes)
            .map_err(|error| io::Error::new(error.kind(), format!("writing: {error}")))?;
        if let Some(owner) = options.owner {
            let (uid, gid) = owner.ids();
            fchown(&file, uid, gid).map_err(|errno| {
                io::Error::new(
                    io::Error::from(errno).kind(),
                    format!("giving it to uid {} gid {}: {errno}", owner.uid, owner.gid),
                )
            })?;
        }
        fchmod(&file, Mode::from_bits_truncate(options.mode & 0o7777)).map_err(|errno| {
            io::Error::new(
                io::Error::from(errno).kind(),
                format!("setting mode {:o}: {errno}", options.mode),
            )
        })?;
        if options.sync {
            file.sync_all()
                .map_err(|error| io::Error::new(error.kind(), format!("syncing: {error}")))?;
        }
        std::fs::rename(&temporary, path)
            .map_err(|error| io::Error::new(error.kind(), format!("renaming it: {error}")))
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(io::Error::new(
            error.kind(),
            format!(
                "writing {} (through {}): {error}",
                path.display(),
                temporary.display()
            ),
        ));
    }
    if options.sync {
        let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty());
        File::open(dir.unwrap_or(Path::new(".")))
            .and_then(|dir| dir.sync_all())
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("syncing the directory of {}: {error}", path.display()),
                )
            })?;
    }
    Ok(())
}

/// Whether users other than root, us and `owner` may create entries in `dir` (group- or
/// world-writable, or owned by another user): a name there may have been planted.
fn shared(dir: &Path, owner: Option<Owner>) -> io::Result<bool> {
    let metadata = std::fs::metadata(dir)
        .map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", dir.display())))?;
    let uid = metadata.uid();
    let trusted =
        uid == 0 || uid == Uid::effective().as_raw() || owner.is_some_and(|owner| owner.uid == uid);
    Ok(metadata.mode() & 0o022 != 0 || !trusted)
}

/// Creates the directory `path` (and missing parents) with mode 0700, given to `owner` (see
/// the module for an existing one). The error names the path and says what to do.
pub fn private_dir(path: &Path, owner: Option<Owner>) -> io::Result<()> {
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("creating {}: {error}", parent.display()),
        )
    })?;
    let shared = shared(parent, owner)?;
    let created = match nix::unistd::mkdir(path, Mode::from_bits_truncate(0o700)) {
        Ok(()) => true,
        Err(Errno::EEXIST) => false,
        Err(errno) => return Err(failed("creating", path, errno)),
    };
    let refuse = |why: String| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} exists and is not a private directory of ours: {why}; another user may \
                 have planted it{}: remove it, or choose another directory",
                path.display(),
                if shared {
                    format!(" ({} is writable by others)", parent.display())
                } else {
                    String::new()
                }
            ),
        )
    };
    let fd = match open_dir(AT_FDCWD, path) {
        Ok(fd) => fd,
        Err(Errno::ELOOP | Errno::ENOTDIR) => {
            let link = std::fs::symlink_metadata(path)
                .is_ok_and(|metadata| metadata.file_type().is_symlink());
            return Err(refuse(
                if link {
                    "it is a symbolic link"
                } else {
                    "it is not a directory"
                }
                .into(),
            ));
        }
        Err(errno) => return Err(failed("opening", path, errno)),
    };
    if !created && shared {
        let stat = fstat(&fd).map_err(|e| failed("inspecting", path, e))?;
        let euid = Uid::effective().as_raw();
        let ours = stat.st_uid == euid || owner.is_some_and(|owner| owner.uid == stat.st_uid);
        let mode = stat.st_mode & 0o7777;
        if !ours {
            return Err(refuse(format!("it belongs to uid {}", stat.st_uid)));
        }
        if mode != 0o700 {
            return Err(refuse(format!("its mode is {mode:04o}, not 0700")));
        }
    }
    fchmod(&fd, Mode::from_bits_truncate(0o700))
        .map_err(|e| failed("setting mode 0700 on", path, e))?;
    if let Some(owner) = owner {
        let (uid, gid) = owner.ids();
        fchown(&fd, uid, gid).map_err(|e| failed("changing the owner of", path, e))?;
    }
    Ok(())
}

/// Opens the regular file `path` for reading and writing, creating it with `mode` (close on
/// exec, not truncated), never through a symbolic link; when its directory is writable by
/// others (see [`private_dir`]), an existing file must belong to this user. The error names
/// the path and says what to do (its kind is never `PermissionDenied` for a refusal).
pub fn open_own_file(path: &Path, mode: u32) -> io::Result<File> {
    let refuse = |why: String| {
        io::Error::other(format!(
            "{} {why}; another user may have planted it: remove it",
            path.display()
        ))
    };
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(error) if error.raw_os_error() == Some(libc::ELOOP) => {
            return Err(refuse("is a symbolic link".into()))
        }
        Err(error) => return Err(error),
    };
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(refuse("is not a regular file".into()));
    }
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if metadata.uid() != Uid::effective().as_raw() && shared(parent, None)? {
        return Err(refuse(format!(
            "belongs to uid {} in {}, which others can write to",
            metadata.uid(),
            parent.display()
        )));
    }
    Ok(file)
}
