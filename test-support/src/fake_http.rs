//! The one hand-written HTTP stand-in of the tests ([`FakeHttp`]): a server on a loopback
//! port answering each request with what the test's handler returns — a control plane, the
//! endpoint storage, the remote extension storage — recording every request, and able to
//! misbehave (answer late, never answer, stop mid-answer). [`json_server`] is the common
//! case: one JSON document the test may change while it runs.
//!
//! Each connection is served on a thread of its own and closed after one answer
//! (`Connection: close`); a request body comes by `Content-Length` or chunked. Dropping the
//! server stops it: the listener closes, held connections are let go.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;

/// The longest a request head may be.
const MAX_HEAD: usize = 64 << 10;
/// The longest a request body may be.
const MAX_BODY: usize = 64 << 20;
/// How long a connection may wait for the client's request.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A request as the server read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `PUT`…
    pub method: String,
    /// The request target as sent: path and query, not decoded.
    pub target: String,
    /// The header lines, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (empty without one).
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(found, _)| found.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// `METHOD target`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.target)
    }
}

/// What the server does with a request.
#[derive(Clone, Debug)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    delay: Duration,
    behaviour: Behaviour,
}

#[derive(Clone, Debug)]
enum Behaviour {
    Answer,
    /// Never answer; hold the connection open.
    Stall,
    /// Write these bytes as they are, then hold the connection open.
    Partial(Vec<u8>),
}

impl Response {
    /// `status` with `body`.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
            behaviour: Behaviour::Answer,
        }
    }

    /// `status` with an empty body.
    pub fn status(status: u16) -> Response {
        Response::new(status, Vec::new())
    }

    /// `200 OK` with `value` as JSON (`Content-Type: application/json`).
    pub fn json(value: &Value) -> Response {
        Response::new(200, value.to_string()).header("Content-Type", "application/json")
    }

    /// No answer at all: the connection is held open until the server is dropped.
    pub fn stall() -> Response {
        Response {
            behaviour: Behaviour::Stall,
            ..Response::status(0)
        }
    }

    /// `bytes` written as they are (a head and the start of a body, say), then the
    /// connection is held open, as a server that stopped halfway.
    pub fn partial(bytes: impl Into<Vec<u8>>) -> Response {
        Response {
            behaviour: Behaviour::Partial(bytes.into()),
            ..Response::status(0)
        }
    }

    /// With one more header.
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Answered after `delay`.
    pub fn after(mut self, delay: Duration) -> Response {
        self.delay = delay;
        self
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

struct Shared {
    handler: Box<Handler>,
    /// Every request read, with the status answered (0: none).
    log: Mutex<Vec<(Request, u16)>>,
    stop: AtomicBool,
}

/// An HTTP server on `127.0.0.1` for one test; see the module doc.
pub struct FakeHttp {
    address: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeHttp {
    /// Serves every request with `handler`'s response, on a port of its own.
    ///
    /// # Panics
    ///
    /// When no loopback port can be had.
    pub fn start(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> FakeHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let address = listener.local_addr().expect("the listener's address");
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let serving = accepting.clone();
                std::thread::spawn(move || serve(&serving, stream));
            }
        });
        FakeHttp { address, shared }
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every request read so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.log().into_iter().map(|(request, _)| request).collect()
    }

    /// Every request read so far with the status it was answered (`0` when it was not:
    /// stalled, or still waiting for its delay).
    pub fn log(&self) -> Vec<(Request, u16)> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many requests for `target` were read.
    pub fn count(&self, target: &str) -> usize {
        self.requests()
            .iter()
            .filter(|request| request.target == target)
            .count()
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees the stop and closes the listener.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
    }
}

/// Reads one request from `stream` and answers it as the handler says.
fn serve(shared: &Shared, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(reading) = stream.try_clone() else {
        return;
    };
    let Some(request) = read_request(&mut BufReader::new(reading)) else {
        return;
    };
    let response = (shared.handler)(&request);
    let at = {
        let mut log = shared.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.push((request, 0));
        log.len() - 1
    };
    std::thread::sleep(response.delay);
    let mut stream = stream;
    match response.behaviour {
        Behaviour::Answer => {
            let mut head = format!(
                "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                response.status,
                reason(response.status),
                response.body.len()
            );
            for (name, value) in &response.headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let written = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(&response.body))
                .and_then(|()| stream.flush());
            if written.is_ok() {
                let mut log = shared.log.lock().unwrap_or_else(PoisonError::into_inner);
                log[at].1 = response.status;
            }
        }
        Behaviour::Stall => hold(shared, stream),
        Behaviour::Partial(bytes) => {
            let _ = stream.write_all(&bytes).and_then(|()| stream.flush());
            hold(shared, stream);
        }
    }
}

/// Keeps `stream` open until the server stops.
fn hold(shared: &Shared, stream: TcpStream) {
    while !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stream);
}

/// The request line, the headers and the body; `None` for a connection that sent no
/// well-formed request.
fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut read = 0;
    let mut line = || -> Option<String> {
        let mut line = String::new();
        let n = reader
            .by_ref()
            .take((MAX_HEAD - read) as u64)
            .read_line(&mut line)
            .ok()?;
        read += n;
        (n > 0 && line.ends_with('\n')).then(|| line.trim_end().to_string())
    };
    let first = line()?;
    let mut parts = first.split(' ');
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let header = line()?;
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut request = Request {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    let chunked = request
        .header("Transfer-Encoding")
        .is_some_and(|value| value.eq_ignore_ascii_case("chunked"));
    request.body = match chunked {
        true => read_chunked(reader)?,
        false => {
            let length: usize = request
                .header("Content-Length")
                .unwrap_or("0")
                .parse()
                .ok()?;
            if length > MAX_BODY {
                return None;
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).ok()?;
            body
        }
    };
    Some(request)
}

/// A chunked body (its trailer skipped).
fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = size.trim().split(';').next()?;
        let size = usize::from_str_radix(size, 16).ok()?;
        if body.len() + size > MAX_BODY {
            return None;
        }
        if size == 0 {
            // The trailer, up to its empty line.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
                    return Some(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).ok()?;
        let mut end = [0u8; 2];
        reader.read_exact(&mut end).ok()?;
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        412 => "Precondition Failed",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// A control plane (or any JSON service): `answer` (its value at the time of each request)
/// as `200 OK` JSON to every request. The server's [`FakeHttp::log`] counts the answers.
pub fn json_server(answer: Arc<Mutex<Value>>) -> FakeHttp {
    FakeHttp::start(move |_| {
        let value = answer
            .lock()
            .map(|answer| answer.clone())
            .unwrap_or_default();
        Response::json(&value)
    })
}
