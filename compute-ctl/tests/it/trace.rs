//! compute-ctl's side of tracing, with stand-in stages: each stage run gets `$TRACEPARENT` set
//! to the span of that run (never compute-ctl's own, which it would otherwise inherit), and
//! the spans a stage wrote into its section or its error envelope are exported under it.

use std::time::Duration;

use nix::sys::signal::Signal;
use pg_test_support::otlp::Receiver;
use pg_test_support::skip_or_fail;
use serde_json::Value;

use crate::common::{empty_spec, Harness, SYNC};

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CONTROL_PLANE: &str = "b7ad6b7169203331";

/// A stand-in `pg-sync-safekeepers` that notes the `$TRACEPARENT` it got and records one span
/// under it.
const NOTING_SYNC: &str = r#"import sys, json, os, time
doc = json.load(sys.stdin)
parent = os.environ.get("TRACEPARENT", "")
open(os.path.join(os.environ["STANDIN_DIR"], "traceparent"), "w").write(parent)
doc["sync_safekeepers"] = {"lsn": "0/0", "method": "none"}
if parent:
    _, trace, span, _ = parent.split("-")
    now = time.time_ns()
    doc["sync_safekeepers"]["spans"] = [{"name": "standin", "trace_id": trace,
        "span_id": "1111111111111111", "parent_span_id": span,
        "start_unix_nanos": now - 1000, "end_unix_nanos": now}]
print(json.dumps(doc))
"#;

/// A stand-in `pg-basebackup-fetch` that fails with a span in its error envelope.
const FAILING_WITH_A_SPAN: &str = r#"import sys, json, os, time
sys.stdin.read()
_, trace, span, _ = os.environ["TRACEPARENT"].split("-")
now = time.time_ns()
print(json.dumps({"error": {"stage": "pg-basebackup-fetch", "kind": "network",
    "message": "pageserver refused", "retryable": True,
    "spans": [{"name": "fetch", "trace_id": trace, "span_id": "2222222222222222",
               "parent_span_id": span, "start_unix_nanos": now - 1000,
               "end_unix_nanos": now, "error": "refused"}]}}))
sys.exit(1)
"#;

fn traceparent(harness: &Harness) -> String {
    std::fs::read_to_string(harness.path().join("traceparent")).unwrap()
}

#[test]
fn untraced_a_stage_does_not_inherit_compute_ctl_s_traceparent() {
    let mut harness = Harness::new();
    harness.stage("pg-sync-safekeepers", NOTING_SYNC);
    harness
        .command
        .env("TRACEPARENT", format!("00-{TRACE_ID}-{CONTROL_PLANE}-01"));
    let mut compute = harness.start(&["--embedded-default"]);
    compute.wait_status("running");
    assert_eq!(
        traceparent(&harness),
        "",
        "no trace context without tracing"
    );
    compute.signal(Signal::SIGTERM);
    assert_eq!(compute.wait_exit(Duration::from_secs(20)), 0);
}

