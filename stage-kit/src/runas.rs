//! Running Postgres binaries as the `postgres` OS user when the tools run as root.
//!
//! `initdb` and `postgres` refuse to run as root. [`PostgresUser::for_current_process`] gives
//! the user to drop to (none when not root), with its supplementary groups already resolved;
//! [`PostgresUser::apply`] makes a `Command` run as that user with those groups, `HOME`, `USER`
//! and `LOGNAME`.
//!
//! Nothing unsafe runs between `fork` and `exec`: the group database is read before the fork
//! (`getgrouplist`), and the child only makes the `setgroups`, `setgid` and `setuid` system
//! calls on values prepared beforehand, without allocating, even on its error paths.
//! (`initgroups` in the child would read `/etc/group` and allocate, which can deadlock in a
//! child forked from a multi-threaded process.)

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
    /// Supplementary group ids (the primary group included), as `getgrouplist` gave them when
    /// the user was looked up.
    pub groups: Vec<u32>,
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
        let groups = supplementary_groups(&user.name, user.gid)?;
        Ok(Some(PostgresUser {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
            groups,
        }))
    }

    /// Makes `command` run as this user, with the supplementary groups resolved when the user
    /// was looked up.
    pub fn apply<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        // Everything the child needs is made here, before the fork.
        let groups: Vec<Gid> = self.groups.iter().copied().map(Gid::from_raw).collect();
        let uid = Uid::from_raw(self.uid);
        let gid = Gid::from_raw(self.gid);
        command
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name);
        // SAFETY: the closure runs in the forked child, where only async-signal-safe functions
        // may be called. It makes three system calls (setgroups, setgid, setuid, through nix's
        // thin wrappers that neither allocate nor lock) on `groups`, `gid` and `uid`, which were
        // made before the fork and are only read; an error becomes an `io::Error` holding just
        // the errno (`from_raw_os_error` does not allocate). It reads no file and takes no lock.
        unsafe {
            command.pre_exec(move || {
                nix::unistd::setgroups(&groups).map_err(raw_error)?;
                nix::unistd::setgid(gid).map_err(raw_error)?;
                nix::unistd::setuid(uid).map_err(raw_error)?;
                Ok(())
            })
        }
    }

    /// Gives `path` and everything below it to this user, never following a symbolic link,
    /// even one swapped in during the walk ([`crate::fsutil::chown_tree`]).
    pub fn chown_recursive(&self, path: &Path) -> io::Result<()> {
        crate::fsutil::chown_tree(path, self.owner()).map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("giving {} to {}: {error}", path.display(), self.name),
            )
        })
    }

    /// The user's ids, as [`crate::fsutil`] takes them.
    pub fn owner(&self) -> crate::fsutil::Owner {
        crate::fsutil::Owner {
            uid: self.uid,
            gid: self.gid,
        }
    }
}

/// The groups `name` (primary group `gid`) belongs to, from the group database: what
/// `initgroups` would set, resolved now rather than in a forked child.
fn supplementary_groups(name: &str, gid: Gid) -> io::Result<Vec<u32>> {
    let c_name = CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the OS user name {name:?} contains a NUL byte"),
        )
    })?;
    let groups = nix::unistd::getgrouplist(&c_name, gid).map_err(|errno| {
        io::Error::new(
            io::Error::from(errno).kind(),
            format!(
                "reading the supplementary groups of the OS user {name:?} (getgrouplist): \
                 {errno}; check the group database (/etc/group, nsswitch.conf)"
            ),
        )
    })?;
    let mut ids: Vec<u32> = Vec::with_capacity(groups.len());
    for group in groups {
        if !ids.contains(&group.as_raw()) {
            ids.push(group.as_raw());
        }
    }
    Ok(ids)
}

/// An `io::Error` carrying only `errno`: making it does not allocate, so it is usable between
/// fork and exec (the parent gets just the errno from the child anyway).
fn raw_error(errno: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(errno as i32)
}

