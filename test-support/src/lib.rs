//! Throwaway real PostgreSQL servers for the tests of the compute-tools workspace.
//!
//! Every test that needs a database calls [`TestPostgres::start`] (or configures one with
//! [`TestPostgres::builder`]) and gets a private, running postmaster listening on a Unix
//! socket in its own temporary directory (optionally also on `127.0.0.1`). Tests can run in
//! parallel: every instance has its own data directory, socket directory and port number.
//!
//! # The template-cluster trick
//!
//! `initdb` takes about half a second even on tmpfs, so it runs at most once per
//! (PostgreSQL version, bootstrap superuser): the first test to need a cluster builds a
//! *template* under `/dev/shm/compute-tools-tests/template-…/` while holding an exclusive
//! file lock on a `.lock` file beside it. The template is built under a temporary name and
//! renamed into place only when `initdb` succeeded, so a half-made template is never used.
//! Every [`TestPostgres`] then copies the template (a tmpfs copy takes well under 100 ms),
//! appends its own settings to `postgresql.conf` and starts `postgres -D` directly, polling
//! `postmaster.pid` for the `ready` status every 5 ms.
//!
//! # Running as root
//!
//! `initdb` and `postgres` refuse to run as root. When the test process runs as root, the
//! directories are chowned to the `postgres` OS user and the server binaries are spawned
//! with that user's uid/gid (see [`as_postgres_user`]). Otherwise everything runs as the
//! current user.
//!
//! # Cleanup guarantees
//!
//! * Dropping a [`TestPostgres`] stops its postmaster with an immediate shutdown (`SIGQUIT`),
//!   waits up to about 5 s for it to exit, escalates to `SIGKILL` if needed, and then removes
//!   the whole temporary directory. `Drop` also runs while a panicking test unwinds, so a
//!   failing test does not leave a server behind.
//! * A test process killed from outside (a timeout, `SIGKILL`) cannot run `Drop`. For that
//!   case [`kill_leftover_postmasters`] (also available as the `pg-test-cleanup` binary)
//!   finds every `postmaster.pid` under the test root and kills the live postmasters.
//!   Servers on `/dev/shm` use `dynamic_shared_memory_type = mmap`, so even a killed server
//!   leaves no `/dev/shm/PostgreSQL.*` segments behind: everything is in its directory.
//! * Templates stay in the test root between runs (their names include the server version
//!   and a format number); `pg-test-cleanup --purge` removes them.
//!
//! # The rest of the test kit
//!
//! * [`stage_run`]: run a stage binary on a document ([`run_stage`], [`run_stage_within`])
//!   and read the one result type, [`StageRun`].
//! * [`probe`]: poll for a condition with a deadline ([`wait_for`], [`wait_until`],
//!   [`probe::eventually`], [`probe::settle`], a compute's `/status`, ports, paths, PostgreSQL
//!   accepting connections, processes ending) instead of sleeping.
//! * [`fake_http`]: the HTTP stand-in ([`fake_http::FakeHttp`]: a control plane, the endpoint
//!   storage, the remote extension storage; late, stalled or cut answers).
//! * [`crash`]: a process tree killed at one instant ([`crash::kill_tree`]), a small tmpfs
//!   to fill and grow ([`crash::SmallTmpfs`]).
//! * [`rss`]: a program run to its end with its peak resident memory ([`rss::run_measured`]),
//!   or a running process's high-water mark ([`rss::peak_rss_kib`]).
//! * [`workspace_binary`]: the path of another package's binary, built by cargo if needed.
//! * [`fake_pg`]: a scripted fake libpq server ([`FakeBackend`]) standing in for safekeepers,
//!   pageservers and silent primaries.
//! * [`netns`]: network namespaces joined by veth pairs, packets dropped by nftables rules
//!   inside them, and a forwarding [`netns::Proxy`] that slows, stalls, resets or cuts
//!   connections — for tests of network faults between real hosts.
//! * [`otlp`]: a real OTLP/HTTP trace receiver (the official `opentelemetry-proto` classes)
//!   and a collector that never answers.
//!
//! # Environment
//!
//! * `PG_BIN_DIR` selects the directory holding `postgres`, `initdb` and `psql`; else
//!   `PG_TEST_MAJOR=<major>` selects that major's (Debian's, or the cache
//!   `scripts/install-pg-majors.sh` fills, see [`majors`]); by default the highest
//!   `/usr/lib/postgresql/<version>/bin` is used.
//! * `COMPUTE_TOOLS_PG_CACHE`: the cache of other majors' builds (default
//!   `/var/cache/compute-tools/pg`).

