//! A collector that accepts and never answers delays nothing: exporting only queues, a full
//! queue drops and counts, a flush waits no longer than it is told, and each post ends at its
//! deadline (counted as a failure).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use compute_trace::{Config, Exporter, Span};
use pg_test_support::otlp::SilentCollector;

fn config(endpoint: &str, timeout_ms: &str, queue: &str) -> Config {
    let vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_string()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", timeout_ms.to_string()),
        ("OTEL_BSP_MAX_QUEUE_SIZE", queue.to_string()),
    ];
    Config::from_vars("compute_ctl", |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap()
    .unwrap()
}

#[test]
fn a_silent_collector_blocks_no_caller_and_its_spans_are_dropped_and_counted() {
    let collector = SilentCollector::start();
    // A deadline far beyond the test: only the queue bound keeps callers from waiting.
    let exporter = Exporter::start(config(&collector.endpoint(), "600000", "8")).unwrap();
    let began = Instant::now();
    for _ in 0..100 {
        exporter.export([Span::start("s", None).end().unwrap()]);
    }
    let queued_in = began.elapsed();
    assert!(
        queued_in < Duration::from_millis(200),
        "export waited {queued_in:?}"
    );
    assert!(pg_test_support::wait_until(
        Duration::from_secs(5),
        || collector.accepted() == 1
    ));
    let stats = exporter.stats();
    assert_eq!(stats.exported, 0);
    assert!(
        stats.dropped >= 92,
        "at most 8 spans fit the queue: {stats:?}"
    );
    // A collector that never answered is waited for no longer than the first answer's grace.
    let flushing = Instant::now();
    assert!(!exporter.flush(Duration::from_secs(5)));
    let waited = flushing.elapsed();
    assert!(
        waited < Duration::from_millis(300),
        "flush waited {waited:?}"
    );
}

/// Answers the first request 200, then holds every request and connection unanswered.
fn answers_once_then_silent() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let stream = stream.unwrap();
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                loop {
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(value) = lower.strip_prefix("content-length:") {
                            length = value.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                        writer
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .unwrap();
                    } else {
                        // Held open, never answered, until the test process ends.
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }
            });
        }
    });
    (endpoint, requests)
}

#[test]
fn a_flush_waits_for_a_collector_that_answered_but_not_past_its_bound() {
    let (endpoint, requests) = answers_once_then_silent();
    let exporter = Exporter::start(config(&endpoint, "600000", "100")).unwrap();
    exporter.export([Span::start("s", None).end().unwrap()]);
    assert!(
        exporter.flush(Duration::from_secs(5)),
        "{:?}",
        exporter.stats()
    );
    assert_eq!(exporter.stats().exported, 1);
    // It answered once: a flush now waits for the post under way, up to its bound.
    exporter.export([Span::start("s", None).end().unwrap()]);
    assert!(pg_test_support::wait_until(Duration::from_secs(5), || {
        requests.load(Ordering::SeqCst) == 2
    }));
    let flushing = Instant::now();
    assert!(!exporter.flush(Duration::from_millis(300)));
    let waited = flushing.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "flush waited {waited:?}"
    );
    // Once that post is older than a flush would wait, a flush does not wait.
    let flushing = Instant::now();
    assert!(!exporter.flush(Duration::from_millis(300)));
    assert!(flushing.elapsed() < Duration::from_millis(100));
}

#[test]
fn each_post_ends_at_its_deadline_and_counts_as_failed() {
    let collector = SilentCollector::start();
    let exporter = Exporter::start(config(&collector.endpoint(), "200", "100")).unwrap();
    exporter.export([Span::start("s", None).end().unwrap()]);
    assert!(pg_test_support::wait_until(Duration::from_secs(5), || {
        exporter.stats().failed_exports == 1
    }));
    assert_eq!(exporter.stats().dropped, 1);
    // The exporter goes on: the next batch is posted on a new connection.
    exporter.export([Span::start("s", None).end().unwrap()]);
    assert!(pg_test_support::wait_until(
        Duration::from_secs(5),
        || collector.accepted() >= 2
    ));
}
