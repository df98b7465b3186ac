//! One owner per PGDATA: an exclusive `flock` on a lock file beside the data directory.
//!
//! **The rule.** Whatever touches PGDATA (compute-ctl for its whole life, and
//! `pg-basebackup-fetch` or `pg-supervise` when run by hand) first holds the lock of
//! `<pgdata>`[`LOCK_SUFFIX`] — beside PGDATA, never inside it (PGDATA is wiped), its parent
//! created when missing, the file itself never removed (removing a lock file lets two
//! processes lock two different files); where that directory cannot be written (PGDATA is
//! the mount point under a read-only root), a file in the temporary directory named by a hash
//! of PGDATA's absolute path ([`fallback_path`]). The lock belongs to the open file description, so
//! every process that inherits the descriptor keeps it: an orphaned `initdb` or postmaster of
//! a killed owner still holds it, and the next start waits for it instead of wiping under it.
//! Nothing ever unlocks explicitly (`LOCK_UN` would release it for the children too); the
//! lock goes when the last process holding the descriptor exits.
//!
//! **Waiting.** A busy lock is polled until a deadline (`--pgdata-lock-timeout`, default
//! [`DEFAULT_TIMEOUT`]): an owner that is exiting lets go in that time. Then the start fails
//! naming the owner recorded in the file (pid, program, start time, whether it still runs)
//! and, when it no longer runs, the processes that keep the file open.
//!
//! **Handing it on.** The descriptor is close-on-exec. compute-ctl hands it only to the
//! stages it runs ([`PgdataLock::hand_to`]: the variable [`LOCK_FD_ENV`] names the
//! descriptor, which stays open across that child's `exec` alone); sidecars never get it. A
//! stage that finds the variable checks that the descriptor is the lock file of its own
//! PGDATA and that it holds the lock ([`acquire`]), and never opens and re-locks the file
//! (that would wait on its own parent). A stage keeps the descriptor open across its own
//! children's `exec` ([`PgdataLock::pass_to_children`]), so `initdb` and the postmaster hold
//! it too.

use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// The environment variable naming the inherited lock descriptor of a stage.
pub const LOCK_FD_ENV: &str = "COMPUTE_TOOLS_PGDATA_LOCK_FD";

/// The suffix of the lock file: `<pgdata>.compute-tools.lock`.
pub const LOCK_SUFFIX: &str = ".compute-tools.lock";

/// The default of `--pgdata-lock-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a busy lock is tried again.
const POLL: Duration = Duration::from_millis(50);

/// How many processes keeping a lock file open a refusal names.
const LISTED: usize = 5;

/// Why the lock could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else owns PGDATA.
    #[error("{0}")]
    Busy(String),
    /// The path cannot have a lock file, or the inherited descriptor is not the right one.
    #[error("{0}")]
    Usage(String),
    /// A file operation failed.
    #[error("{0}")]
    Io(String),
}

/// The held lock of one PGDATA. Dropping it closes this process's descriptor; the lock is
/// released once no process holds the descriptor any more.
#[derive(Debug)]
pub struct PgdataLock {
    file: File,
    path: PathBuf,
    inherited: bool,
}

/// `<pgdata>.compute-tools.lock`; an error for a path without a final name (`/`, `..`).
pub fn lock_path(pgdata: &Path) -> Result<PathBuf, LockError> {
    let name = match pgdata.components().next_back() {
        Some(std::path::Component::Normal(name)) => name,
        _ => {
            return Err(LockError::Usage(format!(
                "PGDATA {} has no directory name of its own: give a path such as \
                 /var/db/postgres/compute",
                pgdata.display()
            )))
        }
    };
    let mut file = name.to_os_string();
    file.push(LOCK_SUFFIX);
    Ok(pgdata.with_file_name(file))
}

