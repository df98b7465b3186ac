//! Trace collectors for the tests: [`Receiver`], a real OTLP/HTTP receiver built on the
//! official `opentelemetry-proto` Python package (each export decoded with the protobuf
//! classes and checked to re-encode to the same bytes), and [`SilentCollector`], a TCP
//! listener that accepts and never answers.
//!
//! The receiver's Python comes from `$COMPUTE_TOOLS_OTLP_PYTHON`, else the virtual
//! environment `scripts/install-deps.sh` makes at `/var/cache/compute-tools/otlp-venv`.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// The virtual environment `scripts/install-deps.sh` installs `opentelemetry-proto` into.
pub const DEFAULT_VENV_PYTHON: &str = "/var/cache/compute-tools/otlp-venv/bin/python";

const SCRIPT: &str = include_str!("otlp_receiver.py");

/// The Python that has `opentelemetry-proto`, or why there is none.
pub fn python() -> Result<PathBuf, String> {
    let python = std::env::var_os("COMPUTE_TOOLS_OTLP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_VENV_PYTHON));
    let check = Command::new(&python)
        .args([
            "-c",
            "import opentelemetry.proto.collector.trace.v1.trace_service_pb2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match check {
        Ok(status) if status.success() => Ok(python),
        _ => Err(format!(
            "{} cannot import opentelemetry-proto: run scripts/install-deps.sh (or set \
             COMPUTE_TOOLS_OTLP_PYTHON)",
            python.display()
        )),
    }
}

/// A running OTLP/HTTP receiver; killed on drop.
pub struct Receiver {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Receiver {
    /// Starts a receiver that answers each good export with `status` (200 normally).
    pub fn start(status: u16) -> Result<Receiver, String> {
        let python = python()?;
        let dir = tempfile::Builder::new()
            .prefix("otlp-receiver")
            .tempdir()
            .map_err(|error| error.to_string())?;
        let script = dir.path().join("receiver.py");
        std::fs::write(&script, SCRIPT).map_err(|error| error.to_string())?;
        let mut child = Command::new(python)
            .arg(&script)
            .arg(dir.path())
            .arg(status.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| format!("starting the OTLP receiver: {error}"))?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        let Ok(port) = line.trim().parse() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the OTLP receiver did not say its port: {line:?}"));
        };
        Ok(Receiver { child, dir, port })
    }

    /// The base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far, one JSON object each (`trace_id`, `span_id`,
    /// `parent_span_id`, `name`, `kind`, `start`, `end`, `attributes`, `status`, `message`,
    /// `resource`, `headers`).
    pub fn spans(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("spans.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Why exports were refused (a body the protobuf classes would not take back), if any.
    pub fn errors(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("errors.log")).unwrap_or_default()
    }

    /// Waits up to `timeout` until a span named `name` arrived; all spans then.
    pub fn wait_for_span(&self, name: &str, timeout: Duration) -> Option<Vec<Value>> {
        crate::probe::wait_for(timeout, || {
            let spans = self.spans();
            spans
                .iter()
                .any(|span| span["name"] == name)
                .then_some(spans)
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A collector that accepts connections and never answers (nor reads); counts them.
pub struct SilentCollector {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl SilentCollector {
    /// Starts listening on a free loopback port.
    pub fn start() -> SilentCollector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the silent collector");
        let port = listener.local_addr().expect("its address").port();
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (count, stopped, kept) = (accepted.clone(), stop.clone(), held.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        kept.lock().unwrap_or_else(|p| p.into_inner()).push(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        SilentCollector {
            port,
            accepted,
            stop,
            held,
        }
    }

    /// The base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for SilentCollector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.held.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}
