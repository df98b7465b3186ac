//! `vm-monitor`: the in-VM half of autoscaling for a Neon-style compute.
//!
//! An autoscaler-agent connects to `GET /monitor` (websocket, text frames) and
//! tells the monitor about upscales, asks whether downscales are safe and
//! checks its health; the monitor asks for an upscale when memory use in the
//! Postgres cgroup crosses 85 % of usable memory, and sizes the local file
//! cache (`neon.file_cache_size_limit`) to the VM's memory.
//!
//! Modules: [`protocol`] (message types, version negotiation), [`cgroup`]
//! (memory.stat sampling and the threshold/downscale math), [`filecache`]
//! (cache size formula and the Postgres calls), `server` (accept loop and
//! sessions), [`cli`] (flags of the standalone binary).
//!
//! Invariants:
//! * the monitor never writes `memory.high` (or any cgroup file): it only reads
//!   `memory.stat` and, once, `memory.max`;
//! * one agent at a time: a new websocket connection replaces (closes) the
//!   previous one;
//! * malformed input from the agent never panics and never stops the monitor:
//!   it is logged and answered with `InvalidMessage`;
//! * cgroup v2 only; when the cgroup is missing (e.g. a cgroup v1 host) the
//!   monitor still serves the protocol, manages nothing and grants every
//!   downscale.
//!
//! Embedding (e.g. from compute-ctl): build a [`MonitorConfig`], call
//! [`start`], keep the [`MonitorHandle`] and call [`MonitorHandle::shutdown`]
//! when Postgres exits.
//!
//! Tests: unit tests sit next to the code in each module; end-to-end tests
//! with a fake agent and a fake cgroup directory are in `tests/it/agent.rs`, the
//! real-Postgres file-cache test in `tests/it/filecache_pg.rs`.

pub mod cgroup;
pub mod cli;
pub mod filecache;
pub mod protocol;
mod server;

use std::net::{SocketAddr, TcpListener};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use compute_spec::error::{ErrorKind, StageError};
pub use server::{MONITOR_PATH, SETUP_TIMEOUT};

/// The name in error envelopes and logs.
pub const STAGE: &str = "vm-monitor";

/// One mebibyte.
pub const MIB: u64 = 1 << 20;
/// Default listen address.
pub const DEFAULT_ADDR: &str = "0.0.0.0:10301";
/// Default cgroup v2 mount point.
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Errors from [`start`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cgroup name is not a relative path below the cgroup root.
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidCgroupName {
        /// The offending name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The Postgres connection string does not parse.
    #[error("invalid Postgres connection string for file-cache sizing: {0}")]
    InvalidConnStr(#[source] postgres::Error),
    /// The listen socket could not be set up.
    #[error("cannot listen on {addr} for the vm-monitor websocket: {source}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A thread could not be spawned.
    #[error("cannot spawn vm-monitor thread {name}: {source}")]
    Spawn {
        /// Thread name.
        name: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The workspace's error kind: bad configuration is a usage error (exit code 2), the
    /// rest come from the environment (exit code 1).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidCgroupName { .. } | Error::InvalidConnStr(_) => ErrorKind::Usage,
            Error::Bind { .. } => ErrorKind::Io,
            Error::Spawn { .. } => ErrorKind::Internal,
        }
    }

    /// Whether the error stems from bad configuration (exit code 2) rather
    /// than from the environment (exit code 1).
    pub fn is_usage(&self) -> bool {
        self.kind().exit_code() == compute_spec::exit_code::USAGE
    }

    /// The error in the workspace's envelope form (`{"error": {"stage": "vm-monitor", …}}`).
    pub fn to_stage_error(&self) -> StageError {
        StageError::new(STAGE, self.kind(), self.to_string())
    }
}

/// Configuration of a monitor instance.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Websocket listen address (port 0 picks a free port).
    pub addr: SocketAddr,
    /// cgroup name below `cgroup_root` (e.g. `neon-postgres`); `None` manages no memory.
    pub cgroup: Option<String>,
    /// cgroup v2 mount point (normally `/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// libpq-style connection string for file-cache sizing; `None` disables it.
    pub pgconnstr: Option<String>,
}

impl MonitorConfig {
    /// Config listening on `addr` with no cgroup, the default cgroup root and
    /// no file-cache connection.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            cgroup: None,
            cgroup_root: PathBuf::from(DEFAULT_CGROUP_ROOT),
            pgconnstr: None,
        }
    }
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self::new(SocketAddr::from(([0, 0, 0, 0], 10301)))
    }
}

/// A running monitor. Dropping it also shuts it down.
pub struct MonitorHandle {
    local_addr: SocketAddr,
    cgroup_managed: bool,
    shared: Arc<server::Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for MonitorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorHandle")
            .field("local_addr", &self.local_addr)
            .field("cgroup_managed", &self.cgroup_managed)
            .finish_non_exhaustive()
    }
}

