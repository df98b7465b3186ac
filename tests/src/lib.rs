//! Support for the end-to-end tests in `tests/tests/`: the workspace's binaries (built once
//! per run), a stage runner, sample specs on free ports, and process checks.
//!
//! The tests themselves drive the binaries exactly as a user would: shell-style pipelines of
//! the stages, and `compute-ctl` as the all-in-one entrypoint, against real PostgreSQL.
#![warn(missing_docs)]

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The directory holding the workspace's binaries, after building them all once.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--workspace", "--bins"])
            .current_dir(&workspace)
            .status()
            .expect("running cargo build --workspace --bins");
        assert!(status.success(), "cargo build --workspace --bins failed");
        let test_exe = std::env::current_exe().expect("current test executable");
        // target/<profile>/deps/<test> → target/<profile>
        test_exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable is under target/<profile>/deps")
            .to_path_buf()
    })
}

/// The path of one of the workspace's binaries.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The result of running one stage on a document.
pub struct StageRun {
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// stdout parsed as JSON (Null when it was not JSON).
    pub json: Value,
    /// stdout as text.
    pub stdout: String,
    /// stderr as text.
    pub stderr: String,
}

/// Runs a stage binary with `args`, writing `input` on its stdin.
pub fn run_stage(name: &str, args: &[&str], input: &str) -> StageRun {
    let output = pg_test_support::run_with_stdin(binary(name), args, input);
    stage_run(output)
}

fn stage_run(output: Output) -> StageRun {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    StageRun {
        code: output.status.code(),
        json: serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&output.stderr).to_string(),
    }
}

/// The embedded sample spec, moved to `port` with TCP off (unix socket only), so tests can
/// run in parallel; written to `dir/spec.json`.
pub fn write_sample_spec(dir: &Path, port: u16) -> PathBuf {
    let mut spec: Value = serde_json::from_str(compute_spec::parse::EMBEDDED_SAMPLE_SPEC)
        .expect("the embedded sample spec is JSON");
    let settings = spec["cluster"]["settings"]
        .as_array_mut()
        .expect("the sample spec has settings");
    for setting in settings.iter_mut() {
        match setting["name"].as_str() {
            Some("port") => setting["value"] = Value::from(port.to_string()),
            Some("listen_addresses") => setting["value"] = Value::from(""),
            _ => {}
        }
    }
    settings.push(serde_json::json!({"name": "fsync", "value": "off", "vartype": "bool"}));
    let path = dir.join("spec.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&spec).expect("spec serialises"),
    )
    .expect("writing spec.json");
    path
}

/// Whether a process with this pid exists (zombies count as gone).
pub fn process_alive(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let state = status
        .lines()
        .find_map(|line| line.strip_prefix("State:"))
        .map(str::trim)
        .unwrap_or("");
    !state.is_empty() && !state.starts_with('Z') && !state.starts_with('X')
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// The postmaster pid recorded in `pgdata/postmaster.pid`, if any.
pub fn postmaster_pid(pgdata: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// A child process that runs Postgres on a data directory (pg-supervise, compute-ctl). On
/// drop, it and the postmaster are killed, so a test that fails halfway leaves nothing
/// running. Derefs to the [`Child`].
pub struct PostgresChild {
    child: Child,
    pgdata: PathBuf,
}

impl PostgresChild {
    /// Takes charge of `child`, whose Postgres runs on `pgdata`.
    pub fn new(child: Child, pgdata: &Path) -> PostgresChild {
        PostgresChild {
            child,
            pgdata: pgdata.to_path_buf(),
        }
    }
}

impl Deref for PostgresChild {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.child
    }
}

impl DerefMut for PostgresChild {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for PostgresChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pid) = postmaster_pid(&self.pgdata) {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Runs `psql` as the admin user through the instance's socket and returns its output.
pub fn psql(socket_dir: &Path, port: u16, database: &str, sql: &str) -> String {
    let mut command = Command::new(pg_test_support::pg_bin("psql"));
    command.args(["-XAtq", "-v", "ON_ERROR_STOP=1"]).args([
        "-h",
        &socket_dir.to_string_lossy(),
        "-p",
        &port.to_string(),
        "-U",
        "cloud_admin",
        "-d",
        database,
        "-c",
        sql,
    ]);
    let output = command.output().expect("running psql");
    assert!(
        output.status.success(),
        "psql {sql:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
