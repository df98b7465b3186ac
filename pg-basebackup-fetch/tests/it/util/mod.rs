//! Shared helpers for the binary-level tests: build a compute document, run the stage
//! binary on it, and start real `postgres` on the result.

#![allow(dead_code)]

pub mod archive;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use compute_spec::document::ComputeDocument;
use compute_spec::parse::{parse_bare, EMBEDDED_SAMPLE_SPEC};
use compute_spec_cli::begin::{start_document, DocumentParams};
use pg_test_support::wait_for;
pub use pg_test_support::StageRun;
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

/// The template cache the tests share (private to this build tree, never the user's).
pub fn test_cache_dir() -> String {
    format!("{}/bbf-template-cache", env!("CARGO_TARGET_TMPDIR"))
}

/// `args`, with the tests' private template cache unless they choose one or turn it off.
fn with_cache(args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    if !args
        .iter()
        .any(|arg| *arg == "--no-template-cache" || *arg == "--template-cache-dir")
    {
        all.extend(["--template-cache-dir".to_string(), test_cache_dir()]);
    }
    all
}

/// Runs `pg-basebackup-fetch` with `args` on `document` (stdout must be JSON).
pub fn run_stage(document: &ComputeDocument, args: &[&str]) -> StageRun {
    let text = serde_json::to_string(document).unwrap();
    let args = with_cache(args);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    pg_test_support::run_stage(env!("CARGO_BIN_EXE_pg-basebackup-fetch"), &args, &text)
        .expect_json()
}

/// Runs `pg-basebackup-fetch` with `args` on `document`, which must end within `limit`
/// (else it is killed and the test fails); the result and the time it took.
pub fn run_stage_within(
    document: &ComputeDocument,
    args: &[&str],
    limit: Duration,
) -> (StageRun, Duration) {
    let text = serde_json::to_string(document).unwrap();
    let program = env!("CARGO_BIN_EXE_pg-basebackup-fetch");
    let args = with_cache(args);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (run, took) = pg_test_support::run_stage_within(program, &args, &text, limit);
    (run.expect_json(), took)
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
        // Ready when it accepts the admin; a postgres that exited is a failure at once.
        let exited = wait_for(Duration::from_secs(30), || {
            if running.try_client(ADMIN, "postgres").is_ok() {
                return Some(None);
            }
            running.child.try_wait().unwrap().map(Some)
        });
        match exited {
            Some(None) => running,
            Some(Some(status)) => {
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
            None => panic!("postgres did not become ready within 30 s"),
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
