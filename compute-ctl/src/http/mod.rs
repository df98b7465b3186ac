//! The HTTP servers: hyper's HTTP/1.1 connection handling on a small tokio runtime (one
//! thread per server), with limits no client can get around:
//!
//! * at most [`MAX_CONNECTIONS`] open connections per server; the next one gets a fast 503
//!   and is closed, so a flood cannot exhaust threads or file descriptors;
//! * request headers (and the idle time between keep-alive requests) within
//!   [`HEADER_TIMEOUT`], at most [`MAX_HEADER_BYTES`] bytes and [`MAX_HEADERS`] fields (431);
//! * a body of at most [`MAX_BODY`] bytes (413) that arrives within [`BODY_TIMEOUT`] (408,
//!   connection closed);
//! * every write to a client that stops reading fails after [`WRITE_TIMEOUT`].
//!
//! A reply is a whole body, or a first chunk and a stream ([`body`]: chunked encoding; a
//! producer's failure ends the connection without the terminating chunk).
//!
//! A connection waiting for its headers or body is a task, not a thread: hundreds of stalled
//! clients leave `/status`, `/healthz` and `/metrics` answering. Handlers are synchronous
//! ([`crate::routes::route`]); the ones that may block (SQL, `/configure`, `/terminate`) run
//! on the runtime's blocking pool. Order of checks, as upstream: unknown path (404), method
//! (405 with `Allow`, before auth), authentication, `Content-Type` (415), body.

use std::borrow::Cow;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use compute_spec::error::{ErrorKind, StageError};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

pub mod body;
mod write_deadline;

use crate::auth::Auth;
use crate::routes;
use crate::state::Shared;
use crate::supervise::Event;
use body::{BodyStream, ReplyBody};
use write_deadline::WriteDeadline;

/// Largest request body accepted (2 MiB, as upstream); larger ones get 413.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// Open connections per server; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 512;

/// Default time for a request's headers to arrive, and for the next request on an idle
/// keep-alive connection to start (`--http-header-timeout`).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Default time for a whole request body to arrive (`--http-body-timeout`).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The deadlines a server enforces.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// Headers, and idle time between keep-alive requests.
    pub header: Duration,
    /// A whole body.
    pub body: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            header: HEADER_TIMEOUT,
            body: BODY_TIMEOUT,
        }
    }
}

/// Time a single write to a client may stay blocked.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest request head (request line and headers) in bytes; larger ones get 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Most header fields in one request; more get 431.
pub const MAX_HEADERS: usize = 64;

/// Blocking handlers (SQL, waits) that may run at once per server; more wait their turn.
const BLOCKING_THREADS: usize = 32;

/// Which server a request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// Control plane and scrapers; JWT-authenticated unless no key set was configured.
    External,
    /// Local callers (Postgres itself); no authentication; loopback unless a flag says so.
    Internal,
}

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct Api {
    /// The compute's state.
    pub shared: Arc<Shared>,
    /// Wakes the controller.
    pub wake: Sender<Event>,
    /// `-i`, for the JWT `compute_id` check.
    pub compute_id: Option<String>,
    /// The authentication fixed at start.
    pub auth: Arc<Auth>,
    /// The deadlines on each connection.
    pub deadlines: Deadlines,
    /// LFC prewarm/offload state and counters (shared with the controller).
    pub lfc: Arc<crate::lfc::Lfc>,
    /// The process-lifetime `/promote` result.
    pub promotion: Arc<crate::promote::Promotion>,
    /// `-r` and the remote extension downloads (`remote_ext`).
    pub remote_ext: Arc<crate::remote_ext::RemoteExt>,
}

impl Api {
    /// Wakes the controller after a change to the shared state.
    pub fn wake(&self) {
        let _ = self.wake.send(Event::Wake);
    }
}

/// One request, read and ready for a handler.
#[derive(Debug)]
pub struct ApiRequest {
    /// The method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query string (without `?`); `None` when the URL has no `?`.
    pub query: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The body (at most [`MAX_BODY`]).
    pub body: Vec<u8>,
}

