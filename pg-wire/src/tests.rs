//! Unit tests of the wire client against a scripted server on a Unix socket: message
//! framing, authentication, result sets, COPY OUT and error mapping.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::thread::JoinHandle;

use std::time::{Duration, Instant};

use pg_test_support::fake_pg::messages::{
    auth, data_row, error, message, read_frontend, ready, row_description,
};
use pg_test_support::fake_pg::{scripted, Scripted};
use postgres_protocol::authentication::md5_hash;

use super::*;

/// The kit's transcript server as a wire endpoint.
fn endpoint(script: &Scripted) -> Endpoint {
    Endpoint::Unix(script.socket())
}

fn startup(password: Option<&str>) -> Startup {
    let mut startup = Startup {
        user: "alice".to_string(),
        params: Vec::new(),
        password: password.map(|p| p.as_bytes().to_vec()),
    };
    startup.set("replication", "true");
    startup
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn trust_then_a_query_returns_named_text_columns() {
    let mut greeting = auth(0, &[]);
    greeting.extend(message(b'S', b"server_version\x0015.0\0"));
    greeting.extend(message(b'K', &[0; 8]));
    greeting.extend(ready());
    let mut answer = row_description(&["systemid", "xlogpos", "dbname"]);
    answer.extend(data_row(&[Some("7"), Some("0/16B5A50"), None]));
    answer.extend(message(b'C', b"IDENTIFY_SYSTEM\0"));
    answer.extend(ready());
    let server = scripted(greeting, vec![answer]);
    let mut connection = Connection::connect(&endpoint(&server), &startup(None), TIMEOUT).unwrap();
    let rows = connection.simple_query("IDENTIFY_SYSTEM").unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get("xlogpos"), Some("0/16B5A50"));
    assert_eq!(rows[0].get("dbname"), None);
    assert_eq!(
        rows[0].columns[0],
        ("systemid".to_string(), Some("7".into()))
    );
    let received = server.received();
    let startup_body = String::from_utf8_lossy(&received[0].1).into_owned();
    assert!(
        startup_body.contains("user\0alice\0replication\0true\0"),
        "{startup_body:?}"
    );
    assert_eq!(received[1].0, b'Q');
    assert_eq!(received[1].1, b"IDENTIFY_SYSTEM\0");
}

#[test]
fn md5_sends_the_salted_hash_not_the_password() {
    let mut ok = auth(0, &[]);
    ok.extend(ready());
    let server = scripted(auth(5, b"salt"), vec![ok]);
    Connection::connect(&endpoint(&server), &startup(Some("pw")), TIMEOUT).unwrap();
    let received = server.received();
    assert_eq!(received[1].0, b'p');
    let sent = String::from_utf8_lossy(&received[1].1).into_owned();
    let expected = md5_hash(b"alice", b"pw", *b"salt");
    assert_eq!(sent.trim_end_matches('\0'), expected);
    assert!(!sent.contains("pw\0"));
}

#[test]
fn a_password_request_without_a_password_is_an_auth_error() {
    let server = scripted(auth(3, &[]), vec![]);
    let error = Connection::connect(&endpoint(&server), &startup(None), TIMEOUT)
        .err()
        .unwrap();
    assert!(matches!(error, WireError::Auth { .. }), "{error:?}");
    assert!(error.is_auth());
    assert!(error.to_string().contains("add password="), "{error}");
}

#[test]
fn a_refused_password_keeps_its_sqlstate_and_never_echoes_the_password() {
    let message = "password authentication failed for user \"alice\"";
    let answer = error("FATAL", "28P01", message);
    let server = scripted(auth(3, &[]), vec![answer]);
    let error = Connection::connect(&endpoint(&server), &startup(Some("hunter2")), TIMEOUT)
        .err()
        .unwrap();
    match &error {
        WireError::Server { severity, code, .. } => {
            assert_eq!((severity.as_str(), code.as_str()), ("FATAL", "28P01"))
        }
        other => panic!("{other:?}"),
    }
    assert!(error.is_auth());
    let text = error.to_string();
    assert!(
        text.contains(message) && text.contains(".s.PGSQL.5432"),
        "{text}"
    );
    assert!(!text.contains("hunter2"));
}

