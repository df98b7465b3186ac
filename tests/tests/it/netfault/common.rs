//! What the network-fault scenarios share: a watchdog, a stage run watched while it works,
//! documents made by the real `compute-spec`, a primary in a namespace, and a clone started
//! under `pg-supervise` to count its rows.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use compute_tools_tests::{binary, psql, write_sample_spec, PostgresChild};
use pg_test_support::netns::NetNs;
use pg_test_support::{free_tcp_port, wait_until, StageRun, TestDir, TestPostgres};
use serde_json::Value;

/// The whole-test budget: a test still running after it is aborted (the suite's CI budget
/// is 3 minutes for the file). Leftovers of an aborted run (namespaces, servers) are swept by
/// the next run's first namespace and by `pg-test-cleanup`.
pub struct Watchdog {
    disarm: Option<mpsc::Sender<()>>,
    started: Instant,
}

impl Watchdog {
    /// Aborts the process when the test `name` still runs after `limit`, counted once the
    /// workspace's binaries are built (the first lookup may build them).
    pub fn new(name: &'static str, limit: Duration) -> Watchdog {
        let _ = binary("compute-ctl");
        let (disarm, disarmed) = mpsc::channel::<()>();
        thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = disarmed.recv_timeout(limit) {
                eprintln!("netfault: test {name} still runs after {limit:?}: aborting the run");
                std::process::abort();
            }
        });
        Watchdog {
            disarm: Some(disarm),
            started: Instant::now(),
        }
    }

    /// Time since the test started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(disarm) = self.disarm.take() {
            let _ = disarm.send(());
        }
    }
}

/// A stage binary running on a document, its stderr collected as it comes (so a test can act
/// on what it logs); killed on drop.
pub struct Running {
    child: Option<Child>,
    stdout: Option<thread::JoinHandle<String>>,
    stderr: Arc<Mutex<String>>,
    started: Instant,
}

impl Running {
    /// Starts `stage` with `args`, writing `document` on its stdin.
    pub fn start(stage: &str, args: &[&str], document: &str) -> Running {
        let mut child = Command::new(binary(stage))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {stage}: {e}"));
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(document.as_bytes());
        drop(stdin);
        let mut out = child.stdout.take().unwrap();
        let stdout = thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        });
        let stderr = collect_stderr(&mut child);
        Running {
            child: Some(child),
            stdout: Some(stdout),
            stderr,
            started: Instant::now(),
        }
    }

    /// What it logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) until its log contains `text`.
    pub fn wait_for_log(&self, text: &str, limit: Duration) {
        assert!(
            wait_until(limit, || self.stderr().contains(text)),
            "the stage did not log {text:?} within {limit:?}; its log:\n{}",
            self.stderr()
        );
    }

    /// Waits for it to end (killed, and the test failed, past `limit`); the result and the
    /// time since it started.
    pub fn finish(mut self, limit: Duration) -> (StageRun, Duration) {
        let mut child = self.child.take().unwrap();
        let status = pg_test_support::wait_for(limit, || child.try_wait().ok().flatten());
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the stage still ran after {limit:?}; its log:\n{}",
                self.stderr()
            );
        };
        let took = self.started.elapsed();
        let stdout = self.stdout.take().unwrap().join().unwrap();
        // The stderr reader ends with the pipe; give it a moment to take the last lines.
        wait_until(Duration::from_secs(2), || {
            Arc::strong_count(&self.stderr) == 1
        });
        let run = StageRun {
            code: status.code().unwrap_or(-1),
            json: serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
            stdout,
            stderr: self.stderr(),
        };
        (run, took)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The sample spec (on `port`, Unix socket only) with `edit` applied, written to
/// `dir/spec.json`; its path.
pub fn spec_file(dir: &Path, port: u16, edit: impl FnOnce(&mut Value)) -> std::path::PathBuf {
    let path = write_sample_spec(dir, port);
    let mut spec: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut spec);
    std::fs::write(&path, spec.to_string()).unwrap();
    path
}