/// The body of every JSON error: `{"error": message}`.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: String,
}

/// A handler's answer.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
    /// Its content type (none for an empty body).
    pub content_type: Option<Cow<'static, str>>,
    /// The `Allow` header of a 405.
    pub allow: Option<String>,
    /// Close the connection after this reply (the request was not read whole).
    pub close: bool,
    /// The rest of a streamed body, sent after [`Reply::body`] (chunked encoding).
    pub stream: Option<BodyStream>,
}

impl Reply {
    /// A JSON body; a value serde cannot write (a map with non-string keys) is a 500.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Reply {
        match serde_json::to_vec(value) {
            Ok(body) => Reply::bytes(status, Cow::Borrowed("application/json"), body),
            Err(error) => Reply::error(500, format!("writing the response body: {error}")),
        }
    }

    /// `{"error": message}`.
    pub fn error(status: u16, message: impl std::fmt::Display) -> Reply {
        Reply::json(
            status,
            &ErrorBody {
                error: message.to_string(),
            },
        )
    }

    /// Plain text with a content type.
    pub fn text(status: u16, content_type: &'static str, body: String) -> Reply {
        Reply::bytes(status, Cow::Borrowed(content_type), body.into_bytes())
    }

    /// Any body with its content type.
    pub fn bytes(status: u16, content_type: Cow<'static, str>, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body,
            content_type: Some(content_type),
            allow: None,
            close: false,
            stream: None,
        }
    }

    /// `first`, then the chunks of `rest` (chunked encoding: see [`body`]).
    pub fn streaming(
        status: u16,
        content_type: Cow<'static, str>,
        first: Vec<u8>,
        rest: BodyStream,
    ) -> Reply {
        Reply {
            stream: Some(rest),
            ..Reply::bytes(status, content_type, first)
        }
    }

    /// An empty body (404 and 405 as upstream).
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: Vec::new(),
            content_type: None,
            allow: None,
            close: false,
            stream: None,
        }
    }

    fn closing(mut self) -> Reply {
        self.close = true;
        self
    }
}

/// How [`parse_json_in`] answers a body it cannot decode. Upstream's framework words it
/// `Failed to parse the request body as JSON: …` (400) and `Failed to deserialize the JSON
/// body into the target type: <path>: …` (422), serde's message with its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// `{"error": …}` lower-cased whole, as upstream's JSON extractor (`/configure`).
    Lower,
    /// `{"error": …}` with the framework's words lower-cased and serde's as written
    /// (`/grants`, `/extensions`: their 422s keep the wire names' case, e.g.
    /// `invalid type: string "USAGE"`).
    AsWritten,
    /// Plain text in the framework's own case, as upstream's raw extractor (`/promote`).
    PlainText,
}

impl Rejection {
    fn reply(self, status: u16, words: &str, detail: &dyn std::fmt::Display) -> Reply {
        match self {
            Rejection::Lower => Reply::error(status, format!("{words}: {detail}").to_lowercase()),
            Rejection::AsWritten => {
                Reply::error(status, format!("{}: {detail}", words.to_lowercase()))
            }
            Rejection::PlainText => Reply::text(
                status,
                "text/plain; charset=utf-8",
                format!("{words}: {detail}"),
            ),
        }
    }
}

/// Parses a JSON request body as upstream's JSON extractor does: see [`parse_json_in`] and
/// [`Rejection::Lower`].
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    parse_json_in(body, Rejection::Lower)
}

