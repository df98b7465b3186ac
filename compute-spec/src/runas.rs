//! Running Postgres binaries as the `postgres` OS user when the tools run as root.
//!
//! `initdb` and `postgres` refuse to run as root. [`PostgresUser::for_current_process`] gives
//! the user to drop to (none when not root); [`PostgresUser::apply`] makes a `Command` run as
//! that user with its supplementary groups, `HOME`, `USER` and `LOGNAME`.

use std::ffi::CString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{Gid, Uid, User};

/// The default OS user Postgres runs as.
pub const DEFAULT_OS_USER: &str = "postgres";

/// An OS user to run Postgres as.
#[derive(Clone, Debug)]
pub struct PostgresUser {
    /// User name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
}

impl PostgresUser {
    /// `Some(user)` when this process is root (Postgres must not run as root), `None`
    /// otherwise (run as ourselves). Fails when root and the user does not exist.
    pub fn for_current_process(name: Option<&str>) -> io::Result<Option<PostgresUser>> {
        if !Uid::effective().is_root() {
            return Ok(None);
        }
        let name = name.unwrap_or(DEFAULT_OS_USER);
        let user = User::from_name(name)
            .map_err(io::Error::from)?
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "running as root, and the OS user {name:?} to run Postgres as does not \
                         exist: create it (e.g. install the postgresql packages) or run as a \
                         non-root user"
                    ),
                )
            })?;
        Ok(Some(PostgresUser {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
        }))
    }

    /// Makes `command` run as this user, keeping its supplementary groups.
    pub fn apply<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        let name = CString::new(self.name.clone()).unwrap_or_default();
        let uid = Uid::from_raw(self.uid);
        let gid = Gid::from_raw(self.gid);
        command
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name);
        // SAFETY: between fork and exec we only call async-signal-safe setgroups/setgid/setuid
        // wrappers on values prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                nix::unistd::initgroups(&name, gid).map_err(io::Error::from)?;
                nix::unistd::setgid(gid).map_err(io::Error::from)?;
                nix::unistd::setuid(uid).map_err(io::Error::from)?;
                Ok(())
            })
        }
    }

    /// Gives `path` and everything below it to this user (symlinks are not followed).
    pub fn chown_recursive(&self, path: &Path) -> io::Result<()> {
        let uid = Some(Uid::from_raw(self.uid));
        let gid = Some(Gid::from_raw(self.gid));
        let chown = |path: &Path| {
            nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                path,
                uid,
                gid,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|errno| {
                io::Error::new(
                    io::Error::from(errno).kind(),
                    format!("chown {} to {}: {errno}", path.display(), self.name),
                )
            })
        };
        chown(path)?;
        let metadata = std::fs::symlink_metadata(path)?;
        if metadata.is_dir() {
            for entry in std::fs::read_dir(path)? {
                self.chown_recursive(&entry?.path())?;
            }
        }
        Ok(())
    }
}

/// Makes `command` run as `user` when one is given.
pub fn apply_user<'a>(command: &'a mut Command, user: Option<&PostgresUser>) -> &'a mut Command {
    match user {
        Some(user) => user.apply(command),
        None => command,
    }
}
