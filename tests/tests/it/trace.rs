//! OpenTelemetry traces of a whole compute, with the real stages and PostgreSQL, exported to a
//! real OTLP receiver (the official `opentelemetry-proto` classes decode every export): the
//! start hangs under the control plane's `TRACEPARENT`, each stage under the start, what a
//! stage records under its run; the stages' spans account for `total_startup_ms`; the
//! requests hang under their `traceparent` header. And a collector that never answers delays
//! no start: its spans are dropped and counted, and no stage ever connects to it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use compute_tools_tests::{compute_ctl_command, wait_running, write_sample_spec, PostgresChild};
use pg_test_support::otlp::{Receiver, SilentCollector};
use pg_test_support::{free_tcp_port, skip_or_fail, wait_until, TestDir};
use serde_json::Value;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";
const REQUEST_PARENT: &str = "00f067aa0ba902b7";

/// A compute-ctl on the sample spec with `env`, and its external port.
fn start(dir: &Path, env: &[(&str, String)]) -> (PostgresChild, u16) {
    let spec = write_sample_spec(dir, free_tcp_port());
    let pgdata = dir.join("pgdata");
    let http_port = free_tcp_port();
    let child = compute_ctl_command(&pgdata, http_port, 0)
        .arg("-S")
        .arg(&spec)
        .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
        .stdin(Stdio::null())
        .spawn()
        .expect("spawning compute-ctl");
    (PostgresChild::new(child, &pgdata), http_port)
}

fn get(port: u16, path: &str) -> String {
    let url = format!("http://127.0.0.1:{port}{path}");
    ureq::get(&url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

fn total_startup_ms(port: u16) -> u64 {
    let metrics: Value = serde_json::from_str(&get(port, "/metrics.json")).unwrap();
    metrics["total_startup_ms"].as_u64().unwrap()
}

/// `POST` with a `traceparent` header; the status.
fn post_traced(port: u16, path: &str, body: &str, span: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .post(&format!("http://127.0.0.1:{port}{path}"))
        .header("Content-Type", "application/json")
        .header("traceparent", &format!("00-{TRACE_ID}-{span}-01"))
        .send(body)
        .unwrap()
        .status()
        .as_u16()
}

fn stop(child: &mut PostgresChild) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(wait_until(Duration::from_secs(30), || child
        .try_wait()
        .unwrap()
        .is_some()));
}

fn ms(span: &Value) -> f64 {
    (span["end"].as_u64().unwrap() - span["start"].as_u64().unwrap()) as f64 / 1e6
}

/// The spans under `parent`, in start order.
fn children<'a>(spans: &'a [Value], parent: &Value) -> Vec<&'a Value> {
    let mut found: Vec<&Value> = spans
        .iter()
        .filter(|span| span["parent_span_id"] == parent["span_id"])
        .collect();
    found.sort_by_key(|span| span["start"].as_u64());
    found
}

/// The tree under `span`, one line per span with its length and what it noted.
fn tree(spans: &[Value], span: &Value, depth: usize, out: &mut String) {
    let attributes: BTreeMap<String, Value> =
        serde_json::from_value(span["attributes"].clone()).unwrap_or_default();
    let noted: Vec<String> = attributes
        .iter()
        .filter(|(key, _)| !key.starts_with("http."))
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    out.push_str(&format!(
        "{:indent$}{} {:.1} ms {}\n",
        "",
        span["name"].as_str().unwrap(),
        ms(span),
        noted.join(" "),
        indent = depth * 2
    ));
    for child in children(spans, span) {
        tree(spans, child, depth + 1, out);
    }
}

fn named<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    spans
        .iter()
        .find(|span| span["name"] == name)
        .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}

