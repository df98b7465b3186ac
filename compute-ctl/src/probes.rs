//! `GET /hadron_liveness_probe` (`pg_isready` against the compute) and
//! `GET /autoscaling_metrics` (relayed from the `neon` extension's communicator socket).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use compute_spec::ComputeDocument;
use serde_json::json;

use crate::http::{Api, Reply};

/// `pg_isready` is killed when it runs longer than this.
pub const PG_ISREADY_DEADLINE: Duration = Duration::from_secs(10);

/// The communicator's socket, in PGDATA (created by the `neon` extension only).
pub const COMMUNICATOR_SOCKET: &str = "neon-communicator.socket";

/// Connect, read and write deadline of the metrics exchange, and its overall deadline.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest metrics body relayed (16 MiB).
pub const METRICS_CAP: usize = 16 * 1024 * 1024;

/// Socket paths this long or longer are reached through a short symlink (as upstream).
const SHORT_PATH_LIMIT: usize = 100;

/// Largest status line or header line accepted from the communicator.
const LINE_CAP: u64 = 8 * 1024;

// ---------------------------------------------------------------------------------------
// GET /hadron_liveness_probe

/// `GET /hadron_liveness_probe` (external, authenticated, any status):
/// `<pgbin dir>/pg_isready -h <socket dir> -p <port>`; 200 `"ok"` when it exits 0, else 500.
pub fn hadron_liveness_probe(api: &Api) -> Reply {
    let document = api.shared.lock().document.clone();
    let Some(document) = document else {
        return Reply::error(
            500,
            "liveness probe failed: the compute has no document yet",
        );
    };
    liveness(&document, PG_ISREADY_DEADLINE)
}

fn liveness(document: &ComputeDocument, deadline: Duration) -> Reply {
    let mut command = Command::new(document.sibling_binary("pg_isready"));
    command
        .arg("-h")
        .arg(&document.instance.socket_dir)
        .arg("-p")
        .arg(document.instance.port.to_string());
    for variable in ["PGSERVICE", "PGSERVICEFILE", "PGHOSTADDR"] {
        command.env_remove(variable);
    }
    match crate::tool::run(&mut command, deadline, 64 * 1024) {
        Ok(output) if output.status.success() => Reply::json(200, &json!("ok")),
        Ok(output) => {
            let said = String::from_utf8_lossy(&output.stdout).trim().to_string();
            let said = if said.is_empty() {
                String::from_utf8_lossy(&output.stderr).trim().to_string()
            } else {
                said
            };
            Reply::error(
                500,
                format!(
                    "liveness probe failed: pg_isready {}: {said}",
                    output.status
                ),
            )
        }
        Err(error) => Reply::error(500, format!("liveness probe failed: {error}")),
    }
}

// ---------------------------------------------------------------------------------------
// GET /autoscaling_metrics

/// `GET /autoscaling_metrics` (external, **unauthenticated**, any status): relays
/// `GET /autoscaling_metrics` over `PGDATA/neon-communicator.socket`: the communicator's
/// status, `Content-Type` and body; 500 `{"error"}` when the socket is missing or the
/// exchange fails.
pub fn autoscaling_metrics(api: &Api) -> Reply {
    let pgdata = api
        .shared
        .lock()
        .document
        .as_ref()
        .map(|document| document.pgdata.clone());
    let Some(pgdata) = pgdata else {
        return Reply::error(
            500,
            "failed to get autoscaling metrics: the compute has no data directory yet",
        );
    };
    match relay(
        &pgdata.join(COMMUNICATOR_SOCKET),
        EXCHANGE_TIMEOUT,
        METRICS_CAP,
    ) {
        Ok(reply) => reply,
        Err(message) => Reply::error(500, format!("failed to get autoscaling metrics: {message}")),
    }
}

/// One HTTP/1.1 exchange with the server on the Unix socket `socket`.
pub fn relay(socket: &Path, timeout: Duration, cap: usize) -> Result<Reply, String> {
    if !socket.exists() {
        return Err(format!(
            "{} does not exist (the neon extension creates it)",
            socket.display()
        ));
    }
    let deadline = Instant::now() + timeout;
    let stream = connect(socket, timeout)?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|error| format!("setting socket timeouts: {error}"))?;
    (&stream)
        .write_all(
            b"GET /autoscaling_metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        )
        .map_err(|error| format!("sending the request to {}: {error}", socket.display()))?;
    let mut reader = BufReader::new(Deadline {
        stream: &stream,
        deadline,
    });
    let response = read_response(&mut reader, cap)
        .map_err(|error| format!("reading the response from {}: {error}", socket.display()))?;
    Ok(Reply {
        status: response.status,
        body: response.body,
        content_type: intern_content_type(response.content_type.as_deref()),
    })
}