/// The first document, as the real `compute-spec` makes it from `spec` for `pgdata`, with
/// `pgbin` as the Postgres binary.
pub fn document(spec: &Path, pgdata: &Path, pgbin: &Path) -> String {
    let outcome = compute_tools_tests::run_stage(
        "compute-spec",
        &[
            "-S",
            spec.to_str().unwrap(),
            "-D",
            pgdata.to_str().unwrap(),
            "-b",
            pgbin.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(outcome.code, 0, "compute-spec failed: {}", outcome.stderr);
    outcome.stdout
}

/// A replication-ready primary in `ns`, listening on the namespace's address and trusting
/// the `10.0.0.0/8` addresses the tests use; `rows` rows in table `t`.
pub fn primary_in(ns: &NetNs, rows: u32) -> TestPostgres {
    let address = ns.peer_addr().to_string();
    let primary = ns.run_inside(|| {
        TestPostgres::builder()
            .tcp(true)
            .setting("listen_addresses", &address)
            .setting("wal_level", "replica")
            .setting("max_wal_senders", "6")
            .hba_line("host replication all 10.0.0.0/8 trust")
            .hba_line("host all all 10.0.0.0/8 trust")
            .start()
    });
    primary.psql(&format!(
        "CREATE TABLE t AS SELECT generate_series(1, {rows}) AS v"
    ));
    primary
}

/// Echoes `child`'s stderr (indented) and collects it, line by line, as it comes.
fn collect_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let collected = Arc::new(Mutex::new(String::new()));
    let sink = collected.clone();
    let err = child.stderr.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("  | {line}");
            let mut all = sink.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
    collected
}

/// A libpq connection string to `primary` in `ns` through `port` (the primary's own, or a
/// proxy's in the same namespace).
pub fn upstream_connstr(ns: &NetNs, port: u16, primary: &TestPostgres) -> String {
    format!(
        "host={} port={port} user={} dbname=postgres",
        ns.peer_addr(),
        primary.superuser()
    )
}

/// The primary's TCP address (in its namespace).
pub fn tcp_address(ns: &NetNs, primary: &TestPostgres) -> SocketAddr {
    SocketAddr::from((ns.peer_addr(), primary.port()))
}

/// A running `pg-supervise` on a document; killed (with its postmaster) on drop.
pub struct Supervised {
    _child: PostgresChild,
    socket_dir: std::path::PathBuf,
    port: u16,
}

impl Supervised {
    /// Starts Postgres on the stage's output `document` and waits (at most 60 s) for `ready`.
    pub fn start(document: &str) -> Supervised {
        let doc: Value = serde_json::from_str(document).unwrap();
        let pgdata = Path::new(doc["pgdata"].as_str().unwrap()).to_path_buf();
        let mut child = Command::new(binary("pg-supervise"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning pg-supervise");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(document.as_bytes())
            .unwrap();
        let events = child.stdout.take().unwrap();
        let child = PostgresChild::new(child, &pgdata);
        let (ready, got) = mpsc::channel();
        thread::spawn(move || ready_event(events, &ready));
        let event = got
            .recv_timeout(Duration::from_secs(60))
            .expect("pg-supervise said nothing within 60 s");
        assert_eq!(event["event"], "ready", "pg-supervise: {event}");
        Supervised {
            _child: child,
            socket_dir: doc["instance"]["socket_dir"].as_str().unwrap().into(),
            port: u16::try_from(doc["instance"]["port"].as_u64().unwrap()).unwrap(),
        }
    }

    /// `SELECT count(*) FROM t` on it.
    pub fn rows(&self) -> u64 {
        psql(
            &self.socket_dir,
            self.port,
            "postgres",
            "SELECT count(*) FROM t",
        )
        .parse()
        .unwrap()
    }
}

/// Sends the first `ready` event (or error line) on `ready`, then drains the rest.
fn ready_event(events: ChildStdout, ready: &mpsc::Sender<Value>) {
    let mut sent = false;
    for line in BufReader::new(events).lines().map_while(Result::ok) {
        let value: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if !sent && (value["event"] == "ready" || value.get("error").is_some()) {
            let _ = ready.send(value);
            sent = true;
        }
    }
}

/// A fresh test directory with a free port for a compute's own Postgres.
pub fn compute_dir(prefix: &str) -> (TestDir, u16) {
    (TestDir::new(prefix), free_tcp_port())
}

/// A running compute-ctl (its log collected), killed with its postmaster on drop.
pub struct Compute {
    _child: PostgresChild,
    log: Arc<Mutex<String>>,
    /// Its external HTTP port.
    pub http_port: u16,
}

impl Compute {
    /// Starts compute-ctl with `args` on `pgdata`, its HTTP API on a free port.
    pub fn start(args: &[&str], pgdata: &Path) -> Compute {
        let http_port = free_tcp_port();
        let mut child = Command::new(binary("compute-ctl"))
            .args(args)
            .args(["-D", pgdata.to_str().unwrap()])
            .args(["--external-http-port", &http_port.to_string()])
            .args(["--internal-http-port", "0"])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning compute-ctl");
        let log = collect_stderr(&mut child);
        Compute {
            _child: PostgresChild::new(child, pgdata),
            log,
            http_port,
        }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Its `/status` answer, `Null` when it does not answer.
    pub fn status(&self) -> Value {
        compute_tools_tests::status(self.http_port)
    }

    /// Waits (at most `limit`) for `/status` to say `wanted`; fails at once on `failed`.
    pub fn wait_for_status(&self, wanted: &str, limit: Duration) -> Value {
        pg_test_support::probe::wait_for_status(limit, wanted, || Some(self.status()))
            .unwrap_or_else(|last| {
                panic!("status never became {wanted}; last: {last}\n{}", self.log())
            })
    }
}
