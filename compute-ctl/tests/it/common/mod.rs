//! Test harness: stand-in stage scripts (python3), a running compute-ctl with its HTTP
//! port, and a tiny raw HTTP client (so every status code and method can be exercised).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pg_test_support::fake_http::FakeHttp;
use pg_test_support::probe::wait_for_port;
use pg_test_support::wait_for;
use serde_json::Value;

/// Stand-in `pg-sync-safekeepers`: LSN 0/0, or 0/2000000 with --after-shutdown.
pub const SYNC: &str = r#"import sys, json, os, time
doc = json.load(sys.stdin)
if os.environ.get("STANDIN_SYNC_SLEEP") and "--after-shutdown" not in sys.argv:
    open(os.path.join(os.environ["STANDIN_DIR"], "sync.pid"), "w").write(str(os.getpid()))
    time.sleep(float(os.environ["STANDIN_SYNC_SLEEP"]))
log = os.environ.get("STANDIN_LOG")
if log:
    open(log, "a").write("sync " + " ".join(sys.argv[1:]) + "\n")
after = "--after-shutdown" in sys.argv
doc["sync_safekeepers"] = {"lsn": "0/2000000" if after else "0/0", "method": "none", "sync_safekeepers_ms": 3, "sync_sk_check_ms": 1}
print(json.dumps(doc))
"#;

/// Stand-in `pg-basebackup-fetch`: a section, and the instance of a test server if given.
pub const BASEBACKUP: &str = r#"import sys, json, os
doc = json.load(sys.stdin)
doc["basebackup"] = {"source": "initdb", "basebackup_ms": 5, "basebackup_bytes": 1234, "pageserver_connect_micros": 77}
if os.environ.get("STANDIN_PG_PORT"):
    doc["instance"] = {"port": int(os.environ["STANDIN_PG_PORT"]), "socket_dir": os.environ["STANDIN_PG_SOCKET"]}
if os.environ.get("STANDIN_PGDATA"):
    doc["pgdata"] = os.environ["STANDIN_PGDATA"]
print(json.dumps(doc))
"#;

/// Stand-in `pg-reconcile`: logs its flags, may sleep, counts applied statements.
pub const RECONCILE: &str = r#"import sys, json, os, time
doc = json.load(sys.stdin)
log = os.environ.get("STANDIN_LOG")
if log:
    roles = ",".join(r["name"] for r in doc["spec"]["cluster"]["roles"])
    open(log, "a").write("reconcile " + " ".join(sys.argv[1:]) + " roles=" + roles + "\n")
time.sleep(float(os.environ.get("STANDIN_RECONCILE_SLEEP", "0")))
doc["reconcile"] = {"applied": 2, "config_ms": 1, "plan": [], "failures": []}
print(json.dumps(doc))
"#;

/// Stand-in `pg-supervise`: `ready`, activity and downtime, then waits for SIGTERM/SIGQUIT and
/// reports `exited` with $STANDIN_PG_EXIT; a file `crash` in $STANDIN_DIR is Postgres dying
/// on its own (`exited` with code 3).
pub const SUPERVISE: &str = r#"import sys, json, os, signal, time
doc = json.load(sys.stdin)
d = os.environ["STANDIN_DIR"]
open(os.path.join(d, "supervise.pid"), "w").write(str(os.getpid()))
code = int(os.environ.get("STANDIN_PG_EXIT", "0"))
def out(o):
    print(json.dumps(o), flush=True)
def stop(sig, frame):
    open(os.path.join(d, "supervise.signal"), "a").write(str(sig) + "\n")
    out({"event": "exited", "code": code, "signal": None})
    sys.exit(code)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGQUIT, stop)
time.sleep(float(os.environ.get("STANDIN_READY_DELAY", "0")))
if os.environ.get("STANDIN_PG_FAIL"):
    out({"event": "exited", "code": 1, "signal": None})
    sys.exit(1)
out({"event": "ready", "pid": os.getpid(), "start_postgres_ms": 42})
out({"event": "activity", "last_active": "2026-11-24T22:00:00.123Z"})
out({"event": "downtime", "current_ms": 0, "total_ms": 1500})
while not os.path.exists(os.path.join(d, "crash")):
    time.sleep(0.05)
out({"event": "exited", "code": 3, "signal": None})
sys.exit(3)
"#;

/// A stage that fails with its own error envelope.
pub const FAILING: &str = r#"import sys, json
sys.stdin.read()
print(json.dumps({"error": {"stage": "pg-basebackup-fetch", "kind": "network", "message": "pageserver 10.0.0.1:6400 refused the connection", "retryable": True}}))
sys.exit(1)
"#;

/// The real compute-spec binary (another package's: looked up through cargo by the kit).
pub fn compute_spec_bin() -> PathBuf {
    pg_test_support::workspace_binary("compute-spec")
}

