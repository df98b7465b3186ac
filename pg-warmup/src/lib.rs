//! pg-warmup: upstream's "prewarm VM memory" for a pooled compute that starts without a spec.
//! A throwaway cluster beside PGDATA (`<pgdata>.warmup`) is made by `initdb`, started with
//! large `shared_buffers` (65,536 pages, 512 MiB) until `postmaster.pid` says `ready`, then
//! stopped with SIGQUIT and removed: the hypervisor has then handed the VM its memory, and
//! the binaries are in the page cache, so the real start after `/configure` is faster.
//!
//! Differences from upstream, each for safety: the throwaway server listens on no TCP port
//! (upstream's 51055 could clash, and nobody may connect anyway), only on a socket in a
//! private `0700` directory of its own (Postgres needs one socket);
//! `neon` is preloaded only when its library is installed (a vanilla Postgres would refuse to
//! start); every step has a deadline and the server's process group is killed past it; the
//! directory is removed only when it carries our marker ([`MARKER`]) — a `<pgdata>.warmup`
//! someone else made is refused, never deleted; and a failure is an error for the caller to
//! log (compute-ctl carries on: warming is an optimisation), not a failed start.
//!
//! [`read_ahead`] is the other half of a pooled start's warm-up: the programs a start will
//! run, read into the page cache in the background.
//!
//! Invariants: nothing outside `<pgdata>.warmup` is written; the directory is gone and no
//! process of the throwaway server is left when [`warm_up`] returns, whatever happened.
//! Tests: `tests/it/main.rs` (a real PostgreSQL, a foreign directory, a server that never
//! becomes ready).
#![warn(missing_docs)]

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::Serialize;
use stage_kit::child::{self, Pidfd};
use stage_kit::runas::{apply_user, PostgresUser};

pub mod read_ahead;

/// The file that makes a `<pgdata>.warmup` directory ours (removable).
pub const MARKER: &str = "compute-tools.warmup";

/// `shared_buffers` of the throwaway server, in 8 KiB pages (upstream's value).
pub const SHARED_BUFFERS_PAGES: u32 = 65_536;

/// What a warm-up needs.
#[derive(Clone, Debug)]
pub struct Params {
    /// The compute's `postgres` binary (`initdb` is taken from beside it).
    pub pgbin: PathBuf,
    /// The compute's PGDATA: the throwaway cluster is `<pgdata>.warmup`, beside it.
    pub pgdata: PathBuf,
    /// The OS user to run as (`None`: this process's own).
    pub user: Option<PostgresUser>,
    /// Preload `neon` (its library is installed beside `pgbin`).
    pub neon_library: bool,
    /// The deadline of `initdb`, and separately of the server's start and of its stop.
    pub step_deadline: Duration,
}

/// What a warm-up did.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Report {
    /// The throwaway cluster's directory (removed).
    pub dir: PathBuf,
    /// `shared_buffers`, in 8 KiB pages.
    pub shared_buffers_pages: u32,
    /// Whether `neon` was preloaded.
    pub neon_preloaded: bool,
    /// Milliseconds of `initdb`.
    pub initdb_ms: u64,
    /// Milliseconds from the server's spawn to `ready`.
    pub start_ms: u64,
    /// Milliseconds in all, the removal included.
    pub total_ms: u64,
}

/// Why a warm-up failed (the directory and the server are cleaned up all the same).
#[derive(Debug, thiserror::Error)]
pub enum WarmupError {
    /// `<pgdata>.warmup` exists and is not ours.
    #[error(
        "{} exists and has no {MARKER} marker, so it is not a warm-up directory of ours: \
         it is left alone; remove it, or start with a spec",
        dir.display()
    )]
    Foreign {
        /// The directory.
        dir: PathBuf,
    },
    /// A file system step failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// The step.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// `initdb` failed or ran past its deadline.
    #[error("initdb of the warm-up cluster: {0}")]
    Initdb(String),
    /// The server exited before it was ready, or was not ready in time.
    #[error("the warm-up server {0}")]
    Server(String),
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WarmupError + 'a {
    move |source| WarmupError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The throwaway cluster's directory for `pgdata`: `<pgdata>.warmup`.
pub fn dir_for(pgdata: &Path) -> PathBuf {
    let mut name = OsString::from(pgdata.as_os_str());
    name.push(".warmup");
    PathBuf::from(name)
}

/// Runs the warm-up: a throwaway cluster made, started with [`SHARED_BUFFERS_PAGES`],
/// stopped and removed.
pub fn warm_up(params: &Params) -> Result<Report, WarmupError> {
    let started = Instant::now();
    let dir = dir_for(&params.pgdata);
    prepare(&dir, params.user.as_ref())?;
    let result = build_and_run(params, &dir);
    let removed = std::fs::remove_dir_all(&dir).map_err(io_error("removing", &dir));
    let (initdb_ms, start_ms) = result?;
    removed?;
    Ok(Report {
        dir,
        shared_buffers_pages: SHARED_BUFFERS_PAGES,
        neon_preloaded: params.neon_library,
        initdb_ms,
        start_ms,
        total_ms: millis(started.elapsed()),
    })
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Makes `dir` a fresh, empty directory of ours (0700, the user's), holding only the marker;
/// a leftover of ours is removed first, anything else refused.
fn prepare(dir: &Path, user: Option<&PostgresUser>) -> Result<(), WarmupError> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() && dir.join(MARKER).is_file() => {
            tracing::info!(dir = %dir.display(), "removing the leftover of an earlier warm-up");
            std::fs::remove_dir_all(dir).map_err(io_error("removing", dir))?;
        }
        Ok(_) => {
            return Err(WarmupError::Foreign {
                dir: dir.to_path_buf(),
            })
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(io_error("inspecting", dir)(error)),
    }
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(io_error("creating", dir))?;
    }
    std::fs::write(
        dir.join(MARKER),
        b"a throwaway cluster of pg-warmup; removed after use\n",
    )
    .map_err(io_error("writing the marker in", dir))?;
    if let Some(user) = user {
        user.chown_recursive(dir)
            .map_err(io_error("giving to the postgres user", dir))?;
    }
    Ok(())
}