#[test]
fn a_query_error_is_returned_after_ready_for_query() {
    let mut greeting = auth(0, &[]);
    greeting.extend(ready());
    let mut failing = error("ERROR", "42601", "syntax error");
    failing.extend(ready());
    let mut answer = row_description(&["one"]);
    answer.extend(data_row(&[Some("1")]));
    answer.extend(ready());
    let server = scripted(greeting, vec![failing, answer]);
    let mut connection = Connection::connect(&endpoint(&server), &startup(None), TIMEOUT).unwrap();
    let error = connection.simple_query("BOGUS").unwrap_err();
    assert!(matches!(&error, WireError::Server { code, .. } if code == "42601"));
    assert!(!error.is_auth());
    let rows = connection.simple_query("SELECT 1").unwrap();
    assert_eq!(rows[0].get("one"), Some("1"));
}

#[test]
fn copy_out_yields_payloads_then_surfaces_a_late_error() {
    let mut greeting = auth(0, &[]);
    greeting.extend(ready());
    let mut answer = row_description(&["recptr"]);
    answer.extend(data_row(&[Some("0/1")]));
    answer.extend(message(b'H', &[0, 0, 0]));
    answer.extend(message(b'd', b"nbase.tar\0"));
    answer.extend(message(b'd', b"dhello"));
    answer.extend(message(b'c', &[]));
    answer.extend(error("ERROR", "58P01", "could not find WAL"));
    answer.extend(ready());
    let server = scripted(greeting, vec![answer]);
    let mut connection = Connection::connect(&endpoint(&server), &startup(None), TIMEOUT).unwrap();
    let mut copy = connection.copy_out("BASE_BACKUP").unwrap();
    assert_eq!(copy.next_payload().unwrap().unwrap(), &b"nbase.tar\0"[..]);
    assert_eq!(copy.next_payload().unwrap().unwrap(), &b"dhello"[..]);
    assert!(copy.next_payload().unwrap().is_none());
    let error = copy.finish().unwrap_err();
    assert!(
        matches!(&error, WireError::Server { code, .. } if code == "58P01"),
        "{error:?}"
    );
}

#[test]
fn a_server_that_hangs_up_is_closed_and_a_silent_one_times_out() {
    let server = scripted(Vec::new(), vec![]);
    let error = Connection::connect(&endpoint(&server), &startup(None), TIMEOUT)
        .err()
        .unwrap();
    assert!(matches!(error, WireError::Closed { .. }), "{error:?}");
    server.received();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".s.PGSQL.1");
    let _listener = UnixListener::bind(&path).unwrap();
    let started = Instant::now();
    let timeout = Duration::from_millis(100);
    let error = Connection::connect(&Endpoint::Unix(path), &startup(None), timeout)
        .err()
        .unwrap();
    assert!(
        matches!(error, WireError::Timeout { timeout: t, .. } if t == timeout),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_refused_connection_is_an_io_error_naming_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::Unix(dir.path().join(".s.PGSQL.9"));
    let error = Connection::connect(&endpoint, &startup(None), TIMEOUT)
        .err()
        .unwrap();
    assert!(
        matches!(
            error,
            WireError::Io {
                action: "connecting",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains(".s.PGSQL.9"), "{error}");
    assert_eq!(error.endpoint(), endpoint.to_string());
}

#[test]
fn endpoints_and_startup_come_from_the_config() {
    let config: postgres::Config =
        "host=/run/pg,db1,::1 port=5433,5434 user=rep dbname=x password=pw options='-c a=b'"
            .parse()
            .unwrap();
    assert_eq!(
        endpoints(&config),
        vec![
            Endpoint::Unix("/run/pg/.s.PGSQL.5433".into()),
            Endpoint::Tcp("db1".into(), 5434),
            Endpoint::Tcp("::1".into(), 5433),
        ]
    );
    assert_eq!(endpoints(&config)[2].to_string(), "[::1]:5433");
    let startup = Startup::from_config(&config, &[("replication", "true"), ("database", "y")]);
    assert_eq!(startup.user, "rep");
    assert_eq!(startup.password.as_deref(), Some(&b"pw"[..]));
    assert_eq!(startup.get("database"), Some("y"));
    assert_eq!(startup.get("options"), Some("-c a=b"));
    assert_eq!(startup.get("replication"), Some("true"));
    assert!(!format!("{startup:?}").contains("pw"));
}

#[test]
fn copy_out_payloads_can_be_read_in_pieces_and_spliced_into_a_pipe() {
    use std::os::fd::AsFd;
    let mut greeting = auth(0, &[]);
    greeting.extend(ready());
    let mut answer = message(b'H', &[0, 0, 0]);
    answer.extend(message(b'd', b"nbase.tar\0"));
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let mut data = b"d".to_vec();
    data.extend(&big);
    answer.extend(message(b'd', &data));
    answer.extend(message(b'd', b"dtail"));
    answer.extend(message(b'c', &[]));
    answer.extend(message(b'C', b"SELECT\0"));
    answer.extend(ready());
    let server = scripted(greeting, vec![answer]);
    let mut connection = Connection::connect(&endpoint(&server), &startup(None), TIMEOUT).unwrap();
    let mut copy = connection.copy_out("BASE_BACKUP").unwrap();
    copy.read_exactly();
    // The first payload is skipped unread by the next one.
    assert_eq!(copy.next_data().unwrap(), Some(10));
    assert_eq!(copy.next_data().unwrap(), Some(200_001));
    let mut kind = [0u8];
    assert_eq!(copy.read(&mut kind).unwrap(), 1);
    assert_eq!(&kind, b"d");
    let (pipe_out, pipe_in) = nix::unistd::pipe().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(pipe_out), &mut got).unwrap();
        got
    });
    let mut moved = 0;
    loop {
        let n = copy.splice_to(pipe_in.as_fd(), 1 << 20).unwrap();
        if n == 0 {
            break;
        }
        moved += n;
    }
    drop(pipe_in);
    assert_eq!(moved, big.len());
    assert!(reader.join().unwrap() == big, "the spliced bytes differ");
    assert_eq!(copy.next_payload().unwrap().unwrap(), b"dtail");
    assert!(copy.next_data().unwrap().is_none());
    copy.finish().unwrap();
}