/// The lock of `pgdata` for this process: the descriptor a parent handed on through
/// [`LOCK_FD_ENV`] (checked, never re-locked), else taken here, waiting up to `timeout` for
/// an owner that is exiting. `program` is recorded in the file for those who wait.
pub fn acquire(pgdata: &Path, program: &str, timeout: Duration) -> Result<PgdataLock, LockError> {
    let path = lock_path(pgdata)?;
    match std::env::var_os(LOCK_FD_ENV) {
        Some(value) => inherited(pgdata, &path, &value.to_string_lossy()),
        None => take(pgdata, &path, program, timeout),
    }
}

/// Opens the lock file and takes the lock, polling until `timeout`.
fn take(
    pgdata: &Path,
    path: &Path,
    program: &str,
    timeout: Duration,
) -> Result<PgdataLock, LockError> {
    let (mut file, path) = open_lock_file(pgdata, path)?;
    let path = path.as_path();
    let deadline = crate::deadline::after(timeout);
    let mut announced = false;
    loop {
        match try_lock(&file) {
            Ok(true) => break,
            Ok(false) if Instant::now() < deadline => {
                if !announced {
                    tracing::info!(
                        "PGDATA {} is in use ({}); waiting up to {} for it",
                        pgdata.display(),
                        describe_holder(&mut file, path),
                        humantime::format_duration(timeout)
                    );
                    announced = true;
                }
                std::thread::sleep(POLL);
            }
            Ok(false) => {
                return Err(LockError::Busy(format!(
                    "PGDATA {} is in use by another process: {}; waited {} \
                     (--pgdata-lock-timeout). Stop that compute (or stage) first, or give \
                     each compute its own -D",
                    pgdata.display(),
                    describe_holder(&mut file, path),
                    humantime::format_duration(timeout)
                )))
            }
            Err(error) => {
                return Err(LockError::Io(format!(
                    "locking {}: {error}",
                    path.display()
                )))
            }
        }
    }
    record_holder(&mut file, program)
        .map_err(|error| LockError::Io(format!("writing {}: {error}", path.display())))?;
    Ok(PgdataLock {
        file,
        path: path.to_path_buf(),
        inherited: false,
    })
}

/// Opens (creating) the lock file: the sibling `path`, or, when its directory cannot be
/// written (a read-only root file system with PGDATA as the mount point), [`fallback_path`].
fn open_lock_file(pgdata: &Path, path: &Path) -> Result<(File, PathBuf), LockError> {
    let open = |path: &Path| -> io::Result<File> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        // Close-on-exec: only `hand_to` and `pass_to_children` let it through. Never through
        // a link (the fallback is in /tmp): the holder's text is written into it.
        crate::fsutil::open_own_file(path, 0o644)
    };
    let failed = |path: &Path, error: io::Error| {
        LockError::Io(format!(
            "opening the lock file {} of PGDATA {}: {error}",
            path.display(),
            pgdata.display()
        ))
    };
    match open(path) {
        Ok(file) => Ok((file, path.to_path_buf())),
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied
            ) =>
        {
            let fallback = fallback_path(pgdata)?;
            tracing::warn!(
                "cannot create {} ({error}); locking PGDATA through {} instead",
                path.display(),
                fallback.display()
            );
            let file = open(&fallback).map_err(|error| failed(&fallback, error))?;
            Ok((file, fallback))
        }
        Err(error) => Err(failed(path, error)),
    }
}

/// The lock file used when the sibling cannot be created: in the temporary directory, named
/// by a hash of PGDATA's absolute path (`compute-tools-pgdata-<hash>.lock`).
pub fn fallback_path(pgdata: &Path) -> Result<PathBuf, LockError> {
    use std::os::unix::ffi::OsStrExt;
    let absolute = std::path::absolute(pgdata).map_err(|error| {
        LockError::Io(format!("resolving PGDATA {}: {error}", pgdata.display()))
    })?;
    let hash = absolute
        .as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        });
    Ok(std::env::temp_dir().join(format!("compute-tools-pgdata-{hash:016x}.lock")))
}

