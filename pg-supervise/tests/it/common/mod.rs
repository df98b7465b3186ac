//! Shared helpers for the real-Postgres tests: a stopped test cluster to supervise, the compute
//! document pointing at it, and a handle on a running `pg-supervise` binary.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use compute_spec::document::ComputeDocument;
use compute_spec::parse::{parse_bare, EMBEDDED_SAMPLE_SPEC};
use compute_spec_cli::begin::{start_document, DocumentParams};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pg_test_support::probe::time_until;
#[allow(unused_imports)] // not every test binary polls
pub use pg_test_support::wait_for;
use pg_test_support::TestPostgres;
use serde_json::Value;

/// A data directory made by pg-test-support (stopped) and a document for it.
pub struct Fixture {
    pub pg: TestPostgres,
    pub document: ComputeDocument,
}

impl Fixture {
    /// A fresh stopped cluster, with `extra_conf` appended to its `postgresql.conf`.
    pub fn new(extra_conf: &str) -> Fixture {
        let mut pg = TestPostgres::start();
        pg.stop_fast();
        if !extra_conf.is_empty() {
            let conf = pg.data_dir().join("postgresql.conf");
            let mut file = std::fs::OpenOptions::new().append(true).open(conf).unwrap();
            writeln!(file, "{extra_conf}").unwrap();
        }
        let params = DocumentParams {
            pgdata: pg.data_dir().to_path_buf(),
            pgbin: pg.bin_dir().join("postgres"),
            connstr: "postgresql://cloud_admin@localhost/postgres".to_string(),
            compute_id: None,
            privileged_role_name: "neon_superuser".to_string(),
            socket_dir: Some(pg.socket_dir().to_path_buf()),
        };
        let loaded = parse_bare(EMBEDDED_SAMPLE_SPEC, "the embedded sample spec").unwrap();
        let mut document = start_document("test", &params, loaded, "test", 0).unwrap();
        document.instance.port = pg.port();
        Fixture { pg, document }
    }

    /// A client on the supervised server as `user` (who must exist) on database `dbname`.
    pub fn client_as(&self, user: &str, dbname: &str) -> postgres::Client {
        let connstr = format!(
            "host={} port={} user={user} dbname={dbname}",
            self.pg.socket_dir().display(),
            self.pg.port()
        );
        postgres::Client::connect(&connstr, postgres::NoTls).unwrap()
    }

    /// `psql` connection string for the supervised server.
    pub fn connstr(&self, extra: &str) -> String {
        format!(
            "host={} port={} user=cloud_admin dbname=postgres {extra}",
            self.pg.socket_dir().display(),
            self.pg.port()
        )
    }

    /// The document as the JSON line a stage would write.
    pub fn document_json(&self) -> String {
        serde_json::to_string(&self.document).unwrap()
    }

    /// Starts `pg-supervise` with `args` on this fixture's document.
    pub fn supervise(&self, args: &[&str]) -> Supervisor {
        self.supervise_with(self.command(args))
    }

    /// The `pg-supervise` command with `args`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pg-supervise"));
        command.args(args);
        command
    }

    /// Starts `command` (pg-supervise, or a wrapper running it) on this fixture's document.
    pub fn supervise_with(&self, mut command: Command) -> Supervisor {
        Supervisor::start(&mut command, &self.document_json())
    }

    /// A client on the supervised server.
    pub fn client(&self) -> postgres::Client {
        self.pg.client()
    }
}

/// A running `pg-supervise` (killed on drop, which also kills its postmaster).
pub struct Supervisor {
    pub child: Child,
    lines: Receiver<String>,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Supervisor {
    /// Runs `command` (the supervisor, or a wrapper around it) with `stdin_text` on stdin.
    pub fn start(command: &mut Command, stdin_text: &str) -> Supervisor {
        let stderr_text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let collected = stderr_text.clone();
        let mut supervisor = Supervisor::start_scanning(command, stdin_text, move |line| {
            let line = String::from_utf8_lossy(line);
            eprintln!("[supervisor] {line}");
            let mut text = collected.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        });
        supervisor.stderr = stderr_text;
        supervisor
    }

    /// [`Supervisor::start`], handing each stderr line (without its newline) to `scan` instead
    /// of keeping it (for floods of log; `stderr_text` is then empty).
    pub fn start_scanning(
        command: &mut Command,
        stdin_text: &str,
        mut scan: impl FnMut(&[u8]) + Send + 'static,
    ) -> Supervisor {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(stdin_text.as_bytes()).unwrap();
        drop(stdin);
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut stderr = BufReader::with_capacity(1 << 20, stderr);
            let mut line = Vec::new();
            while matches!(stderr.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                scan(&line);
                line.clear();
            }
        });
        Supervisor {
            child,
            lines,
            stderr: Default::default(),
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// The next stdout line, parsed; panics after `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Value {
        let line = self
            .lines
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("no line from pg-supervise within {timeout:?}: {e}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"))
    }

    /// Skips lines until an event named `name`; panics after `timeout`.
    pub fn wait_event(&self, name: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.next_line(left);
            if line["event"] == name {
                return line;
            }
            assert!(
                line.get("error").is_none(),
                "error instead of {name}: {line}"
            );
        }
    }

    /// Asserts no stdout line arrives within `quiet`: the one deliberate wait in these tests,
    /// for something that must NOT happen (no event can say "nothing happened").
    pub fn assert_quiet(&self, quiet: Duration) {
        if let Ok(line) = self.lines.recv_timeout(quiet) {
            panic!("unexpected line from pg-supervise: {line}");
        }
    }

    /// Everything the supervisor wrote on stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap();
    }

    /// Waits for the supervisor to exit; panics after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let child = &mut self.child;
        pg_test_support::wait_for(timeout, || child.try_wait().unwrap())
            .unwrap_or_else(|| panic!("pg-supervise still running after {timeout:?}"))
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a process `pid` exists (a zombie counts).
pub fn process_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether process `pid` has ended: gone, or a zombie nobody reaped yet.
pub fn process_dead(pid: i32) -> bool {
    !pg_test_support::process_alive(pid)
}

/// Waits until process `pid` has ended (a zombie counts as ended); returns how long it took,
/// or None after `timeout`.
pub fn wait_dead(pid: i32, timeout: Duration) -> Option<Duration> {
    time_until(timeout, || process_dead(pid))
}

/// Waits until process `pid` is gone (reaped); returns how long it took, or None after `timeout`.
pub fn wait_gone(pid: i32, timeout: Duration) -> Option<Duration> {
    time_until(timeout, || !process_exists(pid))
}

pub const SECOND: Duration = Duration::from_secs(1);

/// The children of process `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    let mut children = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return children;
    };
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        children.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    children
}

/// The parent of process `pid`.
pub fn parent(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))
        .and_then(|ppid| ppid.trim().parse().ok())
}

/// The process whose command line is exactly `argv`, if any.
pub fn find_process(argv: &[&str]) -> Option<i32> {
    let wanted = argv
        .iter()
        .map(|arg| format!("{arg}\0"))
        .collect::<String>();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            (String::from_utf8_lossy(&cmdline) == wanted).then_some(pid)
        })
}
