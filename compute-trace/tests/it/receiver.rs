//! Exports to a real OTLP/HTTP receiver: every field arrives as the protobuf classes read it.

use std::time::Duration;

use compute_spec::trace::SpanKind;
use compute_trace::{Config, Exporter, Span, TraceContext};
use pg_test_support::otlp::Receiver;
use pg_test_support::skip_or_fail;
use serde_json::json;

fn config(endpoint: &str, extra: &[(&str, &str)]) -> Config {
    let mut vars = vec![(
        "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
        endpoint.to_string(),
    )];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_vars("compute_ctl", |name| {
        vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .unwrap()
    .unwrap()
}

#[test]
fn spans_arrive_with_their_ids_parents_times_attributes_and_status() {
    let receiver = match Receiver::start(200) {
        Ok(receiver) => receiver,
        Err(why) => return skip_or_fail("receiver::spans_arrive", &why),
    };
    let exporter = Exporter::start(config(
        &receiver.endpoint(),
        &[
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0ken"),
            ("OTEL_RESOURCE_ATTRIBUTES", "compute.id=c-1"),
        ],
    ))
    .unwrap();
    let parent =
        TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let mut root = Span::start("start_compute", Some(&parent));
    let mut child = root.child("fetch");
    child.set_kind(SpanKind::Client);
    child.set("attempt", 2u32);
    child.set("delta", -5i64);
    child.set("source", "pageserver");
    child.set("retried", false);
    child.fail("connection reset");
    let child = child.end().unwrap();
    root.set("total_startup_ms", 12u64);
    let root = root.end().unwrap();
    exporter.export([child.clone(), root.clone()]);
    assert!(
        exporter.flush(Duration::from_secs(10)),
        "{:?}",
        exporter.stats()
    );
    assert_eq!(receiver.errors(), "");
    let spans = receiver.spans();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let fetch = &spans[0];
    assert_eq!(fetch["name"], "fetch");
    assert_eq!(fetch["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(fetch["span_id"], child.span_id.to_string());
    assert_eq!(fetch["parent_span_id"], root.span_id.to_string());
    assert_eq!(fetch["kind"], 3, "SPAN_KIND_CLIENT");
    assert_eq!(fetch["start"], child.start_unix_nanos);
    assert_eq!(fetch["end"], child.end_unix_nanos);
    assert_eq!(
        fetch["attributes"],
        json!({"attempt": 2, "delta": -5, "source": "pageserver", "retried": false})
    );
    assert_eq!(
        (fetch["status"].clone(), fetch["message"].clone()),
        (json!(2), json!("connection reset"))
    );
    let start = &spans[1];
    assert_eq!(start["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(start["kind"], 1, "SPAN_KIND_INTERNAL");
    assert_eq!(start["status"], 0, "unset");
    assert_eq!(
        start["resource"],
        json!({"service.name": "compute_ctl", "compute.id": "c-1"})
    );
    assert_eq!(start["headers"]["authorization"], "Bearer t0ken");
    assert_eq!(exporter.stats().exported, 2);
}

#[test]
fn a_collector_that_refuses_gets_its_batch_counted_as_dropped() {
    let receiver = match Receiver::start(503) {
        Ok(receiver) => receiver,
        Err(why) => return skip_or_fail("receiver::a_collector_that_refuses", &why),
    };
    let exporter = Exporter::start(config(&receiver.endpoint(), &[])).unwrap();
    let spans: Vec<_> = (0..3)
        .map(|_| Span::start("s", None).end().unwrap())
        .collect();
    exporter.export(spans);
    assert!(exporter.flush(Duration::from_secs(10)));
    let stats = exporter.stats();
    assert_eq!(
        (stats.exported, stats.dropped, stats.failed_exports),
        (0, 3, 1)
    );
}