/// Accepts one client, lets it start up without a password and reads its query: the
/// stream, ready for the answer.
fn accept_one_query(listener: &UnixListener) -> std::os::unix::net::UnixStream {
    let (mut stream, _) = listener.accept().unwrap();
    read_frontend(&mut stream, true).unwrap();
    let mut greeting = auth(0, &[]);
    greeting.extend(ready());
    stream.write_all(&greeting).unwrap();
    read_frontend(&mut stream, false).unwrap();
    stream
}

/// A server that starts up, answers the query with `answer`, then says nothing and reads
/// nothing until the test drops the sender it returns.
struct Silent {
    _dir: tempfile::TempDir,
    endpoint: Endpoint,
    release: std::sync::mpsc::Sender<()>,
    server: JoinHandle<()>,
}

impl Silent {
    fn start(answer: Vec<u8>) -> Silent {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".s.PGSQL.5432");
        let listener = UnixListener::bind(&path).unwrap();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let mut stream = accept_one_query(&listener);
            stream.write_all(&answer).unwrap();
            let _ = released.recv_timeout(Duration::from_secs(30));
        });
        Silent {
            _dir: dir,
            endpoint: Endpoint::Unix(path),
            release,
            server,
        }
    }

    fn stop(self) {
        drop(self.release);
        self.server.join().unwrap();
    }
}

fn is_timeout_after(error: &WireError, limit: Duration) -> bool {
    matches!(error, WireError::Timeout { timeout, .. } if *timeout == limit)
}

