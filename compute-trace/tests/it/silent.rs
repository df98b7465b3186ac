//! A collector that accepts and never answers delays nothing: exporting only queues, a full
//! queue drops and counts, a flush waits no longer than it is told, and each post ends at its
//! deadline (counted as a failure).

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
    let flushing = Instant::now();
    assert!(!exporter.flush(Duration::from_millis(300)));
    let waited = flushing.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "flush waited {waited:?}"
    );
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
