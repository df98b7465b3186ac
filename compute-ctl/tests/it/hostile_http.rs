//! Hostile HTTP clients: stalled bodies and headers, floods past the connection cap, huge
//! and countless headers. Each case is an attack that stalled or overloaded the earlier
//! thread-pool server; `/status`, `/healthz` and `/metrics` must keep answering.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;
use pg_test_support::probe::eventually;

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Headers that promise a body that never comes (any path, no token needed).
fn stalled_body(port: u16, chunked: bool) -> TcpStream {
    let mut stream = connect(port);
    let framing = if chunked {
        "Transfer-Encoding: chunked\r\n"
    } else {
        "Content-Length: 1000\r\n"
    };
    let head = format!(
        "POST /configure HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

/// Half a request head, never finished.
fn slowloris(port: u16) -> TcpStream {
    let mut stream = connect(port);
    stream
        .write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    stream
}

/// Asks `path` and checks that the answer comes quickly.
fn answers_quickly(port: u16, path: &str) {
    let started = Instant::now();
    let answer = http(port, "GET", path, &[], b"");
    eprintln!("measured: {path} answered in {:?}", started.elapsed());
    assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{path} took {:?}",
        started.elapsed()
    );
}

/// Reads until the server closes; returns what it sent.
fn read_to_close(stream: &mut TcpStream, within: Duration) -> String {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut answer = Vec::new();
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => break,
            // EINTR (seen once with this file sharing a process with the other compute-ctl
            // tests; a read with a timeout is never restarted, signal(7)) is not a close.
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => panic!("not closed after {:?}: {error}", started.elapsed()),
        }
    }
    String::from_utf8_lossy(&answer).to_string()
}

#[test]
fn hundreds_of_stalled_clients_do_not_stop_the_api() {
    let mut harness = Harness::new();
    let compute = harness.start(&["--embedded-default"]);
    compute.wait_status("running");
    let mut hostile = Vec::new();
    for index in 0..400 {
        hostile.push(match index % 3 {
            0 => stalled_body(compute.port, false),
            1 => stalled_body(compute.port, true),
            _ => slowloris(compute.port),
        });
    }
    // Every connection is open and waiting; the API still answers.
    for path in ["/status", "/healthz", "/metrics", "/metrics.json"] {
        answers_quickly(compute.port, path);
    }
    answers_quickly(harness.internal_port, "/status");
    drop(hostile);
}

#[test]
fn stalled_clients_are_cut_off_at_their_deadlines() {
    let mut harness = Harness::new();
    let compute = harness.start(&[
        "--embedded-default",
        "--http-header-timeout",
        "1s",
        "--http-body-timeout",
        "1s",
    ]);
    compute.wait_status("running");
    let mut body = stalled_body(compute.port, false);
    let mut chunked = stalled_body(compute.port, true);
    let mut head = slowloris(compute.port);
    let mut idle = connect(compute.port);
    for (name, stream, expected) in [
        ("stalled body", &mut body, Some("408")),
        ("stalled chunked body", &mut chunked, Some("408")),
        ("unfinished headers", &mut head, None),
        ("idle connection", &mut idle, None),
    ] {
        let started = Instant::now();
        let answer = read_to_close(stream, Duration::from_secs(10));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: closed only after {:?}",
            started.elapsed()
        );
        if let Some(code) = expected {
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {code}")),
                "{name}: {answer}"
            );
        }
    }
    // A keep-alive connection is closed once idle past the header deadline too.
    let mut kept = connect(compute.port);
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut kept, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    answers_quickly(compute.port, "/status");
}

#[test]
fn huge_and_countless_headers_are_refused() {
    let mut harness = Harness::new();
    let compute = harness.start(&["--embedded-default"]);
    compute.wait_status("running");
    let big = "x".repeat(1024 * 1024);
    let mut stream = connect(compute.port);
    let head = format!("GET /status HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    // The server may close before it has read everything; a failed write is a refusal too.
    let _ = stream.write_all(head.as_bytes());
    let answer = read_to_close(&mut stream, Duration::from_secs(10));
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "a 1 MiB header: {}",
        &answer[..answer.len().min(200)]
    );

    let mut many = String::from("GET /status HTTP/1.1\r\nHost: x\r\n");
    for index in 0..100_000 {
        many.push_str(&format!("X-{index}: y\r\n"));
    }
    many.push_str("\r\n");
    let mut stream = connect(compute.port);
    let _ = stream.write_all(many.as_bytes());
    let answer = read_to_close(&mut stream, Duration::from_secs(10));
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "100k headers: {}",
        &answer[..answer.len().min(200)]
    );
    // Sixty-five headers are too many already; a normal request is fine.
    let mut stream = connect(compute.port);
    let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for index in 0..64 {
        head.push_str(&format!("X-{index}: y\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let answer = read_to_close(&mut stream, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    answers_quickly(compute.port, "/healthz");
}

#[test]
fn connections_past_the_cap_are_refused_fast() {
    let mut harness = Harness::new();
    let compute = harness.start(&["--embedded-default", "--http-header-timeout", "60s"]);
    compute.wait_status("running");
    let mut open = Vec::new();
    for _ in 0..512 {
        open.push(slowloris(compute.port));
    }
    // The 513th connection gets a 503 at once instead of waiting in line.
    let started = Instant::now();
    let mut extra = connect(compute.port);
    let _ = extra.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = read_to_close(&mut extra, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // Capacity comes back as soon as clients leave.
    drop(open);
    eventually(Duration::from_secs(10), "/status answered again", || {
        http(compute.port, "GET", "/status", &[], b"").status == 200
    });
}