#[test]
fn a_server_silent_mid_copy_times_out_on_read_and_on_splice_without_a_deadline() {
    use std::os::fd::AsFd;
    let mut answer = message(b'H', &[0, 0, 0]);
    let mut first = b"d".to_vec();
    first.extend([1u8; 100]);
    // The message claims more bytes than are sent: the rest never comes.
    let mut cut = message(b'd', &[b'd'; 1000]);
    cut.truncate(500);
    answer.extend(message(b'd', &first));
    answer.extend(cut);
    let idle = Duration::from_millis(200);
    for splice in [false, true] {
        let server = Silent::start(answer.clone());
        let mut connection =
            Connection::connect(&server.endpoint, &startup(None), TIMEOUT).unwrap();
        connection.set_deadline(None);
        connection.set_read_timeout(Some(idle));
        let mut copy = connection.copy_out("BASE_BACKUP").unwrap();
        copy.read_exactly();
        assert_eq!(copy.next_payload().unwrap().unwrap().len(), 101);
        assert_eq!(copy.next_data().unwrap(), Some(1000));
        let started = Instant::now();
        let (_pipe_out, pipe_in) = nix::unistd::pipe().unwrap();
        let error = loop {
            let step = match splice {
                true => copy.splice_to(pipe_in.as_fd(), 1 << 16),
                false => copy.read(&mut [0u8; 4096]),
            };
            match step {
                Ok(n) => assert!(n > 0, "the payload ended early"),
                Err(error) => break error,
            }
        };
        assert!(is_timeout_after(&error, idle), "{error:?}");
        assert!(error.to_string().contains(".s.PGSQL.5432"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(connection);
        server.stop();
    }
}

#[test]
fn a_server_that_stops_reading_times_out_the_write_without_a_deadline() {
    let server = Silent::start(ready());
    let mut connection = Connection::connect(&server.endpoint, &startup(None), TIMEOUT).unwrap();
    connection.simple_query("SELECT 1").unwrap();
    let idle = Duration::from_millis(200);
    connection.set_deadline(None);
    connection.set_read_timeout(Some(idle));
    // Far more than a socket buffer holds: the write must wait for the server to read.
    let sql = format!("SELECT '{}'", "x".repeat(16 << 20));
    let started = Instant::now();
    let error = connection.simple_query(&sql).unwrap_err();
    assert!(is_timeout_after(&error, idle), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(connection);
    server.stop();
}

#[test]
fn a_unix_server_that_accepts_nothing_times_out_the_connect() {
    use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".s.PGSQL.7");
    let listener = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    let address = UnixAddr::new(&path).unwrap();
    socket::bind(listener.as_raw_fd(), &address).unwrap();
    socket::listen(&listener, Backlog::new(0).unwrap()).unwrap();
    // Fill the accept queue (nobody accepts) without blocking.
    let mut queued = Vec::new();
    loop {
        let client = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK,
            None,
        )
        .unwrap();
        match socket::connect(client.as_raw_fd(), &address) {
            Ok(()) => queued.push(client),
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(other) => panic!("filling the queue: {other}"),
        }
        assert!(queued.len() < 1000, "the accept queue never filled");
    }
    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    let error = Connection::connect(&Endpoint::Unix(path), &startup(None), timeout)
        .err()
        .unwrap();
    assert!(is_timeout_after(&error, timeout), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Lookups the stalling stand-in was asked for.
static STALLED_LOOKUPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A resolver that never answers (a dead DNS server): the lookup thread sleeps for an hour.
fn stalling_lookup(_: &str, _: u16) -> std::io::Result<Vec<std::net::SocketAddr>> {
    STALLED_LOOKUPS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(3600));
    Err(std::io::ErrorKind::TimedOut.into())
}

/// A resolver that answers at once with the loopback listener of the test.
fn loopback_lookup(_: &str, port: u16) -> std::io::Result<Vec<std::net::SocketAddr>> {
    Ok(vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))])
}

#[test]
fn a_resolver_that_never_answers_times_out_the_connect() {
    let timeout = Duration::from_millis(300);
    let endpoint = Endpoint::Tcp("db.stalls.invalid".into(), 5432);
    let started = Instant::now();
    let before = STALLED_LOOKUPS.load(std::sync::atomic::Ordering::SeqCst);
    let result = stream::open_with(
        &endpoint,
        "db.stalls.invalid:5432",
        (Instant::now() + timeout, timeout),
        stalling_lookup,
    );
    let elapsed = started.elapsed();
    let error = result.err().expect("a stalled lookup cannot connect");
    assert!(is_timeout_after(&error, timeout), "{error:?}");
    assert!(
        error.to_string().contains("db.stalls.invalid:5432"),
        "the error names the server: {error}"
    );
    assert!(
        STALLED_LOOKUPS.load(std::sync::atomic::Ordering::SeqCst) > before,
        "the host name went through the resolver"
    );
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(2),
        "gave up after {elapsed:?}, not at the deadline"
    );
}