/// `initdb` into `<dir>/data`, the settings, the server started and stopped: the
/// milliseconds of `initdb` and of the start.
fn build_and_run(params: &Params, dir: &Path) -> Result<(u64, u64), WarmupError> {
    let data = dir.join("data");
    let bin_dir = params.pgbin.parent().unwrap_or(Path::new(""));
    let clock = Instant::now();
    let mut initdb = Command::new(bin_dir.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args(["--no-sync", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"])
        .env("LC_ALL", "C.UTF-8")
        .current_dir("/");
    apply_user(&mut initdb, params.user.as_ref());
    match child::run(&mut initdb, params.step_deadline, 64 * 1024) {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            return Err(WarmupError::Initdb(format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
        Err(error) => return Err(WarmupError::Initdb(error.to_string())),
    }
    let initdb_ms = millis(clock.elapsed());
    let conf = data.join("postgresql.conf");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .map_err(io_error("opening", &conf))?;
    // Postgres needs one socket: in a private directory (a short path under the temporary
    // directory: `<pgdata>.warmup` may be too long for a socket path), 0700, removed on drop.
    let sockets = tempfile::Builder::new()
        .prefix("pg-warmup.")
        .tempdir()
        .map_err(io_error(
            "creating a socket directory in",
            &std::env::temp_dir(),
        ))?;
    if let Some(user) = &params.user {
        user.chown_recursive(sockets.path())
            .map_err(io_error("giving to the postgres user", sockets.path()))?;
    }
    let socket_dir = compute_spec::quote::quote_conf_value(&sockets.path().to_string_lossy());
    let preload = if params.neon_library { "neon" } else { "" };
    write!(
        file,
        "\n# pg-warmup: a throwaway server nobody can reach\nshared_buffers = {SHARED_BUFFERS_PAGES}\n\
         listen_addresses = ''\nunix_socket_directories = {socket_dir}\n\
         shared_preload_libraries = '{preload}'\n"
    )
    .map_err(io_error("writing", &conf))?;
    let start_ms = run_server(params, &data)?;
    Ok((initdb_ms, start_ms))
}

/// Starts the server on `data`, waits for `ready`, stops it with SIGQUIT (upstream: no
/// orphaned backends while the directory goes) and reaps it; the milliseconds to `ready`.
fn run_server(params: &Params, data: &Path) -> Result<u64, WarmupError> {
    let mut command = stage_kit::cgexec::command(&params.pgbin);
    command.arg("-D").arg(data).current_dir("/");
    apply_user(&mut command, params.user.as_ref());
    let clock = Instant::now();
    let mut server = child::spawn(&mut command, Signal::SIGKILL).map_err(|error| {
        WarmupError::Server(format!(
            "{} could not be started: {error}",
            params.pgbin.display()
        ))
    })?;
    let ready = wait_ready(&server, data, params.step_deadline);
    let start_ms = millis(clock.elapsed());
    // SIGQUIT to the postmaster (it ends its backends at once; upstream's choice too, so no
    // orphan outlives the directory), then, once it exited but before it is reaped (its pid
    // still names the group), SIGKILL to whatever of its group is left; past the deadline
    // the group dies the same way.
    if let Ok(pidfd) = Pidfd::open(&server) {
        let _ = pidfd.signal(Some(Signal::SIGQUIT));
    }
    let stop = stage_kit::deadline::after(params.step_deadline);
    while !child::exited_unreaped(&server, false).unwrap_or(true) && Instant::now() < stop {
        std::thread::sleep(Duration::from_millis(10));
    }
    child::kill_group(&mut server);
    ready.map(|()| start_ms)
}

/// Polls `postmaster.pid` until its last line says `ready`; an exit or the deadline first
/// is an error.
fn wait_ready(
    server: &std::process::Child,
    data: &Path,
    deadline: Duration,
) -> Result<(), WarmupError> {
    let until = stage_kit::deadline::after(deadline);
    let pid_file = data.join("postmaster.pid");
    loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file) {
            let lines: Vec<&str> = text.lines().collect();
            let ours = lines.first() == Some(&server.id().to_string().as_str());
            if ours && lines.last().is_some_and(|line| line.trim() == "ready") {
                return Ok(());
            }
        }
        if child::exited_unreaped(server, false).unwrap_or(false) {
            return Err(WarmupError::Server(
                "exited before it was ready; its log went to this process's stderr".to_string(),
            ));
        }
        if Instant::now() >= until {
            return Err(WarmupError::Server(format!(
                "was not ready within {} s",
                deadline.as_secs_f64()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