#![warn(missing_docs)]

mod bins;
mod cleanup;
mod conninfo;
pub mod crash;
pub mod fake_http;
pub mod fake_pg;
mod fsutil;
mod install;
pub mod majors;
pub mod netns;
pub mod otlp;
pub mod probe;
pub mod rss;
mod server;
mod skip;
pub mod stage_run;
mod standby;
mod template;
pub mod tls;

use std::collections::HashSet;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

pub use bins::workspace_binary;
pub use cleanup::kill_leftover_postmasters;
pub use fake_pg::{Answer, FakeBackend, Responder, Response, Script, Seen, Silence};
pub use majors::{installed_majors, major_bin_dir, pg_major, require_major};
pub use probe::{process_alive, wait_for, wait_until};
pub use server::{TestPostgres, TestPostgresBuilder};
pub use skip::skip_or_fail;
pub use stage_run::{run_stage, run_stage_measured, run_stage_within, StageRun};

/// Directory under which all test directories and templates live when `/dev/shm` exists.
const SHM_ROOT: &str = "/dev/shm/compute-tools-tests";

/// Longest Unix socket path PostgreSQL accepts (`sun_path` is 108 bytes including the NUL).
pub(crate) const MAX_SOCKET_PATH: usize = 107;

/// The root directory for test directories: `/dev/shm/compute-tools-tests`, or
/// `<temp dir>/compute-tools-tests` when `/dev/shm` does not exist.
///
/// The directory is created on first use (mode `1777`, like `/tmp`, so that both root and
/// the `postgres` user can work in it).
pub fn test_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = if Path::new("/dev/shm").is_dir() {
            PathBuf::from(SHM_ROOT)
        } else {
            std::env::temp_dir().join("compute-tools-tests")
        };
        if !root.is_dir() {
            std::fs::create_dir_all(&root)
                .unwrap_or_else(|e| panic!("cannot create test root {}: {e}", root.display()));
            // Best effort: another user may have created it concurrently.
            let _ = std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o1777));
        }
        root
    })
    .clone()
}

/// The directory holding the PostgreSQL server binaries (`postgres`, `initdb`, …).
///
/// Uses `$PG_BIN_DIR` when set, else the major `$PG_TEST_MAJOR` names
/// ([`majors::major_bin_dir`]), otherwise the highest-numbered
/// `/usr/lib/postgresql/<version>/bin` that contains a `postgres` binary.
///
/// # Panics
///
/// Panics with an explanatory message when no such directory exists (or the major
/// `PG_TEST_MAJOR` names is not installed).
pub fn pg_bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(find_pg_bin_dir).clone()
}

fn find_pg_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("postgres").is_file(),
            "PG_BIN_DIR={} does not contain a `postgres` binary",
            dir.display()
        );
        return dir;
    }
    if let Some(dir) = majors::test_major_bin_dir() {
        return dir;
    }
    highest_debian_bin_dir().unwrap_or_else(|| {
        panic!(
            "no PostgreSQL installation found: no /usr/lib/postgresql/*/bin/postgres; \
             install PostgreSQL or set PG_BIN_DIR to the directory holding `postgres`"
        )
    })
}

/// The highest-numbered `/usr/lib/postgresql/<version>/bin` holding a `postgres`.
pub(crate) fn highest_debian_bin_dir() -> Option<PathBuf> {
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let bin = entry.path().join("bin");
            if !bin.join("postgres").is_file() {
                continue;
            }
            // Compare versions numerically ("9.6" < "15" < "16").
            let key: Vec<u32> = entry
                .file_name()
                .to_string_lossy()
                .split('.')
                .map(|part| part.parse().unwrap_or(0))
                .collect();
            if best.as_ref().is_none_or(|(k, _)| key > *k) {
                best = Some((key, bin));
            }
        }
    }
    best.map(|(_, dir)| dir)
}