/// The descriptor named by [`LOCK_FD_ENV`]: it must be the lock file of `pgdata` and hold
/// the lock.
fn inherited(pgdata: &Path, path: &Path, value: &str) -> Result<PgdataLock, LockError> {
    let wrong = |why: String| {
        LockError::Usage(format!(
            "{LOCK_FD_ENV}={value:?} {why}; it is set by compute-ctl for its stages only: unset \
             it to run a stage by hand"
        ))
    };
    let fd: RawFd = value
        .trim()
        .parse()
        .ok()
        .filter(|fd| *fd >= 0)
        .ok_or_else(|| wrong("is not a file descriptor number".to_string()))?;
    // SAFETY: F_GETFD reads the descriptor's flags; no memory is passed.
    if unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } == -1 {
        let error = io::Error::last_os_error();
        return Err(wrong(format!("is not an open descriptor ({error})")));
    }
    // SAFETY: `fd` is open (checked just above) and stays open for this borrow: nothing in
    // this process closes it before the `File` below takes it over.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let fd_stat = nix::sys::stat::fstat(borrowed)
        .map_err(|errno| wrong(format!("cannot be inspected ({errno})")))?;
    // The sibling, or the fallback when the sibling could not be created.
    let path = &match fs::metadata(path) {
        Ok(_) => path.to_path_buf(),
        Err(_) => fallback_path(pgdata)?,
    };
    let path_stat = fs::metadata(path)
        .map_err(|error| wrong(format!("cannot be checked: {} ({error})", path.display())))?;
    if fd_stat.st_dev as u64 != path_stat.dev() || fd_stat.st_ino as u64 != path_stat.ino() {
        return Err(wrong(format!(
            "is not the lock file {} of PGDATA {}",
            path.display(),
            pgdata.display()
        )));
    }
    // SAFETY: `fd` is an open descriptor (fstat succeeded) of the lock file, inherited across
    // exec for this purpose; nothing else in this process owns or closes it.
    let mut file = unsafe { File::from_raw_fd(fd) };
    match try_lock(&file) {
        // Our parent's open file description: the lock is already ours (or free, and now ours).
        Ok(true) => Ok(PgdataLock {
            file,
            path: path.to_path_buf(),
            inherited: true,
        }),
        Ok(false) => {
            let holder = describe_holder(&mut file, path);
            // Not ours to close: it is another process's lock.
            std::mem::forget(file);
            Err(wrong(format!(
                "does not hold the lock of PGDATA {} ({holder})",
                pgdata.display()
            )))
        }
        Err(error) => Err(LockError::Io(format!(
            "locking {}: {error}",
            path.display()
        ))),
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: true when held (also when this open file description held it
/// already), false when another one holds it.
fn try_lock(file: &File) -> io::Result<bool> {
    // SAFETY: flock on a descriptor we keep open for the call; no memory is passed.
    let done =
        unsafe { nix::libc::flock(file.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) };
    if done == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(nix::libc::EWOULDBLOCK) => Ok(false),
        Some(nix::libc::EINTR) => Ok(false),
        _ => Err(error),
    }
}

/// Replaces the file's text with this process: pid, program, start time, and the kernel's
/// start time of the pid (to tell it from a later process reusing the number).
fn record_holder(file: &mut File, program: &str) -> io::Result<()> {
    let pid = std::process::id();
    let started = humantime::format_rfc3339_seconds(SystemTime::now());
    let ticks = start_ticks(pid).unwrap_or_default();
    let text = format!("pid {pid}\nprogram {program}\nstarted {started}\nticks {ticks}\n");
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(text.as_bytes())?;
    file.flush()
}

/// The start time of `pid` in clock ticks since boot (`/proc/<pid>/stat`, field 22).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// The holder recorded in the lock file, and whether it still runs; when it does not (or
/// nothing is recorded), the processes keeping the file open.
fn describe_holder(file: &mut File, path: &Path) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map(str::trim)
    };
    let pid = field("pid").and_then(|pid| pid.parse::<u32>().ok());
    let mut description = match pid {
        Some(pid) => {
            let alive = start_ticks(pid).is_some_and(|ticks| {
                field("ticks").and_then(|t| t.parse::<u64>().ok()) == Some(ticks)
            });
            format!(
                "lock file {} taken by pid {pid} ({}, started {}), which {}",
                path.display(),
                field("program").unwrap_or("unknown program"),
                field("started").unwrap_or("at an unknown time"),
                if alive {
                    "is still running"
                } else {
                    "is no longer running"
                }
            )
        }
        None => format!("lock file {} held, no owner recorded", path.display()),
    };
    let keepers = keepers(file);
    if !keepers.is_empty() {
        description.push_str(&format!(
            "; processes holding it open: {}",
            keepers.join(", ")
        ));
    }
    description
}