impl MonitorHandle {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether a cgroup's memory is being watched.
    pub fn cgroup_managed(&self) -> bool {
        self.cgroup_managed
    }

    /// Stops all threads, closes the agent connection and joins (≈ < 1 s).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // The accept thread first, so no session starts after we collect them.
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let sessions: Vec<_> = {
            let mut s = self
                .shared
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            s.drain(..).collect()
        };
        for s in sessions {
            let _ = s.join();
        }
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop_and_join();
        }
    }
}

/// Resolves `name` to a directory below `root`, refusing `..` and the like.
fn cgroup_dir(root: &Path, name: &str) -> Result<PathBuf, Error> {
    let bad = |reason| Error::InvalidCgroupName {
        name: name.to_owned(),
        reason,
    };
    let rel = Path::new(name.trim_start_matches('/'));
    if rel.as_os_str().is_empty() {
        return Err(bad("empty"));
    }
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad("must be a plain path below the cgroup root (no `..`)"));
    }
    Ok(root.join(rel))
}

/// Starts the monitor: validates the config, binds the listener, spawns the
/// accept thread (and the memory watcher when the cgroup is usable) and
/// returns at once.
///
/// A missing or unreadable cgroup is not an error: it is logged and the
/// monitor serves the protocol without managing memory.
pub fn start(config: MonitorConfig) -> Result<MonitorHandle, Error> {
    let dir = config
        .cgroup
        .as_deref()
        .map(|name| cgroup_dir(&config.cgroup_root, name))
        .transpose()?;
    let pg = config
        .pgconnstr
        .as_deref()
        .map(|s| s.parse::<postgres::Config>().map_err(Error::InvalidConnStr))
        .transpose()?;
    let bind_err = |source| Error::Bind {
        addr: config.addr,
        source,
    };
    let listener = TcpListener::bind(config.addr).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    let local_addr = listener.local_addr().map_err(bind_err)?;

    let (managed, total) = match &dir {
        None => {
            tracing::info!("no cgroup configured: serving the protocol without managing memory");
            (false, None)
        }
        Some(d) => match cgroup::read_memory_stat(d) {
            Ok(_) => {
                let total = cgroup::read_memory_max(d);
                tracing::info!(cgroup = %d.display(), memory_max = ?total, "watching cgroup v2 memory");
                (true, total)
            }
            Err(e) => {
                tracing::warn!(
                    cgroup = %d.display(),
                    error = %e,
                    "cgroup v2 memory controller unavailable (cgroup v1 host?): \
                     serving the protocol without managing memory"
                );
                (false, None)
            }
        },
    };
    if pg.is_none() {
        tracing::info!("no Postgres connection string: file-cache sizing disabled");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let memory = Arc::new(Mutex::new(cgroup::MemoryState::new(
        managed,
        total,
        Instant::now(),
    )));
    let shared = Arc::new(server::Shared {
        stop: Arc::clone(&stop),
        generation: AtomicU64::new(0),
        memory: Arc::clone(&memory),
        filecache: pg.map(|c| Mutex::new(filecache::PgSettings::new(c))),
        sessions: Mutex::new(Vec::new()),
    });
    let mut handle = MonitorHandle {
        local_addr,
        cgroup_managed: managed,
        shared: Arc::clone(&shared),
        threads: Vec::new(),
    };
    let sh = Arc::clone(&shared);
    let acceptor = std::thread::Builder::new()
        .name("vm-monitor-accept".into())
        .spawn(move || server::accept_loop(listener, sh))
        .map_err(|source| Error::Spawn {
            name: "vm-monitor-accept",
            source,
        })?;
    handle.threads.push(acceptor);
    if let (true, Some(d)) = (managed, dir) {
        // On failure `handle` is dropped, which stops the accept thread.
        let watcher = std::thread::Builder::new()
            .name("vm-monitor-cgroup".into())
            .spawn(move || cgroup::watch(d, memory, stop))
            .map_err(|source| Error::Spawn {
                name: "vm-monitor-cgroup",
                source,
            })?;
        handle.threads.push(watcher);
    }
    tracing::info!(addr = %local_addr, path = MONITOR_PATH, "vm-monitor started");
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_names() {
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(
            cgroup_dir(root, "neon-postgres").unwrap(),
            PathBuf::from("/sys/fs/cgroup/neon-postgres")
        );
        assert_eq!(
            cgroup_dir(root, "/a/b").unwrap(),
            PathBuf::from("/sys/fs/cgroup/a/b")
        );
        for bad in ["", "/", "../etc", "a/../../b", "./x"] {
            assert!(cgroup_dir(root, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_errors_are_usage_errors() {
        let mut c = MonitorConfig::new("127.0.0.1:0".parse().unwrap());
        c.cgroup = Some("../x".into());
        assert!(start(c.clone()).unwrap_err().is_usage());
        c.cgroup = None;
        c.pgconnstr = Some("host=/tmp port=notaport".into());
        assert!(start(c).unwrap_err().is_usage());
    }
}