/// The path of the PostgreSQL program `name` (e.g. `"psql"`) for [`pg_bin_dir`]'s server:
/// its own, or a client program from Debian's installation when the server's directory has
/// none (see [`majors::client_program`]).
pub fn pg_bin(name: &str) -> PathBuf {
    majors::client_program(&pg_bin_dir(), name)
}

/// The `postgres` OS user's `(uid, gid, home)` when the current process runs as root, and
/// `None` otherwise (then the servers simply run as the current user).
///
/// # Panics
///
/// Panics when running as root and there is no `postgres` user.
pub fn postgres_os_user() -> Option<(u32, u32, PathBuf)> {
    static USER: OnceLock<Option<(u32, u32, PathBuf)>> = OnceLock::new();
    USER.get_or_init(|| {
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        let user = nix::unistd::User::from_name("postgres")
            .expect("cannot read the user database to look up the `postgres` user")
            .expect(
                "running as root but there is no `postgres` OS user; PostgreSQL refuses to \
                 run as root, so create that user (it comes with the postgresql package)",
            );
        Some((user.uid.as_raw(), user.gid.as_raw(), user.dir))
    })
    .clone()
}

/// Makes `cmd` run as the `postgres` OS user when the current process is root: sets its
/// uid/gid, `HOME`, `USER` and `LOGNAME`, and a working directory that user can enter (its
/// home if it exists, else `/`; call `current_dir` afterwards to choose another). Does
/// nothing when not running as root.
pub fn as_postgres_user(cmd: &mut Command) -> &mut Command {
    if let Some((uid, gid, home)) = postgres_os_user() {
        let cwd = if home.is_dir() {
            home.clone()
        } else {
            PathBuf::from("/")
        };
        cmd.uid(uid)
            .gid(gid)
            .env("HOME", &home)
            .env("USER", "postgres")
            .env("LOGNAME", "postgres")
            .current_dir(cwd);
    }
    cmd
}

/// Recursively changes the owner of `path` (not following symlinks) to the `postgres` OS
/// user when running as root; does nothing otherwise.
///
/// # Panics
///
/// Panics with the failing path when a chown fails.
pub fn chown_to_postgres(path: &Path) {
    if let Some((uid, gid, _)) = postgres_os_user() {
        fsutil::chown_recursive(path, uid, gid);
    }
}

/// Runs `program` with `args`, writes `stdin` to it, closes it, and returns the whole output
/// (the stage binaries' stdin/stdout contract, in one call).
pub fn run_with_stdin(
    program: impl AsRef<std::ffi::OsStr>,
    args: &[&str],
    stdin: &str,
) -> std::process::Output {
    use std::io::Write;
    let program = program.as_ref();
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", program.to_string_lossy()));
    let mut input = child.stdin.take().expect("stdin is piped");
    // A program that exits without reading its input closes the pipe: not a test failure.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {}: {e}", program.to_string_lossy()))
}

/// A free TCP port on `127.0.0.1`: binds port 0, reads the port the kernel chose and closes
/// the socket again. Ports are never handed out twice within one process.
pub fn free_tcp_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..1000 {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("cannot bind a TCP socket on 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("cannot read the local address of a bound TCP socket")
            .port();
        drop(listener);
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if guard.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("could not find a TCP port that was not handed out already");
}

/// A fresh temporary directory under [`test_root`] (normally
/// `/dev/shm/compute-tools-tests/`), mode `0700`, owned by the `postgres` OS user when
/// running as root, and removed with everything in it on drop.
#[derive(Debug)]
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// Creates a new directory named `<prefix><random suffix>` under [`test_root`].
    ///
    /// Keep `prefix` short: the server's socket `<dir>/.s.PGSQL.<port>` must stay under 107
    /// bytes.
    ///
    /// # Panics
    ///
    /// Panics when the directory cannot be created or chowned.
    pub fn new(prefix: &str) -> TestDir {
        let root = test_root();
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .rand_bytes(6)
            .tempdir_in(&root)
            .unwrap_or_else(|e| panic!("cannot create a temp dir in {}: {e}", root.display()));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", dir.path().display()));
        chown_to_postgres(dir.path());
        TestDir { dir }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}