/// Other processes with the same file open: `pid (name)`, at most [`LISTED`].
fn keepers(file: &File) -> Vec<String> {
    let Ok(own) = file.metadata() else {
        return Vec::new();
    };
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    let Ok(processes) = fs::read_dir("/proc") else {
        return found;
    };
    for process in processes.flatten() {
        let name = process.file_name().to_string_lossy().into_owned();
        if name == me || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        let open = fds.flatten().any(|fd| {
            fs::metadata(fd.path()).is_ok_and(|m| m.dev() == own.dev() && m.ino() == own.ino())
        });
        if open {
            let comm = fs::read_to_string(process.path().join("comm")).unwrap_or_default();
            found.push(format!("{name} ({})", comm.trim()));
            if found.len() == LISTED {
                break;
            }
        }
    }
    found
}

/// For a stage that touches PGDATA: the lock [`acquire`]d (inherited from compute-ctl, or
/// taken when run by hand), kept open across the `exec` of the stage's own children; a
/// failure is the stage's error (busy: `refused`, exit 1; a wrong inherited descriptor:
/// `usage`, exit 2).
pub fn for_stage(
    stage: &str,
    pgdata: &Path,
    timeout: Duration,
) -> Result<PgdataLock, compute_spec::error::StageError> {
    use compute_spec::error::{ErrorKind, StageError};
    let lock = acquire(pgdata, stage, timeout).map_err(|error| {
        let kind = match error {
            LockError::Busy(_) => ErrorKind::Refused,
            LockError::Usage(_) => ErrorKind::Usage,
            LockError::Io(_) => ErrorKind::Io,
        };
        StageError::new(stage, kind, error.to_string())
    })?;
    lock.pass_to_children().map_err(|error| {
        StageError::new(
            stage,
            ErrorKind::Io,
            format!(
                "keeping {} open for the children: {error}",
                lock.path().display()
            ),
        )
    })?;
    tracing::debug!(
        lock = %lock.path().display(),
        inherited = lock.is_inherited(),
        "PGDATA lock held"
    );
    Ok(lock)
}

