//! pg-prewarm's integration tests as one binary: the `pg-prewarm` binary on real Postgres 15
//! servers (vanilla: `pg_buffercache` → a state file → `pg_prewarm`), and what it does with
//! state files that are not states. `cargo test -p pg-prewarm --test it <module>::` runs one
//! module.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

mod bad_input;
mod file;

use std::path::Path;
use std::process::Command;

use pg_test_support::{StageRun, TestPostgres};
use serde_json::{json, Value};

/// The binary under test.
const PG_PREWARM: &str = env!("CARGO_BIN_EXE_pg-prewarm");

/// A vanilla compute's document (no pageserver, no endpoint storage) for `server`.
fn document(server: &TestPostgres) -> String {
    document_for(
        server.data_dir(),
        server.bin_dir(),
        server.socket_dir(),
        server.port(),
    )
}

/// A vanilla compute's document for the instance on `socket_dir`/`port`.
fn document_for(pgdata: &Path, bin_dir: &Path, socket_dir: &Path, port: u16) -> String {
    json!({
        "document_version": 1,
        "spec": {
            "format_version": 1.0, "suspend_timeout_seconds": 0,
            "cluster": {"roles": [], "databases": []},
        },
        "pgdata": pgdata,
        "pgbin": bin_dir.join("postgres"),
        "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": port, "socket_dir": socket_dir},
    })
    .to_string()
}

/// `pg-prewarm <args>` on `document`.
fn pg_prewarm(args: &[&str], document: &str) -> StageRun {
    pg_test_support::run_stage(PG_PREWARM, args, document).expect_json()
}

/// The `error` object of a failed run, asserting its exit code and kind.
fn failed(run: &StageRun, code: u8, kind: &str) -> Value {
    run.failed_with(code, kind).clone()
}

/// `pg_ctl <args>` on `server`'s data directory, as the postgres user.
fn pg_ctl(server: &TestPostgres, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(server.bin_dir().join("pg_ctl"));
    pg_test_support::as_postgres_user(&mut command)
        .arg("-D")
        .arg(server.data_dir())
        .args(args);
    command.output().unwrap()
}

/// `server` stopped and started again by `pg_ctl` (its shared buffers empty); stopped again
/// on drop, before the `TestPostgres` removes its directory.
struct Restarted<'a>(&'a TestPostgres);

impl<'a> Restarted<'a> {
    fn new(server: &'a mut TestPostgres) -> Restarted<'a> {
        server.stop_fast();
        let log = server.dir().join("restarted.log");
        let output = pg_ctl(server, &["-w", "-l", &log.to_string_lossy(), "start"]);
        assert!(
            output.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Restarted(server)
    }
}

impl Drop for Restarted<'_> {
    fn drop(&mut self) {
        pg_ctl(self.0, &["-w", "-m", "immediate", "stop"]);
    }
}
