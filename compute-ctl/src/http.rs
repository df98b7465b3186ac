//! The HTTP servers (tiny_http): a small pool of worker threads per server so `/status` is
//! never blocked behind a long `/configure`, request ids, request logging, the body cap, and
//! the JSON error shape. Routing and handlers live in [`crate::routes`].

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

use compute_spec::error::{ErrorKind, StageError};
use serde_json::Value;
use tiny_http::{Header, Method, Response, Server};

use crate::state::Shared;
use crate::supervise::Event;

/// Largest request body accepted (10 MiB); larger ones get 413.
pub const MAX_BODY: usize = 10 * 1024 * 1024;

/// Worker threads per server: `/configure` and `/terminate` each hold one while they wait,
/// and at most one `/configure` can be in flight, so `/status` always finds a free worker.
const WORKERS: usize = 8;

/// Which server a request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// Control plane and scrapers; JWT-authenticated when keys exist.
    External,
    /// Local callers; no authentication, a reduced set of routes.
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
    /// The query string (without `?`).
    pub query: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The body (at most [`MAX_BODY`]).
    pub body: Vec<u8>,
}

/// A handler's answer.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
    /// Its content type.
    pub content_type: &'static str,
}

impl Reply {
    /// A JSON body.
    pub fn json(status: u16, value: &Value) -> Reply {
        Reply {
            status,
            body: value.to_string().into_bytes(),
            content_type: "application/json",
        }
    }

    /// `{"error": message}`.
    pub fn error(status: u16, message: impl std::fmt::Display) -> Reply {
        Reply::json(status, &serde_json::json!({"error": message.to_string()}))
    }

    /// Plain text.
    pub fn text(status: u16, body: String) -> Reply {
        Reply {
            status,
            body: body.into_bytes(),
            content_type: "text/plain; version=0.0.4",
        }
    }

    /// An empty body (404 as upstream).
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: Vec::new(),
            content_type: "text/plain",
        }
    }
}

/// Binds `address:port` and starts the worker threads.
pub fn serve(api: Api, address: IpAddr, port: u16, which: Port) -> Result<SocketAddr, StageError> {
    let server = Server::http(SocketAddr::new(address, port)).map_err(|error| {
        StageError::new(
            crate::STAGE,
            ErrorKind::Io,
            format!("binding the HTTP API to {address}:{port}: {error}; choose another port"),
        )
    })?;
    let bound = server
        .server_addr()
        .to_ip()
        .unwrap_or_else(|| SocketAddr::new(address, port));
    tracing::info!(address = %bound, server = ?which, "HTTP API listening");
    let server = Arc::new(server);
    for index in 0..WORKERS {
        let server = server.clone();
        let api = api.clone();
        std::thread::Builder::new()
            .name(format!("http-{which:?}-{index}"))
            .spawn(move || worker(&server, &api, which))
            .map_err(|error| crate::internal(format!("starting an HTTP worker: {error}")))?;
    }
    Ok(bound)
}

fn worker(server: &Server, api: &Api, which: Port) {
    while let Ok(request) = server.recv() {
        handle(request, api, which);
    }
}

fn handle(mut request: tiny_http::Request, api: &Api, which: Port) {
    let started = Instant::now();
    api.shared.inflight.fetch_add(1, Ordering::SeqCst);
    let request_id = header(&request, "X-Request-Id")
        .filter(|id| !id.is_empty() && id.len() <= 200)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let method = request.method().clone();
    let reply = match read_body(&mut request) {
        Ok(body) => {
            let api_request = ApiRequest {
                method: method.clone(),
                path: path.to_string(),
                query: query.to_string(),
                authorization: header(&request, "Authorization"),
                body,
            };
            crate::routes::route(api, which, &api_request)
        }
        Err(reply) => reply,
    };
    let status = reply.status;
    let mut response = Response::from_data(reply.body).with_status_code(status);
    for (name, value) in [
        ("Content-Type", reply.content_type),
        ("X-Request-Id", request_id.as_str()),
    ] {
        if let Ok(header) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(header);
        }
    }
    let _ = request.respond(response);
    api.shared.inflight.fetch_sub(1, Ordering::SeqCst);
    tracing::info!(
        request_id = %request_id,
        method = %method,
        path = %path,
        status,
        latency_us = started.elapsed().as_micros() as u64,
        "http request"
    );
}

fn header(request: &tiny_http::Request, name: &'static str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|header| header.field.equiv(name))
        .map(|header| header.value.as_str().to_string())
}

fn read_body(request: &mut tiny_http::Request) -> Result<Vec<u8>, Reply> {
    let too_large = || {
        Reply::error(
            413,
            format!("request body too large: the limit is {MAX_BODY} bytes"),
        )
    };
    if request
        .body_length()
        .is_some_and(|length| length > MAX_BODY)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|error| Reply::error(400, format!("reading the request body: {error}")))?;
    if body.len() > MAX_BODY {
        return Err(too_large());
    }
    Ok(body)
}
