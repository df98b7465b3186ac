//! Liveness probes: poll for a condition with a deadline instead of sleeping and hoping.
//!
//! Every wait in the workspace's tests goes through [`wait_for`] (or one of the helpers built
//! on it): the condition is checked at once, then every few milliseconds until it holds or the
//! deadline passes, so a test is as fast as the system under test and fails with a clear
//! message instead of flaking when the machine is slow.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the probes sleep between two checks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Checks `probe` at once and then every [`POLL_INTERVAL`] until it returns `Some`, for at most
/// `timeout`; `None` when the deadline passed (the probe ran one last time at the deadline).
pub fn wait_for<T>(timeout: Duration, probe: impl FnMut() -> Option<T>) -> Option<T> {
    wait_for_every(POLL_INTERVAL, timeout, probe)
}

/// [`wait_for`] checking every `interval` (for a probe that costs the system under test
/// something, such as a request).
pub fn wait_for_every<T>(
    interval: Duration,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return None;
        }
        std::thread::sleep(left.min(interval));
    }
}

/// Whether `condition` came to hold within `timeout` (see [`wait_for`]).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    wait_for(timeout, || condition().then_some(())).is_some()
}

/// Polls `check` until it holds, for at most `limit`, every 20 ms (a check usually asks the
/// system under test something).
///
/// # Panics
///
/// When it did not hold within `limit`, naming `what`.
pub fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let held = wait_for_every(Duration::from_millis(20), limit, || check().then_some(()));
    assert!(
        held.is_some(),
        "timed out after {limit:?} waiting for {what}"
    );
}

/// `value` once `busy` no longer holds of it (a job's state once it stopped running), polled
/// every [`POLL_INTERVAL`] for at most `timeout`; the last value seen when the time ran out
/// (still busy: the caller's assertion on it fails, showing it).
pub fn settle<T>(
    timeout: Duration,
    mut value: impl FnMut() -> T,
    mut busy: impl FnMut(&T) -> bool,
) -> T {
    let mut last = None;
    let settled = wait_for(timeout, || {
        let now = value();
        match busy(&now) {
            true => {
                last = Some(now);
                None
            }
            false => Some(now),
        }
    });
    settled.or(last).unwrap_or_else(value)
}

/// Polls `status` (a compute's `/status` answer, `None` when there was none) until its
/// `status` field says `wanted`, for at most `timeout`: `Ok` with that answer, `Err` with the
/// last answer seen (`null` when none) when the time ran out or the compute said `failed`
/// (when `failed` is not what is wanted: the wait ends at once).
pub fn wait_for_status(
    timeout: Duration,
    wanted: &str,
    mut status: impl FnMut() -> Option<serde_json::Value>,
) -> Result<serde_json::Value, serde_json::Value> {
    let mut last = serde_json::Value::Null;
    wait_until(timeout, || {
        if let Some(answer) = status() {
            last = answer;
        }
        last["status"] == wanted || last["status"] == "failed"
    });
    match last["status"] == wanted {
        true => Ok(last),
        false => Err(last),
    }
}

/// How long `condition` took to hold, or `None` when it did not within `timeout`.
pub fn time_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    wait_for(timeout, || condition().then(|| started.elapsed()))
}

/// Whether something accepts TCP connections on `address` within `timeout`.
pub fn wait_for_port(address: SocketAddr, timeout: Duration) -> bool {
    wait_until(timeout, || {
        TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
    })
}

/// Whether `path` exists within `timeout`.
pub fn wait_for_path(path: &Path, timeout: Duration) -> bool {
    wait_until(timeout, || path.exists())
}

/// Connects with `config` until PostgreSQL accepts the connection, for at most `timeout`;
/// the last connection error when it never did.
pub fn wait_for_postgres(
    config: &postgres::Config,
    timeout: Duration,
) -> Result<postgres::Client, postgres::Error> {
    match wait_for(timeout, || config.connect(postgres::NoTls).ok()) {
        Some(client) => Ok(client),
        // One last attempt, for the error to report.
        None => config.connect(postgres::NoTls),
    }
}

/// Whether process `pid` is running: it exists and is not a zombie (`/proc/<pid>/stat`).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself hold ") ".
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))),
        Err(_) => false,
    }
}

/// Whether process `pid` ended (gone, or a zombie) within `timeout`.
pub fn wait_dead(pid: i32, timeout: Duration) -> bool {
    wait_until(timeout, || !process_alive(pid))
}

/// The running processes (not zombies) whose program (`argv[0]`'s file name) is `program`
/// and one of whose arguments contains `needle` (e.g. `initdb` on a test's PGDATA).
pub fn processes_of(program: &str, needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let mut args = cmdline
            .split(|byte| *byte == 0)
            .map(String::from_utf8_lossy);
        let named = args
            .next()
            .is_some_and(|first| Path::new(first.as_ref()).file_name() == Some(program.as_ref()));
        if named && args.any(|arg| arg.contains(needle)) && process_alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// Starts `sleep 60` (leading its own process group) with the process id `wanted`, through
/// `/proc/sys/kernel/ns_last_pid` (root), retried while another process takes the pid first:
/// a process that reused a pid, for the tests that no signal meant for an exited process
/// reaches it. `None` when that never worked. The caller kills and reaps it.
pub fn sleeper_with_pid(wanted: i32) -> Option<std::process::Child> {
    use std::os::unix::process::CommandExt;
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (wanted - 1).to_string()).ok()?;
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .ok()?;
        if i32::try_from(child.id()) == Ok(wanted) {
            return Some(child);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    None
}
