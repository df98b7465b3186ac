//! Support for the end-to-end tests in `tests/tests/`: the workspace's binaries (looked up
//! through cargo once per run), a stage runner, sample specs on free ports, and process checks.
//!
//! The tests themselves drive the binaries exactly as a user would: shell-style pipelines of
//! the stages, and `compute-ctl` as the all-in-one entrypoint, against real PostgreSQL.
#![warn(missing_docs)]

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

pub use pg_test_support::{process_alive, wait_until, StageRun};
use serde_json::Value;

pub mod stand_in;

/// The path of one of the workspace's binaries, built by cargo if it was not (or is stale):
/// see [`pg_test_support::workspace_binary`].
pub fn binary(name: &str) -> PathBuf {
    pg_test_support::workspace_binary(name)
}

/// The directory holding the workspace's binaries (that of `compute-ctl`), for tests that put
/// them on `PATH`.
pub fn bin_dir() -> PathBuf {
    let ctl = binary("compute-ctl");
    match ctl.parent() {
        Some(dir) => dir.to_path_buf(),
        None => panic!("{} has no parent directory", ctl.display()),
    }
}

/// Runs a stage binary with `args`, writing `input` on its stdin.
pub fn run_stage(name: &str, args: &[&str], input: &str) -> StageRun {
    pg_test_support::run_stage(binary(name), args, input)
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

/// A `compute-ctl` command on the real stages as the tests run it: admin `cloud_admin` over
/// the instance's socket, the kit's Postgres installation, PGDATA `pgdata`, the external API
/// on `http_port` and the internal one on `internal_port` (0: off), no grace after
/// `/terminate`. The caller adds the spec (`-S` or `-c`) and its own flags.
pub fn compute_ctl_command(pgdata: &Path, http_port: u16, internal_port: u16) -> Command {
    let mut command = Command::new(binary("compute-ctl"));
    command
        .args(["-C", "postgresql://cloud_admin@localhost/postgres"])
        .arg("-b")
        .arg(pg_test_support::pg_bin("postgres"))
        .arg("-D")
        .arg(pgdata)
        .args(["--external-http-port", &http_port.to_string()])
        .args(["--internal-http-port", &internal_port.to_string()])
        .args(["--terminated-grace", "0s"]);
    command
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

/// A child process killed (and reaped) when the test ends, also when it fails halfway.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `POST url` with a JSON body: the status and the JSON answer (`Null` when it is not JSON).
///
/// # Panics
///
/// Panics when the request cannot be made at all.
pub fn post(url: &str, body: &str) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
        .expect("HTTP request");
    let status = response.status().as_u16();
    let json = response.body_mut().read_json().unwrap_or(Value::Null);
    (status, json)
}

/// Waits up to `timeout` for the unauthenticated compute-ctl on `http_port` to be `running`.
///
/// # Panics
///
/// Panics as soon as it is `failed`, or when it is not `running` in time (with its status).
pub fn wait_running(http_port: u16, timeout: std::time::Duration) {
    pg_test_support::probe::wait_for_status(timeout, "running", || Some(status(http_port)))
        .unwrap_or_else(|last| panic!("never running: {last}"));
}

/// `GET /status` of an unauthenticated compute-ctl on `http_port`; `Null` when it does not
/// answer (yet).
pub fn status(http_port: u16) -> Value {
    let url = format!("http://127.0.0.1:{http_port}/status");
    ureq::get(&url)
        .call()
        .ok()
        .and_then(|mut response| response.body_mut().read_json().ok())
        .unwrap_or(Value::Null)
}