/// Makes `command` run as `user` when one is given.
pub fn apply_user<'a>(command: &'a mut Command, user: Option<&PostgresUser>) -> &'a mut Command {
    match user {
        Some(user) => user.apply(command),
        None => command,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the environment of the helper process that
    /// `groups_are_resolved_before_the_fork` starts.
    const HELPER_ENV: &str = "COMPUTE_SPEC_RUNAS_HELPER";
    /// The helper's report line.
    const HELPER_MARK: &str = "child groups:";

    /// The numbers in `text` (the output of `id -G`), sorted.
    fn sorted_ids(text: &str) -> Vec<u32> {
        let mut ids: Vec<u32> = text
            .split_whitespace()
            .map(|id| {
                id.parse()
                    .unwrap_or_else(|e| panic!("{id:?} in {text:?}: {e}"))
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn stdout_of(command: &mut Command) -> String {
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// The user to drop to, or None (with a note) when these tests cannot run here.
    /// The user to drop to; `None` (a skip, a failure under `CI`) when not root.
    fn postgres_user(test: &str) -> Option<PostgresUser> {
        let user = PostgresUser::for_current_process(None).unwrap();
        if user.is_none() {
            pg_test_support::skip_or_fail(test, "not root: there is no user to drop to");
        }
        user
    }

    #[test]
    fn a_child_gets_exactly_the_groups_of_the_user() {
        let Some(user) = postgres_user("runas::a_child_gets_exactly_the_groups_of_the_user") else {
            return;
        };
        let expected = sorted_ids(&stdout_of(Command::new("id").arg("-G").arg(&user.name)));
        assert!(!expected.is_empty());
        let mut resolved = user.groups.clone();
        resolved.sort_unstable();
        assert_eq!(resolved, expected, "getgrouplist agrees with id -G");

        let mut command = Command::new("sh");
        command.args(["-c", "id -u; id -g; id -G"]);
        user.apply(&mut command);
        let text = stdout_of(&mut command);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text:?}");
        assert_eq!(lines[0], user.uid.to_string());
        assert_eq!(lines[1], user.gid.to_string());
        assert_eq!(sorted_ids(lines[2]), expected);
    }

    /// The group database is read before the fork, never in the child: with `/etc/group`
    /// hidden between `apply` and `spawn` (in a private mount namespace), the child still gets
    /// every group. (`initgroups` in the child would read the hidden, empty file.)
    #[test]
    fn groups_are_resolved_before_the_fork() {
        let test = "runas::groups_are_resolved_before_the_fork";
        let Some(user) = postgres_user(test) else {
            return;
        };
        let probe = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "true"])
            .status();
        if !probe.is_ok_and(|status| status.success()) {
            let why = "`unshare --mount` (root, util-linux) is not available: /etc/group \
                       cannot be hidden";
            pg_test_support::skip_or_fail(test, why);
            return;
        }
        let expected = sorted_ids(&stdout_of(Command::new("id").arg("-G").arg(&user.name)));
        let text = stdout_of(
            Command::new("unshare")
                .args(["--mount", "--propagation", "private"])
                .arg(std::env::current_exe().unwrap())
                .args([
                    "runas::tests::hidden_group_database_helper",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(HELPER_ENV, "1"),
        );
        let reported = text
            .lines()
            .find_map(|line| line.split_once(HELPER_MARK).map(|(_, groups)| groups))
            .unwrap_or_else(|| panic!("the helper reported nothing:\n{text}"));
        assert_eq!(sorted_ids(reported), expected);
    }

    /// Run by `groups_are_resolved_before_the_fork` inside a private mount namespace: prepares
    /// the command, hides `/etc/group`, then spawns it.
    #[test]
    #[ignore = "a helper process of groups_are_resolved_before_the_fork"]
    fn hidden_group_database_helper() {
        if std::env::var_os(HELPER_ENV).is_none() {
            return;
        }
        let user = PostgresUser::for_current_process(None).unwrap().unwrap();
        let mut command = Command::new("id");
        command.arg("-G");
        user.apply(&mut command);
        // Only this process's private mount namespace sees the bind mount.
        let hidden = Command::new("mount")
            .args(["--bind", "/dev/null", "/etc/group"])
            .status()
            .unwrap();
        assert!(hidden.success(), "cannot hide /etc/group");
        let groups = stdout_of(&mut command);
        println!("{HELPER_MARK} {}", groups.trim());
    }
}