#[test]
fn a_resolver_that_answers_in_time_is_used() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let endpoint = Endpoint::Tcp("db.answers.invalid".into(), port);
    let stream = stream::open_with(
        &endpoint,
        "db.answers.invalid",
        (Instant::now() + TIMEOUT, TIMEOUT),
        loopback_lookup,
    );
    assert!(matches!(stream, Ok(stream::Stream::Tcp(_))));
    listener.accept().unwrap();
}

/// A server that answers the query with a COPY OUT whose one message claims `total` bytes,
/// then sends them `step` bytes every `every` (a trickle, or a steady stream).
fn trickle(
    total: usize,
    step: usize,
    every: Duration,
) -> (tempfile::TempDir, Endpoint, JoinHandle<()>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".s.PGSQL.5432");
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let mut stream = accept_one_query(&listener);
        let mut head = message(b'H', &[0, 0, 0]);
        let length = u32::try_from(total + 4).unwrap();
        head.push(b'd');
        head.extend(length.to_be_bytes());
        stream.write_all(&head).unwrap();
        let mut sent = 0;
        while sent < total {
            let n = step.min(total - sent);
            if stream.write_all(&vec![b'x'; n]).is_err() {
                return;
            }
            sent += n;
            std::thread::sleep(every);
        }
        let mut tail = message(b'c', &[]);
        tail.extend(message(b'C', b"COPY 0\0"));
        tail.extend(ready());
        let _ = stream.write_all(&tail);
    });
    (dir, Endpoint::Unix(path), server)
}

#[test]
fn a_trickling_stream_fails_its_minimum_rate_on_read_and_on_splice() {
    use std::os::fd::AsFd;
    // 1 byte every 10 ms (~100 B/s), each read well inside the 1 s read timeout; the minimum
    // is 1,000 bytes per 300 ms.
    let minimum = Some((1_000, Duration::from_millis(300)));
    for splice in [false, true] {
        let (_dir, endpoint, server) = trickle(100_000, 1, Duration::from_millis(10));
        let mut connection = Connection::connect(&endpoint, &startup(None), TIMEOUT).unwrap();
        connection.set_deadline(None);
        connection.set_read_timeout(Some(Duration::from_secs(1)));
        let mut copy = connection.copy_out("BASE_BACKUP").unwrap();
        copy.read_exactly();
        copy.set_min_rate(minimum);
        assert_eq!(copy.next_data().unwrap(), Some(100_000));
        let started = Instant::now();
        let (pipe_out, pipe_in) = nix::unistd::pipe().unwrap();
        // Drained as the real writer thread does: each one-byte splice takes a pipe slot.
        let drain = std::thread::spawn(move || {
            let mut out = std::fs::File::from(pipe_out);
            std::io::copy(&mut out, &mut std::io::sink()).unwrap()
        });
        let error = loop {
            let step = match splice {
                true => copy.splice_to(pipe_in.as_fd(), 1 << 16),
                false => copy.read(&mut [0u8; 4096]),
            };
            match step {
                Ok(n) => assert!(n > 0, "the payload ended early"),
                Err(error) => break error,
            }
        };
        drop(pipe_in);
        drain.join().unwrap();
        assert!(
            matches!(error, WireError::TooSlow { minimum: 1_000, received, .. } if received < 1_000),
            "{error:?}"
        );
        assert!(error.to_string().contains("less than the 1000"), "{error}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(3),
            "{took:?}"
        );
        drop(connection);
        server.join().unwrap();
    }
}

#[test]
fn a_steady_stream_above_its_minimum_rate_is_read_whole() {
    // 2,000 bytes every 10 ms (~200 kB/s) for about half a second, minimum 1,000 per 100 ms.
    let total = 100_000;
    let (_dir, endpoint, server) = trickle(total, 2_000, Duration::from_millis(10));
    let mut connection = Connection::connect(&endpoint, &startup(None), TIMEOUT).unwrap();
    connection.set_deadline(None);
    connection.set_read_timeout(Some(Duration::from_secs(1)));
    let mut copy = connection.copy_out("BASE_BACKUP").unwrap();
    copy.set_min_rate(Some((1_000, Duration::from_millis(100))));
    let payload = copy.next_payload().unwrap().unwrap();
    assert_eq!(payload.len(), total);
    assert!(copy.next_payload().unwrap().is_none());
    copy.finish().unwrap();
    server.join().unwrap();
}