#[test]
fn a_stage_runs_under_its_own_span_and_its_spans_are_exported_under_it() {
    let receiver = match Receiver::start(200) {
        Ok(receiver) => receiver,
        Err(why) => return skip_or_fail("trace::a_stage_runs_under_its_own_span", &why),
    };
    let mut harness = Harness::new();
    harness.stage("pg-sync-safekeepers", NOTING_SYNC);
    harness
        .command
        .env("TRACEPARENT", format!("00-{TRACE_ID}-{CONTROL_PLANE}-01"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint());
    let mut compute = harness.start(&["--embedded-default"]);
    compute.wait_status("running");
    compute.signal(Signal::SIGTERM);
    assert_eq!(compute.wait_exit(Duration::from_secs(20)), 0);
    let spans = receiver.spans();
    let named = |name: &str| -> Value {
        spans
            .iter()
            .find(|span| span["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {spans:#?}"))
            .clone()
    };
    let given = traceparent(&harness);
    let run = named("pg-sync-safekeepers");
    assert_eq!(
        given,
        format!("00-{TRACE_ID}-{}-01", run["span_id"].as_str().unwrap())
    );
    assert_eq!(run["parent_span_id"], named("start_compute")["span_id"]);
    assert_eq!(named("start_compute")["parent_span_id"], CONTROL_PLANE);
    assert_eq!(named("standin")["parent_span_id"], run["span_id"]);
    assert_eq!(receiver.errors(), "");
}

#[test]
fn a_failed_stage_s_spans_come_from_its_error_envelope_and_the_start_fails() {
    let receiver = match Receiver::start(200) {
        Ok(receiver) => receiver,
        Err(why) => return skip_or_fail("trace::a_failed_stage_s_spans", &why),
    };
    let mut harness = Harness::new();
    harness.stage("pg-sync-safekeepers", SYNC);
    harness.stage("pg-basebackup-fetch", FAILING_WITH_A_SPAN);
    harness
        .command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint());
    let mut compute = harness.start(&["--embedded-default", "--failed-grace", "0s"]);
    compute.wait_exit(Duration::from_secs(20));
    let spans = receiver.spans();
    let named = |name: &str| -> Value {
        spans
            .iter()
            .find(|span| span["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {spans:#?}"))
            .clone()
    };
    let start = named("start_compute");
    assert_eq!(
        start["parent_span_id"],
        Value::Null,
        "a new trace without TRACEPARENT"
    );
    assert_eq!(start["status"], 2, "{start}");
    let run = named("pg-basebackup-fetch");
    assert_eq!(run["parent_span_id"], start["span_id"]);
    assert_eq!(
        (run["status"].clone(), run["message"].clone()),
        (2.into(), "pageserver refused".into())
    );
    let fetch = named("fetch");
    assert_eq!(fetch["parent_span_id"], run["span_id"]);
    assert_eq!(fetch["message"], "refused");
}

/// A pooled compute's start hangs under the `/configure` that brought its spec (as
/// upstream), whose span hangs under the request's `traceparent`; `/terminate` is traced too.
#[test]
fn a_pooled_start_hangs_under_the_configure_that_brought_the_spec() {
    let receiver = match Receiver::start(200) {
        Ok(receiver) => receiver,
        Err(why) => return skip_or_fail("trace::a_pooled_start_hangs", &why),
    };
    let mut harness = Harness::new();
    harness
        .command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint());
    let mut compute = harness.start(&[]);
    compute.wait_status("empty");
    let body = serde_json::json!({"spec": empty_spec(Some("bob")), "compute_ctl_config": {}});
    let header = format!("00-{TRACE_ID}-{CONTROL_PLANE}-01");
    let headers = [
        ("Content-Type", "application/json"),
        ("traceparent", header.as_str()),
    ];
    let answer = compute.request("POST", "/configure", &headers, body.to_string().as_bytes());
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        compute
            .request("POST", "/terminate", &headers[1..], b"")
            .status,
        200
    );
    assert_eq!(compute.wait_exit(Duration::from_secs(20)), 0);
    let spans = receiver.spans();
    let named = |name: &str| -> Value {
        spans
            .iter()
            .find(|span| span["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {spans:#?}"))
            .clone()
    };
    let configure = named("POST /configure");
    assert_eq!(configure["parent_span_id"], CONTROL_PLANE);
    assert_eq!(configure["attributes"]["http.response.status_code"], 200);
    let start = named("start_compute");
    assert_eq!(start["parent_span_id"], configure["span_id"]);
    assert_eq!(
        named("pg-sync-safekeepers")["parent_span_id"],
        start["span_id"]
    );
    // The compute-spec run before the spec came belongs to no trace.
    let runs = spans.iter().filter(|span| span["name"] == "compute-spec");
    assert!(runs.clone().count() == 1, "{spans:#?}");
    assert_eq!(named("compute-spec")["parent_span_id"], start["span_id"]);
    assert_eq!(named("POST /terminate")["parent_span_id"], CONTROL_PLANE);
    assert!(spans.iter().all(|span| span["trace_id"] == TRACE_ID));
}