/// Connects to `socket`, through a short symlink when its path is too long for `sun_path`;
/// a connect that hangs (full backlog) is abandoned after `timeout`.
fn connect(socket: &Path, timeout: Duration) -> Result<UnixStream, String> {
    let short = ShortPath::new(socket)?;
    let target = short.path().to_path_buf();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("communicator-connect".to_string())
        .spawn(move || {
            let _ = sender.send(UnixStream::connect(&target));
        })
        .map_err(|error| format!("starting the connect thread: {error}"))?;
    let result = receiver.recv_timeout(timeout).map_err(|_| {
        format!(
            "connecting to {}: timed out after {timeout:?}",
            socket.display()
        )
    })?;
    drop(short);
    result.map_err(|error| format!("connecting to {}: {error}", socket.display()))
}

/// The socket path itself, or a symlink to it in the temp directory, removed on drop.
struct ShortPath {
    path: PathBuf,
    link: bool,
}

impl ShortPath {
    fn new(socket: &Path) -> Result<ShortPath, String> {
        if socket.as_os_str().len() < SHORT_PATH_LIMIT {
            return Ok(ShortPath {
                path: socket.to_path_buf(),
                link: false,
            });
        }
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "compute_ctl.short-socket.{}.{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        if path.as_os_str().len() >= SHORT_PATH_LIMIT {
            return Err(format!(
                "{} is too long for a Unix socket and so is the temp directory {}",
                socket.display(),
                std::env::temp_dir().display()
            ));
        }
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(socket, &path).map_err(|error| {
            format!(
                "linking {} to the long socket path {}: {error}",
                path.display(),
                socket.display()
            )
        })?;
        Ok(ShortPath { path, link: true })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ShortPath {
    fn drop(&mut self) {
        if self.link {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A stream whose reads fail once the overall deadline has passed.
struct Deadline<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if Instant::now() >= self.deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the response did not complete in time",
            ));
        }
        self.stream.read(buffer)
    }
}

/// A parsed HTTP/1.x response.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`, if sent.
    pub content_type: Option<String>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

/// Reads a status line, headers and a body (by `Content-Length`, chunked, or to EOF) of at
/// most `cap` bytes.
pub fn read_response(reader: &mut impl BufRead, cap: usize) -> Result<Response, String> {
    let status_line = line(reader)?;
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(format!("not an HTTP status line: {status_line:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 status line: {status_line:?}"));
    }
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|code| (100..=999).contains(code))
        .ok_or_else(|| format!("bad status code in {status_line:?}"))?;
    let mut content_type = None;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for count in 0.. {
        if count > 100 {
            return Err("more than 100 header lines".to_string());
        }
        let header = line(reader)?;
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(format!("malformed header line {header:?}"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(value.to_string()),
            "content-length" => {
                length = Some(
                    value
                        .parse()
                        .map_err(|_| format!("bad Content-Length {value:?}"))?,
                )
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let too_large = || format!("the body is larger than the {cap}-byte limit");
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            let size_line = line(reader)?;
            let size = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| format!("bad chunk size line {size_line:?}"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !line(reader)?.is_empty() {}
                break;
            }
            if body.len().saturating_add(size) > cap {
                return Err(too_large());
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader
                .read_exact(&mut body[start..])
                .map_err(|error| format!("reading a chunk: {error}"))?;
            if !line(reader)?.is_empty() {
                return Err("chunk not followed by CRLF".to_string());
            }
        }
        body
    } else if let Some(length) = length {
        if length > cap {
            return Err(too_large());
        }
        let mut body = vec![0; length];
        reader
            .read_exact(&mut body)
            .map_err(|error| format!("reading {length} body bytes: {error}"))?;
        body
    } else {
        let mut body = Vec::new();
        reader
            .take(u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|error| format!("reading the body: {error}"))?;
        if body.len() > cap {
            return Err(too_large());
        }
        body
    };
    Ok(Response {
        status,
        content_type,
        body,
    })
}

/// One CRLF- (or LF-) terminated line, without its terminator.
fn line(reader: &mut impl BufRead) -> Result<String, String> {
    let mut bytes = Vec::new();
    reader
        .take(LINE_CAP)
        .read_until(b'\n', &mut bytes)
        .map_err(|error| error.to_string())?;
    if bytes.last() != Some(&b'\n') {
        return Err(if bytes.len() as u64 >= LINE_CAP {
            format!("a line longer than {LINE_CAP} bytes")
        } else {
            "the connection closed mid-response".to_string()
        });
    }
    bytes.pop();
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    String::from_utf8(bytes).map_err(|_| "a header line is not UTF-8".to_string())
}

/// `Reply::content_type` is `&'static str`: the communicator's `Content-Type` is kept once
/// per distinct value (at most 32, each ≤ 200 visible ASCII bytes); anything else becomes
/// `application/octet-stream`.
fn intern_content_type(value: Option<&str>) -> &'static str {
    const FALLBACK: &str = "application/octet-stream";
    static KNOWN: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let Some(value) = value else {
        return FALLBACK;
    };
    if value.len() > 200 || !value.bytes().all(|byte| (0x20..0x7f).contains(&byte)) {
        return FALLBACK;
    }
    let mut known = KNOWN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(found) = known.iter().find(|known| **known == value) {
        return found;
    }
    if known.len() >= 32 {
        return FALLBACK;
    }
    let leaked: &'static str = Box::leak(value.to_string().into_boxed_str());
    known.push(leaked);
    leaked
}
