//! Shared helpers for the binary-level tests: build a compute document, run the stage
//! binary on it, and start real `postgres` on the result.

#![allow(dead_code)]

pub mod archive;
pub mod standin;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use compute_spec::document::ComputeDocument;
use compute_spec::parse::{parse_bare, EMBEDDED_SAMPLE_SPEC};
use compute_spec_cli::begin::{start_document, DocumentParams};
use serde_json::Value;

/// The admin user in the test documents' connstr.
pub const ADMIN: &str = "cloud_admin";

/// A document on the embedded sample spec, with `pgdata`, on `port`, after `edit` ran on the
/// spec's JSON.
pub fn document(pgdata: &Path, port: u16, edit: impl FnOnce(&mut Value)) -> ComputeDocument {
    let mut spec: Value = serde_json::from_str(EMBEDDED_SAMPLE_SPEC).unwrap();
    for setting in spec["cluster"]["settings"].as_array_mut().unwrap() {
        if setting["name"] == "port" {
            setting["value"] = Value::String(port.to_string());
        }
    }
    edit(&mut spec);
    let loaded = parse_bare(&spec.to_string(), "test").unwrap();
    let params = DocumentParams {
        pgdata: pgdata.to_path_buf(),
        pgbin: pg_test_support::pg_bin("postgres"),
        connstr: format!("postgresql://{ADMIN}@localhost/postgres"),
        compute_id: None,
        privileged_role_name: "neon_superuser".to_string(),
        socket_dir: None,
    };
    start_document("test", &params, loaded, "embedded", 0).unwrap()
}

/// The outcome of one run of the binary.
pub struct Outcome {
    /// Exit code.
    pub code: i32,
    /// stdout parsed as JSON.
    pub json: Value,
    /// stderr.
    pub stderr: String,
}

impl Outcome {
    /// Asserts that the run failed at run time with an error of `kind`; the error object.
    pub fn failed_with(&self, kind: &str) -> &Value {
        assert_eq!(
            self.code,
            i32::from(compute_spec::exit_code::RUNTIME),
            "{}",
            self.stderr
        );
        let error = &self.json["error"];
        assert_eq!(error["kind"], kind, "{error}");
        error
    }
}

/// Flags for a stage that must give up on a silent server quickly: two attempts, 1 s deadlines.
pub const QUICK_GIVE_UP: [&str; 8] = [
    "--retries",
    "1",
    "--retry-initial-ms",
    "10",
    "--startup-timeout",
    "1s",
    "--idle-timeout",
    "1s",
];

/// Runs `pg-basebackup-fetch` with `args` on `document`.
pub fn run_stage(document: &ComputeDocument, args: &[&str]) -> Outcome {
    let text = serde_json::to_string(document).unwrap();
    let output =
        pg_test_support::run_with_stdin(env!("CARGO_BIN_EXE_pg-basebackup-fetch"), args, &text);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let json = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout:?}; stderr: {stderr}"));
    Outcome {
        code: output.status.code().unwrap_or(-1),
        json,
        stderr,
    }
}

/// Runs `pg-basebackup-fetch` with `args` on `document`, which must end within `limit`
/// (else it is killed and the test fails); the outcome and the time it took.
pub fn run_stage_within(
    document: &ComputeDocument,
    args: &[&str],
    limit: Duration,
) -> (Outcome, Duration) {
    use std::io::{Read, Write};
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pg-basebackup-fetch"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(Some(child.id()));
    let text = serde_json::to_string(document).unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < limit,
            "pg-basebackup-fetch still runs after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    guard.0 = None;
    let took = started.elapsed();
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    let json = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout:?}; stderr: {stderr}"));
    let outcome = Outcome {
        code: status.code().unwrap_or(-1),
        json,
        stderr,
    };
    (outcome, took)
}

/// Kills the process with this id when dropped (a test that fails does not leave it).
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A `postgres` started on a prepared PGDATA; stopped (fast) on drop.
pub struct RunningPostgres {
    child: Child,
    /// The socket directory.
    pub socket_dir: std::path::PathBuf,
    /// The port.
    pub port: u16,
}

impl RunningPostgres {
    /// Starts `postgres -D <pgdata>` of `document` and waits until it accepts connections.
    pub fn start(document: &ComputeDocument) -> RunningPostgres {
        let mut command = Command::new(&document.pgbin);
        command
            .arg("-D")
            .arg(&document.pgdata)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        pg_test_support::as_postgres_user(&mut command);
        let child = command.spawn().unwrap();
        let mut running = RunningPostgres {
            child,
            socket_dir: document.instance.socket_dir.clone(),
            port: document.instance.port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if running.try_client(ADMIN, "postgres").is_ok() {
                return running;
            }
            if let Some(status) = running.child.try_wait().unwrap() {
                let mut stderr = String::new();
                use std::io::Read;
                running
                    .child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .unwrap();
                panic!("postgres exited with {status}: {stderr}");
            }
            assert!(Instant::now() < deadline, "postgres did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Connects as `user` to `db` through the socket directory.
    pub fn try_client(&self, user: &str, db: &str) -> Result<postgres::Client, postgres::Error> {
        postgres::Config::new()
            .host_path(&self.socket_dir)
            .port(self.port)
            .user(user)
            .dbname(db)
            .connect(postgres::NoTls)
    }

    /// Connects as the admin user to `postgres`.
    pub fn client(&self) -> postgres::Client {
        self.try_client(ADMIN, "postgres").unwrap()
    }
}

impl Drop for RunningPostgres {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let _ = self.child.wait();
    }
}