impl PgdataLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the descriptor came from the parent (a stage run by compute-ctl).
    pub fn is_inherited(&self) -> bool {
        self.inherited
    }

    /// The descriptor.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Keeps the descriptor open across the `exec` of every child this process starts from
    /// now on (a stage's `initdb`, `postgres`): an orphaned child keeps PGDATA locked.
    pub fn pass_to_children(&self) -> io::Result<()> {
        nix::fcntl::fcntl(
            &self.file,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map(drop)
        .map_err(io::Error::from)
    }

    /// Hands the lock to the child `command` starts (a stage): the descriptor stays open
    /// across that child's `exec` alone, and [`LOCK_FD_ENV`] names it.
    pub fn hand_to(&self, command: &mut Command) {
        let fd = self.fd();
        command.env(LOCK_FD_ENV, fd.to_string());
        // SAFETY: the closure runs in the forked child before exec and makes one fcntl system
        // call (async-signal-safe) on a descriptor number copied in; it allocates nothing and
        // takes no lock.
        unsafe {
            command.pre_exec(move || {
                if nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_is_a_sibling_of_pgdata() {
        assert_eq!(
            lock_path(Path::new("/var/db/pg/compute")).unwrap(),
            Path::new("/var/db/pg/compute.compute-tools.lock")
        );
        assert_eq!(
            lock_path(Path::new("data/")).unwrap(),
            Path::new("data.compute-tools.lock")
        );
        for bad in ["/", "..", "a/.."] {
            assert!(
                matches!(lock_path(Path::new(bad)), Err(LockError::Usage(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_second_owner_waits_then_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let pgdata = dir.path().join("missing/parent/pgdata");
        let first = take(
            &pgdata,
            &lock_path(&pgdata).unwrap(),
            "first",
            Duration::ZERO,
        )
        .unwrap();
        assert!(!first.is_inherited());
        let started = Instant::now();
        let error = take(
            &pgdata,
            &lock_path(&pgdata).unwrap(),
            "second",
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        let message = error.to_string();
        assert!(matches!(error, LockError::Busy(_)), "{message}");
        let me = format!("pid {} (first, started ", std::process::id());
        assert!(message.contains(&me), "{message}");
        assert!(message.contains("is still running"), "{message}");
        assert!(!pgdata.exists(), "PGDATA itself is not created");
        drop(first);
        take(
            &pgdata,
            &lock_path(&pgdata).unwrap(),
            "third",
            Duration::ZERO,
        )
        .unwrap();
    }

    #[test]
    fn a_read_only_parent_falls_back_to_the_temporary_directory() {
        let dir = tempfile::tempdir().unwrap();
        let Some(fs) = pg_test_support::crash::SmallTmpfs::mount(&dir.path().join("ro"), "1m")
        else {
            return;
        };
        let pgdata = fs.path().join("pgdata");
        fs::create_dir(&pgdata).unwrap();
        let remounted = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(fs.path())
            .status()
            .unwrap();
        assert!(remounted.success());
        let sibling = lock_path(&pgdata).unwrap();
        let first = take(&pgdata, &sibling, "first", Duration::ZERO).unwrap();
        let fallback = fallback_path(&pgdata).unwrap();
        assert_eq!(first.path(), fallback);
        let error = take(&pgdata, &sibling, "second", Duration::from_millis(100)).unwrap_err();
        assert!(matches!(error, LockError::Busy(_)), "{error}");
        // A stage handed the descriptor finds the same file.
        let duplicate = nix::unistd::dup(&first.file).unwrap();
        let raw = duplicate.as_raw_fd();
        std::mem::forget(duplicate);
        inherited(&pgdata, &sibling, &raw.to_string()).unwrap();
        drop(first);
        fs::remove_file(fallback).unwrap();
    }

    #[test]
    fn an_inherited_descriptor_must_be_this_pgdata_lock() {
        let dir = tempfile::tempdir().unwrap();
        let pgdata = dir.path().join("pgdata");
        let path = lock_path(&pgdata).unwrap();
        let held = take(&pgdata, &path, "parent", Duration::ZERO).unwrap();
        // The same open file description: accepted, without waiting.
        let duplicate = nix::unistd::dup(&held.file).unwrap();
        let raw = duplicate.as_raw_fd();
        std::mem::forget(duplicate);
        let got = inherited(&pgdata, &path, &raw.to_string()).unwrap();
        assert!(got.is_inherited());
        drop(got);
        // Another PGDATA's lock file is refused.
        let other = dir.path().join("other");
        let error = inherited(&other, &lock_path(&other).unwrap(), &raw.to_string());
        assert!(error.is_err());
        // A separate open of the right file does not hold the lock.
        let separate = File::open(&path).unwrap();
        let raw = separate.as_raw_fd();
        let message = inherited(&pgdata, &path, &raw.to_string())
            .unwrap_err()
            .to_string();
        assert!(message.contains("does not hold the lock"), "{message}");
        for junk in ["x", "-1", "99999"] {
            assert!(matches!(
                inherited(&pgdata, &path, junk),
                Err(LockError::Usage(_))
            ));
        }
    }
}
