//! The connection cap against clients that hold connections without a request: at the cap
//! the connection waiting longest makes room, a connection with a request in flight never
//! does, and only when every connection is busy is a new one answered 503.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use compute_http::auth::Auth;
use compute_http::routes::{self, at, Access, BodyKind, Handler, Pending, Route, Servers};
use compute_http::{serve, ApiRequest, Deadlines, Port, Reply, MAX_CONNECTIONS};
use hyper::{Method, StatusCode};

/// Lets every `/slow` request answer.
static RELEASED: AtomicBool = AtomicBool::new(false);

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
        Duration::from_secs(60)
    }
}

/// Waits (as a task) until [`RELEASED`], at most a minute.
fn slow(_: Open, _: ApiRequest) -> Pending {
    Box::pin(async {
        let started = Instant::now();
        while !RELEASED.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Reply::empty(StatusCode::OK)
    })
}

static ROUTES: &[Route<Open>] = &[
    at(
        "/fast",
        Method::GET,
        Servers::Both,
        Access::Open,
        BodyKind::Any,
        Handler::Quick(|_, _| Reply::empty(StatusCode::OK)),
    ),
    at(
        "/slow",
        Method::GET,
        Servers::Both,
        Access::Open,
        BodyKind::Any,
        Handler::Waits(slow),
    ),
];

/// A server of [`ROUTES`] with long header and body deadlines (nothing times out during a
/// test); its address and in-flight count.
fn server() -> (SocketAddr, Arc<AtomicUsize>) {
    let state = Open(Arc::new(Auth::Open));
    let router = routes::router(ROUTES, &state, Port::External);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let deadlines = Deadlines {
        header: Duration::from_secs(120),
        body: Duration::from_secs(120),
    };
    let address = serve(
        router,
        in_flight.clone(),
        deadlines,
        (IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        Port::External,
    )
    .unwrap();
    (address, in_flight)
}

fn connect(address: SocketAddr, sends: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(sends).unwrap();
    stream
}

/// What the server sends until it closes (at most `within`).
fn answer(stream: &mut TcpStream, within: Duration) -> String {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == ErrorKind::ConnectionReset => break,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => panic!("no close within {within:?}: {error}"),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// The head of an answer on a connection kept open (the routes here answer without a body).
fn head(stream: &mut TcpStream, within: Duration) -> String {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => panic!("no answer within {within:?}: {error}"),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Whether the server closed `stream` (EOF or reset) within `within`.
fn closed(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut byte = [0u8; 1];
    loop {
        return match stream.read(&mut byte) {
            Ok(0) => true,
            Err(error) if error.kind() == ErrorKind::ConnectionReset => true,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Ok(_) => panic!("the stalled connection got an answer"),
            Err(_) => false,
        };
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(30), "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

const FAST: &[u8] = b"GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
/// Answered, then the connection stays open (idle).
const FAST_KEPT: &[u8] = b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n";
const SLOW: &[u8] = b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
/// Headers never finished.
const STALLED_HEADERS: &[u8] = b"GET /fast HTTP/1.1\r\nHost: x\r\nX-Slow: ";
/// A body promised on an open route and never sent.
const STALLED_BODY: &[u8] = b"GET /fast HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";

#[test]
fn idle_connections_make_room_and_busy_ones_never_do() {
    let (address, in_flight) = server();

    // Every slot busy with a request in flight: a new connection gets 503 at once.
    let mut busy: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| connect(address, SLOW))
        .collect();
    wait_until("every slow request in flight", || {
        in_flight.load(Ordering::SeqCst) == MAX_CONNECTIONS
    });
    let started = Instant::now();
    let refused = answer(&mut connect(address, FAST), Duration::from_secs(10));
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(2));
    RELEASED.store(true, Ordering::SeqCst);
    for stream in &mut busy {
        let answered = answer(stream, Duration::from_secs(30));
        assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    }
    drop(busy);
    wait_until("the slow requests answered", || {
        in_flight.load(Ordering::SeqCst) == 0
    });
    RELEASED.store(false, Ordering::SeqCst);

    // The oldest connection has a request in flight; the others send nothing (or a body
    // that never comes, without a token): new connections evict the stalled ones, oldest
    // first, and the busy one never.
    let mut in_progress = connect(address, SLOW);
    wait_until("the slow request in flight", || {
        in_flight.load(Ordering::SeqCst) == 1
    });
    let mut stalled: Vec<TcpStream> = (1..MAX_CONNECTIONS)
        .map(|index| {
            let sends = if index % 2 == 0 {
                STALLED_BODY
            } else {
                STALLED_HEADERS
            };
            connect(address, sends)
        })
        .collect();
    // The body-stalled requests reach the body check (their headers were read).
    wait_until("the stalled bodies awaited", || {
        in_flight.load(Ordering::SeqCst) == 1 + (MAX_CONNECTIONS - 1) / 2
    });
    // Each newcomer stays open once answered, so each needs a slot of its own.
    let newcomers = 40;
    let mut kept = Vec::new();
    for _ in 0..newcomers {
        let started = Instant::now();
        let mut stream = connect(address, FAST_KEPT);
        let answered = head(&mut stream, Duration::from_secs(10));
        assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
        assert!(started.elapsed() < Duration::from_secs(2));
        kept.push(stream);
    }
    for (index, stream) in stalled.iter_mut().enumerate().take(newcomers) {
        assert!(
            closed(stream, Duration::from_secs(5)),
            "stalled connection {index} (of the oldest {newcomers}) is still open"
        );
    }
    for stream in stalled.iter_mut().skip(newcomers + 1).take(20) {
        assert!(
            !closed(stream, Duration::from_millis(50)),
            "a younger stalled connection was closed"
        );
    }
    RELEASED.store(true, Ordering::SeqCst);
    let answered = answer(&mut in_progress, Duration::from_secs(30));
    assert!(
        answered.starts_with("HTTP/1.1 200"),
        "the request in flight was cut: {answered:?}"
    );
}