#[test]
fn a_start_s_trace_hangs_under_traceparent_and_its_stages_account_for_the_startup() {
    let receiver = match Receiver::start(200) {
        Ok(receiver) => receiver,
        Err(why) => return skip_or_fail("trace::a_start_s_trace", &why),
    };
    let dir = TestDir::new("trace-start");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("TRACEPARENT", format!("00-{TRACE_ID}-{PARENT}-01")),
    ];
    let (mut compute, port) = start(dir.path(), &env);
    wait_running(port, Duration::from_secs(60));
    let total = total_startup_ms(port);
    // A /configure on the running compute: its reconcile hangs under the request.
    // A new role, so its phase runs.
    let mut spec: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("spec.json")).unwrap())
            .unwrap();
    let roles = spec["cluster"]["roles"].as_array_mut().unwrap();
    roles.push(serde_json::json!({"name": "traced", "encrypted_password": null, "options": null}));
    let body = serde_json::json!({"spec": spec, "compute_ctl_config": {}}).to_string();
    assert_eq!(post_traced(port, "/configure", &body, REQUEST_PARENT), 200);
    let metrics = get(port, "/metrics");
    stop(&mut compute);
    let spans = receiver
        .wait_for_span("POST /configure", Duration::from_secs(10))
        .expect("the spans of /configure");
    assert_eq!(receiver.errors(), "", "every export decodes and re-encodes");

    let start = named(&spans, "start_compute");
    assert_eq!(start["trace_id"], TRACE_ID);
    assert_eq!(
        start["parent_span_id"], PARENT,
        "under the control plane's span"
    );
    assert_eq!(start["resource"]["service.name"], "compute_ctl");
    assert_eq!(start["attributes"]["total_startup_ms"], total);
    let stages = children(&spans, start);
    let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "compute-spec",
            "pg-sync-safekeepers",
            "pg-basebackup-fetch",
            "pg-supervise",
            "pg-reconcile"
        ]
    );
    // What the stages recorded themselves hangs under their runs.
    let names_under = |stage: &str| -> Vec<String> {
        children(&spans, named(&spans, stage))
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names_under("compute-spec"), ["load"]);
    assert_eq!(names_under("pg-basebackup-fetch"), ["initdb", "configure"]);
    assert!(
        !names_under("pg-reconcile").is_empty(),
        "reconcile phases: {spans:#?}"
    );
    assert!(spans.iter().filter(|s| s["trace_id"] == TRACE_ID).count() == spans.len());

    // The span is the metric; the stages account for it within a few milliseconds.
    let stages_ms: f64 = stages.iter().map(|span| ms(span)).sum();
    let start_ms = ms(start);
    let mut shown = String::new();
    tree(&spans, start, 0, &mut shown);
    let configure = named(&spans, "POST /configure");
    tree(&spans, configure, 0, &mut shown);
    eprintln!(
        "{shown}total_startup_ms {total}, start_compute {start_ms:.1} ms, stages {stages_ms:.1} ms"
    );
    assert!((start_ms - total as f64).abs() < 1.0, "{shown}");
    assert!(
        (start_ms - stages_ms).abs() <= 15.0,
        "the stages' {stages_ms:.1} ms do not account for {start_ms:.1} ms:\n{shown}"
    );

    assert_eq!(configure["parent_span_id"], REQUEST_PARENT);
    assert_eq!(configure["kind"], 2, "SPAN_KIND_SERVER");
    assert_eq!(configure["attributes"]["http.response.status_code"], 200);
    let under = children(&spans, configure);
    assert_eq!(under.len(), 1, "{shown}");
    assert_eq!(under[0]["name"], "pg-reconcile");
    assert!(!children(&spans, under[0]).is_empty(), "{shown}");
    assert!(
        metrics.contains("compute_ctl_trace_spans_dropped_total 0"),
        "{metrics}"
    );
}

#[test]
fn a_collector_that_never_answers_delays_no_start_and_drops_and_counts_its_spans() {
    let untraced_dir = TestDir::new("trace-baseline");
    let (mut untraced, port) = start(untraced_dir.path(), &[]);
    wait_running(port, Duration::from_secs(60));
    let baseline = total_startup_ms(port);
    let stopping = Instant::now();
    stop(&mut untraced);
    let baseline_stop = stopping.elapsed();

    let collector = SilentCollector::start();
    let dir = TestDir::new("trace-silent");
    // Each export may wait 20 s, and the queue holds 2 spans: only the bound keeps the start
    // from waiting.
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "20000".to_string()),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "2".to_string()),
        ("TRACEPARENT", format!("00-{TRACE_ID}-{PARENT}-01")),
    ];
    let (mut compute, port) = start(dir.path(), &env);
    wait_running(port, Duration::from_secs(60));
    let total = total_startup_ms(port);
    let metrics = get(port, "/metrics");
    let stopping = Instant::now();
    stop(&mut compute);
    let stopped_in = stopping.elapsed();
    eprintln!(
        "total_startup_ms: untraced {baseline}, silent collector {total}; stop: untraced \
         {baseline_stop:?}, silent collector {stopped_in:?}"
    );
    assert!(
        total < baseline + 1500,
        "the start took {total} ms with a silent collector, {baseline} ms without tracing"
    );
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    assert_eq!(counter("compute_ctl_trace_spans_exported_total"), 0);
    assert!(
        counter("compute_ctl_trace_spans_dropped_total") > 0,
        "{metrics}"
    );
    // One connection, compute-ctl's exporter's: no stage ever talked to the collector.
    assert_eq!(collector.accepted(), 1);
    assert!(
        stopped_in < baseline_stop + Duration::from_millis(400),
        "stopping took {stopped_in:?}, {baseline_stop:?} untraced: the exit waited for the collector"
    );
}

#[test]
fn a_stage_run_by_hand_exports_when_asked_and_keeps_its_spans_in_its_section() {
    let receiver = match Receiver::start(200) {
        Ok(receiver) => receiver,
        Err(why) => return skip_or_fail("trace::a_stage_run_by_hand", &why),
    };
    let dir = TestDir::new("trace-hand");
    let output = Command::new(compute_tools_tests::binary("compute-spec"))
        .args(["--embedded-default", "--export-trace", "-D"])
        .arg(dir.path().join("pgdata"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("TRACEPARENT", format!("00-{TRACE_ID}-{PARENT}-01"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    let kept: Vec<&str> = document["spec_load"]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|span| span["name"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["load", "compute-spec"]);
    // Exported before the stage exited.
    let spans = receiver.spans();
    let root = named(&spans, "compute-spec");
    assert_eq!(root["parent_span_id"], PARENT);
    assert_eq!(root["resource"]["service.name"], "compute-spec");
    assert_eq!(named(&spans, "load")["parent_span_id"], root["span_id"]);
    assert_eq!(named(&spans, "load")["attributes"]["source"], "embedded");
}
