//! The HTTP stand-in: answers, the request log (headers, bodies by length and chunked), the
//! misbehaviours (late, never, halfway), and the end of the server on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pg_test_support::fake_http::{json_server, FakeHttp, Response};
use serde_json::json;

/// Sends `request` as it is and reads the answer until the server closes the connection or
/// `timeout` passes; what arrived.
fn exchange(server: &FakeHttp, request: &[u8], timeout: Duration) -> String {
    let mut stream = TcpStream::connect(server.address()).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn requests_are_answered_by_the_handler_and_logged_with_their_status() {
    let server = FakeHttp::start(|request| match request.method.as_str() {
        "PUT" => Response::status(201),
        _ => Response::new(404, "no such object").header("X-Seen", &request.target),
    });
    let answer = exchange(
        &server,
        b"GET /a/b?c=d HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
    assert!(answer.contains("\r\nX-Seen: /a/b?c=d\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nno such object"), "{answer}");
    let answer = exchange(
        &server,
        b"PUT /o HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello",
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 201 Created\r\n"), "{answer}");
    let answer = exchange(
        &server,
        b"PUT /o HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 201 Created\r\n"), "{answer}");
    let log = server.log();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].0.line(), "GET /a/b?c=d");
    assert_eq!(log[0].0.header("authorization"), Some("Bearer t"));
    assert_eq!(log[0].1, 404);
    assert_eq!((log[1].0.body.as_slice(), log[1].1), (&b"hello"[..], 201));
    assert_eq!(log[2].0.body, b"abcde");
    assert_eq!(server.count("/o"), 2);
}

#[test]
fn a_late_answer_a_stalled_one_and_one_cut_halfway() {
    let server = FakeHttp::start(|request| match request.target.as_str() {
        "/late" => Response::status(200).after(Duration::from_millis(300)),
        "/never" => Response::stall(),
        _ => Response::partial("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"a\""),
    });
    let started = Instant::now();
    let answer = exchange(
        &server,
        b"GET /late HTTP/1.1\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Nothing arrives, and the connection stays open (the read times out, no end of file).
    let started = Instant::now();
    let answer = exchange(
        &server,
        b"GET /never HTTP/1.1\r\n\r\n",
        Duration::from_millis(400),
    );
    assert_eq!(answer, "");
    assert!(started.elapsed() >= Duration::from_millis(400));
    let answer = exchange(
        &server,
        b"GET /half HTTP/1.1\r\n\r\n",
        Duration::from_millis(400),
    );
    assert_eq!(
        answer,
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"a\""
    );
    let statuses: Vec<u16> = server.log().iter().map(|(_, status)| *status).collect();
    assert_eq!(statuses, [200, 0, 0]);
}

#[test]
fn a_dropped_server_lets_its_connections_go_and_stops_listening() {
    let server = FakeHttp::start(|_| Response::stall());
    let address = server.address();
    let mut held = TcpStream::connect(address).unwrap();
    held.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(pg_test_support::probe::wait_until(
        Duration::from_secs(5),
        || { server.requests().len() == 1 }
    ));
    let started = Instant::now();
    drop(server);
    let mut rest = Vec::new();
    assert_eq!(held.read_to_end(&mut rest).unwrap(), 0);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(pg_test_support::probe::wait_until(
        Duration::from_secs(5),
        || { TcpStream::connect(address).is_err() }
    ));
}

#[test]
fn the_json_server_answers_the_current_document() {
    let answer = Arc::new(Mutex::new(json!({"status": "empty"})));
    let server = json_server(answer.clone());
    let first = exchange(
        &server,
        b"GET /spec HTTP/1.1\r\n\r\n",
        Duration::from_secs(5),
    );
    *answer.lock().unwrap() = json!({"status": "attached"});
    let second = exchange(
        &server,
        b"GET /spec HTTP/1.1\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(first.contains("application/json"), "{first}");
    assert!(first.ends_with(r#"{"status":"empty"}"#), "{first}");
    assert!(second.ends_with(r#"{"status":"attached"}"#), "{second}");
    assert_eq!(server.log().len(), 2);
}