/// Parses a JSON request body as upstream's framework does: 400 for a syntax error or
/// trailing data, 422 for a body of the wrong shape, naming the JSON path (from
/// `serde_path_to_error`), worded as `rejection` says.
pub fn parse_json_in<T: DeserializeOwned>(body: &[u8], rejection: Rejection) -> Result<T, Reply> {
    const SYNTAX: &str = "Failed to parse the request body as JSON";
    const SHAPE: &str = "Failed to deserialize the JSON body into the target type";
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value: T = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => value,
        Err(error) => {
            let inner = error.inner();
            if inner.classify() != serde_json::error::Category::Data {
                return Err(rejection.reply(400, SYNTAX, inner));
            }
            let path = error.path().to_string();
            return Err(if path == "." {
                rejection.reply(422, SHAPE, inner)
            } else {
                rejection.reply(422, SHAPE, &format_args!("{path}: {inner}"))
            });
        }
    };
    deserializer
        .end()
        .map_err(|error| rejection.reply(400, SYNTAX, &error))?;
    Ok(value)
}

/// Binds `address:port` and serves it on a thread of its own.
pub fn serve(api: Api, address: IpAddr, port: u16, which: Port) -> Result<SocketAddr, StageError> {
    let bind_error = |error: io::Error| {
        StageError::new(
            crate::STAGE,
            ErrorKind::Io,
            format!("binding the HTTP API to {address}:{port}: {error}; choose another port"),
        )
    };
    let listener =
        std::net::TcpListener::bind(SocketAddr::new(address, port)).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_name(format!("http-{which:?}-blocking"))
        .build()
        .map_err(|error| crate::internal(format!("starting the HTTP runtime: {error}")))?;
    tracing::info!(address = %bound, server = ?which, "HTTP API listening");
    std::thread::Builder::new()
        .name(format!("http-{which:?}"))
        .spawn(move || runtime.block_on(accept_loop(listener, api, which)))
        .map_err(|error| crate::internal(format!("starting the HTTP server thread: {error}")))?;
    Ok(bound)
}

async fn accept_loop(listener: std::net::TcpListener, api: Api, which: Port) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, server = ?which, "the HTTP server cannot use its socket");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(%error, server = ?which, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let api = api.clone();
                tokio::spawn(async move {
                    connection(stream, api, which).await;
                    drop(slot);
                });
            }
            Err(_) => {
                tokio::spawn(refuse(stream));
            }
        }
    }
}

