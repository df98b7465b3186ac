//! Handlers that talk to Postgres hold at most `SQL_HANDLERS` of the blocking pool: when
//! they all hang (a stuck or lock-blocked Postgres), more of them are answered 503 at once and
//! the other blocking routes (`/terminate` in compute-ctl) still get a thread.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use compute_http::auth::Auth;
use compute_http::routes::{self, at, Access, BodyKind, Handler, Route, Servers};
use compute_http::{serve, ApiRequest, Deadlines, Port, Reply, SQL_HANDLERS};
use hyper::{Method, StatusCode};

/// Lets every `/sql` handler return.
static RELEASED: AtomicBool = AtomicBool::new(false);
/// `/sql` handlers running.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone)]
struct Open(Arc<Auth>);

impl routes::Context for Open {
    fn auth(&self) -> &Auth {
        &self.0
    }

    fn compute_id(&self) -> Option<&str> {
        None
    }

    fn body_deadline(&self) -> Duration {
        Duration::from_secs(10)
    }
}

/// A stuck Postgres: blocks its thread until [`RELEASED`] (at most a minute).
fn stuck(_: &Open, _: &ApiRequest) -> Reply {
    RUNNING.fetch_add(1, Ordering::SeqCst);
    let started = Instant::now();
    while !RELEASED.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    Reply::empty(StatusCode::OK)
}

static ROUTES: &[Route<Open>] = &[
    at(
        "/sql",
        Method::GET,
        Servers::External,
        Access::Open,
        BodyKind::Any,
        Handler::Sql(stuck),
    ),
    at(
        "/terminate",
        Method::POST,
        Servers::External,
        Access::Open,
        BodyKind::Any,
        Handler::Blocking(|_, _| Reply::empty(StatusCode::OK)),
    ),
];

fn server() -> SocketAddr {
    let state = Open(Arc::new(Auth::Open));
    serve(
        routes::router(ROUTES, &state, Port::External),
        Arc::new(AtomicUsize::new(0)),
        Deadlines::default(),
        (IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        Port::External,
    )
    .unwrap()
}

fn send(address: SocketAddr, request: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    stream
}

fn status(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = Vec::new();
    if let Err(error) = stream.read_to_end(&mut answer) {
        assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn stuck_sql_handlers_never_queue_the_other_blocking_routes() {
    let address = server();
    let sql = "GET /sql HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    // More than the whole blocking pool.
    let mut requests: Vec<TcpStream> = (0..40).map(|_| send(address, sql)).collect();
    let started = Instant::now();
    while RUNNING.load(Ordering::SeqCst) < SQL_HANDLERS {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(RUNNING.load(Ordering::SeqCst), SQL_HANDLERS);

    let started = Instant::now();
    let mut terminate = send(
        address,
        "POST /terminate HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    let answer = status(&mut terminate);
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took < Duration::from_secs(2), "{took:?}");

    RELEASED.store(true, Ordering::SeqCst);
    let answers: Vec<String> = requests.iter_mut().map(status).collect();
    let ok = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 200"))
        .count();
    let busy: Vec<&String> = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 503"))
        .collect();
    assert_eq!(ok, SQL_HANDLERS, "{answers:?}");
    assert_eq!(busy.len(), 40 - SQL_HANDLERS, "{answers:?}");
    assert!(
        busy[0].contains("requests to Postgres are in flight already"),
        "{}",
        busy[0]
    );
}
