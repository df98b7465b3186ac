//! The servers: a caller's [`axum::Router`] (for compute-ctl, built from its one route
//! table by [`crate::routes::router`]; this module knows no route) on hyper's HTTP/1.1
//! connections, in a small tokio runtime (one thread per server), with limits no client can
//! get around:
//!
//! * at most [`MAX_CONNECTIONS`] open connections per server (the accept loop), so a flood
//!   cannot exhaust threads or file descriptors; at the cap a new connection takes the slot
//!   of the one that has waited longest without a request being answered (no headers yet,
//!   idle keep-alive, or an unauthenticated body still coming), which is closed — connections
//!   with a request in flight are never closed, and only when all are is the new one
//!   answered a fast 503 (the `slots` module): clients that send nothing cannot starve the
//!   probes or the control plane;
//! * request headers (and the idle time between keep-alive requests) within
//!   [`HEADER_TIMEOUT`], at most [`MAX_HEADER_BYTES`] bytes and [`MAX_HEADERS`] fields (431)
//!   (hyper's connection settings);
//! * a body of at most [`MAX_BODY`] bytes (413) that arrives within [`BODY_TIMEOUT`] (408,
//!   connection closed) ([`crate::checks`], stacked on each route);
//! * every write to a client that stops reading fails after [`WRITE_TIMEOUT`] (the
//!   connection's stream).
//!
//! Around the router, as tower layers: the request id (`x-request-id` copied as received,
//! a UUID when absent or not visible ASCII, echoed on every answer, tower-http's), and the
//! log line and in-flight count of each request. 404 (unknown path, empty body) and 405
//! (known path, `Allow`, before authentication) are axum's own routing answers, as upstream.
//!
//! A reply is a whole body, or a first chunk and a stream ([`crate::body`]: chunked
//! encoding; a producer's failure ends the connection without the terminating chunk).
//!
//! A connection waiting for its headers or body is a task, not a thread, and gives its slot
//! up to a newer connection at the cap: any number of stalled clients leave `/status`,
//! `/healthz`, `/readyz` and `/metrics` answering. Handlers that may block
//! (SQL, `/configure`, `/terminate`) run on the runtime's bounded blocking pool
//! (`BLOCKING_THREADS`), those that talk to Postgres at most [`SQL_HANDLERS`] at once (503
//! beyond), so that SQL never queues `/terminate`; the ones that wait on I/O are tasks.

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hyper::header::HeaderName;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::slots::{Answering, Slot, Slots};
use crate::write_deadline::WriteDeadline;

/// Largest request body accepted (2 MiB, as upstream); larger ones get 413.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// Open connections per server; at the cap the one waiting longest for a request is closed
/// to make room, and a new one is answered 503 only when every one has a request in flight.
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

/// Handlers that talk to Postgres ([`crate::routes::Handler::Sql`]) that may run at once per
/// server; one more is answered 503. Half the blocking pool: the rest is always there for
/// `/terminate`, `/configure` and the other blocking routes.
pub const SQL_HANDLERS: usize = BLOCKING_THREADS / 2;

/// Which server a request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// Control plane and scrapers; JWT-authenticated unless no key set was configured.
    External,
    /// Local callers (Postgres itself); no authentication; loopback unless a flag says so.
    Internal,
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound (in use, not ours, no permission).
    #[error("binding the HTTP API to {address}:{port}: {error}; choose another port")]
    Bind {
        /// The address.
        address: IpAddr,
        /// The port.
        port: u16,
        /// The system's error.
        error: io::Error,
    },
    /// Its runtime or thread could not be started.
    #[error("starting the HTTP {what}: {error}")]
    Start {
        /// `runtime` or `server thread`.
        what: &'static str,
        /// The system's error.
        error: io::Error,
    },
}

/// Binds `address:port` and serves `router` (the server's routes, [`crate::routes::router`])
/// on a thread of its own, with `deadlines`; `in_flight` counts the requests being answered.
pub fn serve(
    router: axum::Router,
    in_flight: Arc<AtomicUsize>,
    deadlines: Deadlines,
    (address, port): (IpAddr, u16),
    which: Port,
) -> Result<SocketAddr, ServeError> {
    let bind_error = |error: io::Error| ServeError::Bind {
        address,
        port,
        error,
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
        .map_err(|error| ServeError::Start {
            what: "runtime",
            error,
        })?;
    tracing::info!(address = %bound, server = ?which, "HTTP API listening");
    let app = app(router, in_flight, which);
    std::thread::Builder::new()
        .name(format!("http-{which:?}"))
        .spawn(move || runtime.block_on(accept_loop(listener, app, deadlines, which)))
        .map_err(|error| ServeError::Start {
            what: "server thread",
            error,
        })?;
    Ok(bound)
}

async fn accept_loop(
    listener: std::net::TcpListener,
    app: axum::Router,
    deadlines: Deadlines,
    which: Port,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, server = ?which, "the HTTP server cannot use its socket");
            return;
        }
    };
    let slots = Slots::new(MAX_CONNECTIONS);
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
        match slots.admit() {
            Some(slot) => {
                let app = app.clone();
                let slots = slots.clone();
                tokio::spawn(async move {
                    connection(stream, app, deadlines, which, &slot).await;
                    slots.release(&slot);
                });
            }
            None => {
                tokio::spawn(refuse(stream));
            }
        }
    }
}