/// Answers a connection over the cap with 503 and closes it, without reading it.
async fn refuse(mut stream: TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
content-length: 49\r\nconnection: close\r\n\r\n{\"error\":\"too many connections; try again later\"}";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
}

async fn connection(stream: TcpStream, api: Api, which: Port) {
    let io = TokioIo::new(WriteDeadline::new(stream, WRITE_TIMEOUT));
    let deadlines = api.deadlines;
    let service = hyper::service::service_fn(move |request| {
        let api = api.clone();
        async move { Ok::<_, Infallible>(handle(request, api, which).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(deadlines.header)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    if let Err(error) = builder.serve_connection(io, service).await {
        tracing::debug!(%error, server = ?which, "HTTP connection ended with an error");
    }
}

async fn handle(request: Request<Incoming>, api: Api, which: Port) -> Response<ReplyBody> {
    let started = Instant::now();
    api.shared.inflight.fetch_add(1, Ordering::SeqCst);
    // Copied as received (as upstream); generated only when absent or not visible ASCII.
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let reply = answer(request, &api, which).await;
    let status = reply.status;
    let response = build_response(reply, &request_id);
    api.shared.inflight.fetch_sub(1, Ordering::SeqCst);
    tracing::info!(
        request_id = %request_id,
        method = %method,
        path = %path,
        server = ?which,
        status,
        latency_us = started.elapsed().as_micros() as u64,
        "http request"
    );
    response
}

fn build_response(reply: Reply, request_id: &str) -> Response<ReplyBody> {
    let body = match reply.stream {
        None => ReplyBody::whole(reply.body),
        Some(rest) => ReplyBody::Streamed {
            first: Some(Bytes::from(reply.body)),
            rest,
        },
    };
    let mut response = Response::new(body);
    *response.status_mut() = hyper::StatusCode::from_u16(reply.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    if let Some(content_type) = reply
        .content_type
        .and_then(|value| HeaderValue::from_str(&value).ok())
    {
        headers.insert(CONTENT_TYPE, content_type);
    }
    if let Some(allow) = reply
        .allow
        .and_then(|allow| HeaderValue::from_str(&allow).ok())
    {
        headers.insert(ALLOW, allow);
    }
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", id);
    }
    if reply.close {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn answer(request: Request<Incoming>, api: &Api, which: Port) -> Reply {
    let path = request.uri().path().to_string();
    let Some(route) = routes::lookup(which, &path) else {
        return Reply::empty(404);
    };
    let method = request.method().clone();
    if !route.accepts(&method) {
        let mut reply = Reply::empty(405);
        reply.allow = Some(route.allow());
        return reply;
    }
    let header = |name| {
        request
            .headers()
            .get(name)
            .and_then(|value: &HeaderValue| value.to_str().ok())
            .map(str::to_string)
    };
    let authorization = header(AUTHORIZATION);
    if which == Port::External && route.authenticated {
        if let Err(reply) = api
            .auth
            .check(authorization.as_deref(), api.compute_id.as_deref())
        {
            return reply;
        }
    }
    if route.json_body {
        let content_type = header(CONTENT_TYPE);
        // `/promote` answers in plain text, as upstream's raw extractor does.
        let checked = if path == "/promote" {
            crate::promote::require_json_content_type(content_type.as_deref())
        } else {
            crate::extract::require_json_content_type(content_type.as_deref())
        };
        if let Err(reply) = checked {
            return reply;
        }
    }
    let query = request.uri().query().map(str::to_string);
    let declared = header(CONTENT_LENGTH).and_then(|length| length.trim().parse::<u64>().ok());
    let body = match read_body(request.into_body(), declared, api.deadlines.body).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let api_request = ApiRequest {
        method,
        path,
        query,
        authorization,
        body,
    };
    if !route.blocking {
        return routes::route(api, which, &api_request);
    }
    let api = api.clone();
    match tokio::task::spawn_blocking(move || routes::route(&api, which, &api_request)).await {
        Ok(reply) => reply,
        Err(error) => {
            tracing::error!(%error, "an HTTP handler failed");
            Reply::error(500, "internal error while handling the request")
        }
    }
}

async fn read_body(
    body: Incoming,
    declared: Option<u64>,
    deadline: Duration,
) -> Result<Vec<u8>, Reply> {
    let too_large = || {
        Reply::error(
            413,
            "failed to buffer the request body: length limit exceeded",
        )
        .closing()
    };
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return Err(too_large());
    }
    let limited = Limited::new(body, MAX_BODY);
    match tokio::time::timeout(deadline, limited.collect()).await {
        Err(_) => Err(Reply::error(
            408,
            format!(
                "the request body did not arrive within {} ms",
                deadline.as_millis()
            ),
        )
        .closing()),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(error)) => {
            Err(Reply::error(400, format!("failed to read the request body: {error}")).closing())
        }
        Ok(Ok(collected)) => Ok(collected.to_bytes().to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_are_400_or_422_with_the_path() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Body {
            spec: Inner,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            count: u32,
        }
        let syntax = parse_json::<Body>(b"{").unwrap_err();
        assert_eq!(syntax.status, 400);
        let text = String::from_utf8(syntax.body).unwrap();
        assert!(
            text.contains("failed to parse the request body as json: eof"),
            "{text}"
        );
        let shape = parse_json::<Body>(br#"{"spec": {"count": "x"}}"#).unwrap_err();
        assert_eq!(shape.status, 422);
        let text = String::from_utf8(shape.body).unwrap();
        assert!(
            text.contains("failed to deserialize the json body into the target type: spec.count: invalid type"),
            "{text}"
        );
        assert_eq!(
            parse_json::<Body>(br#"{"spec": {"count": 1}} x"#)
                .unwrap_err()
                .status,
            400
        );
        assert!(parse_json::<Body>(br#"{"spec": {"count": 1}}"#).is_ok());
    }
}