/// A directory with the stand-in scripts and a compute-ctl command wired to them.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub internal_port: u16,
    pub command: Command,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_pgbin(&pg_test_support::pg_bin("postgres"))
    }

    /// A harness whose `-b` is `pgbin` (e.g. a script standing in for `postgres
    /// --sync-safekeepers`).
    pub fn with_pgbin(pgbin: &Path) -> Harness {
        let dir = tempfile::Builder::new()
            .prefix("compute-ctl-test")
            .tempdir_in("/dev/shm")
            .unwrap();
        let port = pg_test_support::free_tcp_port();
        let internal_port = pg_test_support::free_tcp_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_compute-ctl"));
        command
            .arg("-D")
            .arg(dir.path().join("pgdata"))
            .args(["-b", &pgbin.to_string_lossy()])
            .args([
                "--external-http-port",
                &port.to_string(),
                "--internal-http-port",
                &internal_port.to_string(),
            ])
            .env("STANDIN_DIR", dir.path())
            .env("STANDIN_LOG", dir.path().join("stages.log"))
            .env("COMPUTE_CTL_STAGE_COMPUTE_SPEC", compute_spec_bin())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let mut harness = Harness {
            dir,
            port,
            internal_port,
            command,
        };
        harness.stage("pg-sync-safekeepers", SYNC);
        harness.stage("pg-basebackup-fetch", BASEBACKUP);
        harness.stage("pg-reconcile", RECONCILE);
        harness.stage("pg-supervise", SUPERVISE);
        harness
    }

    /// Replaces stage `name` by a python3 script.
    pub fn stage(&mut self, name: &str, python: &str) -> &mut Harness {
        let path = self.dir.path().join(format!("{name}.py"));
        std::fs::write(&path, format!("#!/usr/bin/env python3\n{python}")).unwrap();
        Command::new("chmod").arg("+x").arg(&path).status().unwrap();
        let variable = format!(
            "COMPUTE_CTL_STAGE_{}",
            name.to_ascii_uppercase().replace('-', "_")
        );
        self.command.env(variable, &path);
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stages.log")).unwrap_or_default()
    }

    /// Starts compute-ctl with extra arguments.
    pub fn start(&mut self, args: &[&str]) -> Compute {
        if !args.contains(&"--terminated-grace") {
            // Upstream keeps the API up 30 s after a fast /terminate; tests need no wait.
            self.command.args(["--terminated-grace", "0s"]);
        }
        let child = self.command.args(args).spawn().unwrap();
        let compute = Compute {
            child,
            port: self.port,
        };
        compute.wait_for_http();
        compute
    }
}

/// A running compute-ctl.
pub struct Compute {
    pub child: Child,
    pub port: u16,
}

impl Drop for Compute {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Compute {
    pub fn wait_for_http(&self) {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        assert!(
            wait_for_port(address, Duration::from_secs(20)),
            "compute-ctl did not open its HTTP port"
        );
    }

    pub fn get(&self, path: &str) -> Answer {
        self.request("GET", path, &[], b"")
    }

    /// POSTs `body` as JSON (`Content-Type: application/json`).
    pub fn post(&self, path: &str, body: &[u8]) -> Answer {
        self.request("POST", path, &[("Content-Type", "application/json")], body)
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        http(self.port, method, path, headers, body)
    }

    /// POSTs a JSON body (with `Content-Type: application/json`).
    pub fn post_json(&self, path: &str, body: &Value) -> Answer {
        let json = [("Content-Type", "application/json")];
        http(self.port, "POST", path, &json, body.to_string().as_bytes())
    }

    pub fn status(&self) -> String {
        self.get("/status").json()["status"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits until /status says `status`.
    pub fn wait_status(&self, status: &str) -> Value {
        pg_test_support::probe::wait_for_status(Duration::from_secs(20), status, || {
            Some(self.get("/status").json())
        })
        .unwrap_or_else(|last| panic!("status never became {status}; last: {last}"))
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits for the process to exit and returns its code.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let child = &mut self.child;
        let status = wait_for(timeout, || child.try_wait().unwrap());
        status
            .unwrap_or_else(|| panic!("compute-ctl did not exit"))
            .code()
            .unwrap_or(-1)
    }
}

pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    Answer {
        status,
        headers: head.to_string(),
        body: body.to_string(),
    }
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    pg_test_support::process_alive(pid)
}

pub fn supervise_pid(dir: &Path) -> i32 {
    std::fs::read_to_string(dir.join("supervise.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

pub fn fixture(name: &str) -> String {
    format!(
        "{}/../../shared/fixtures/neon/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A minimal valid spec with no storage (initdb source).
pub fn empty_spec(extra_role: Option<&str>) -> Value {
    let roles: Vec<Value> = extra_role
        .map(|name| vec![serde_json::json!({"name": name, "encrypted_password": null})])
        .unwrap_or_default();
    serde_json::json!({
        "format_version": 1.0,
        "suspend_timeout_seconds": 0,
        "cluster": {"roles": roles, "databases": [], "settings": [
            {"name": "port", "value": "55499", "vartype": "integer"}
        ]}
    })
}

/// Another package's binary, from cargo (built when missing or stale).
pub fn workspace_bin(package: &str) -> PathBuf {
    pg_test_support::workspace_binary(package)
}

/// A control-plane stand-in answering every request with the current value of `answer`
/// (which the test may change); it stops when dropped.
pub fn control_plane(answer: std::sync::Arc<std::sync::Mutex<Value>>) -> FakeHttp {
    pg_test_support::fake_http::json_server(answer)
}

/// A harness whose stages are the stand-ins but pg-reconcile, which is the real one, on
/// `server`.
pub fn harness_on(server: &pg_test_support::TestPostgres) -> Harness {
    let mut harness = Harness::new();
    harness
        .command
        .env("STANDIN_PG_PORT", server.port().to_string())
        .env("STANDIN_PG_SOCKET", server.socket_dir())
        .env("STANDIN_PGDATA", server.data_dir())
        .env(
            "COMPUTE_CTL_STAGE_PG_RECONCILE",
            workspace_bin("pg-reconcile"),
        );
    harness
}