/// The server's router with its layers: the request id outermost (so every answer, 404 and
/// 405 included, carries it), then the log line and in-flight count.
fn app(router: axum::Router, in_flight: Arc<AtomicUsize>, which: Port) -> axum::Router {
    let request_id = HeaderName::from_static("x-request-id");
    router
        .layer(axum::middleware::from_fn_with_state(
            (in_flight, which),
            log_request,
        ))
        .layer(
            ServiceBuilder::new()
                .map_request(visible_request_id)
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(request_id)),
        )
}

/// Drops an `x-request-id` that is not visible ASCII, so that a UUID replaces it.
fn visible_request_id(mut request: Request) -> Request {
    let unreadable = request
        .headers()
        .get("x-request-id")
        .is_some_and(|value| value.to_str().is_err());
    if unreadable {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// Answers a connection over the cap (every open one has a request in flight) with 503 and
/// closes it, without reading it.
async fn refuse(mut stream: TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
content-length: 49\r\nconnection: close\r\n\r\n{\"error\":\"too many connections; try again later\"}";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
}

/// Serves one connection until it ends or the accept loop evicts it. Each request marks
/// its connection busy when its headers have arrived (and carries its [`Slot`], for the body
/// check), and waiting again once its answer's body is dropped.
async fn connection(
    stream: TcpStream,
    app: axum::Router,
    deadlines: Deadlines,
    which: Port,
    slot: &Arc<Slot>,
) {
    let io = TokioIo::new(WriteDeadline::new(stream, WRITE_TIMEOUT));
    let (on_request, on_answer) = (slot.clone(), slot.clone());
    let app = app
        .map_request(move |mut request: hyper::Request<hyper::body::Incoming>| {
            on_request.busy();
            request.extensions_mut().insert(on_request.clone());
            request
        })
        .map_response(move |response: Response| {
            response.map(|body| axum::body::Body::new(Answering::new(body, on_answer.clone())))
        });
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(deadlines.header)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    tokio::select! {
        served = builder.serve_connection(io, service) => {
            if let Err(error) = served {
                tracing::debug!(%error, server = ?which, "HTTP connection ended with an error");
            }
        }
        () = slot.evicted() => {
            tracing::debug!(server = ?which, "HTTP connection closed to make room for a new one");
        }
    }
}

/// One log line per request (its id, method, path, server, status and latency), and the
/// in-flight count while it runs.
async fn log_request(
    State((in_flight, which)): State<(Arc<AtomicUsize>, Port)>,
    request: Request,
    next: Next,
) -> Result<Response, Infallible> {
    let started = Instant::now();
    let in_flight = InFlight::new(in_flight);
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    drop(in_flight);
    tracing::info!(
        request_id = %request_id,
        method = %method,
        path = %path,
        server = ?which,
        status = response.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
        "http request"
    );
    Ok(response)
}

/// One request counted in the server's in-flight count until it is dropped: answered, or
/// abandoned when its client goes away mid-request (hyper then drops the request's future).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(count)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tower::ServiceExt;

    /// A request body that never sends a byte.
    struct Stalled;

    impl hyper::body::Body for Stalled {
        type Data = bytes::Bytes;
        type Error = io::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, io::Error>>> {
            Poll::Pending
        }
    }

    /// A state for a one-route table, without authentication.
    #[derive(Clone)]
    struct Open(Arc<crate::auth::Auth>);

    impl crate::routes::Context for Open {
        fn auth(&self) -> &crate::auth::Auth {
            &self.0
        }

        fn compute_id(&self) -> Option<&str> {
            None
        }

        fn body_deadline(&self) -> Duration {
            BODY_TIMEOUT
        }
    }

    static GRANTS: &[crate::routes::Route<Open>] = &[crate::routes::at(
        "/grants",
        hyper::Method::POST,
        crate::routes::Servers::Internal,
        crate::routes::Access::Open,
        crate::routes::BodyKind::Json,
        crate::routes::Handler::Quick(|_, _| crate::Reply::empty(hyper::StatusCode::CREATED)),
    )];

    #[tokio::test]
    async fn an_abandoned_request_is_no_longer_in_flight() {
        let request = hyper::Request::post("/grants")
            .header("content-type", "application/json")
            .body(axum::body::Body::new(Stalled))
            .unwrap();
        let state = Open(Arc::new(crate::auth::Auth::Open));
        let router = crate::routes::router(GRANTS, &state, Port::Internal);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let answer = app(router, in_flight.clone(), Port::Internal).oneshot(request);
        // The client goes away while its body is awaited: the request's future is dropped.
        let abandoned = tokio::time::timeout(Duration::from_millis(50), answer).await;
        assert!(abandoned.is_err(), "the stalled request was answered");
        assert_eq!(in_flight.load(Ordering::SeqCst), 0);
    }
}
