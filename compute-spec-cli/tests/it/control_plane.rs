//! Loading a spec from a control plane stand-in: retries on 500/502/503 and undecodable
//! JSON, no retry on other statuses, `status: "empty"` means no spec yet, the bearer token,
//! and a deadline on each whole answer (a server that never answers, or stalls mid-body).

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use compute_spec::error::ErrorKind;
use compute_spec_cli::load::{fetch_from_control_plane, load, SpecSource};
use pg_test_support::fake_http::{FakeHttp, Response};

const SPEC: &str = r#"{"format_version": 1.0, "cluster": {"roles": [], "databases": []}}"#;

/// Serves the given (status, body) answers in order (then 500, which the tests' request
/// counts would show); its log has each request's path and Authorization header.
fn control_plane(answers: Vec<(u16, String)>) -> FakeHttp {
    let answers = Mutex::new(VecDeque::from(answers));
    FakeHttp::start(move |_| match answers.lock().unwrap().pop_front() {
        Some((status, body)) => Response::new(status, body),
        None => Response::new(500, "this test has no answer left"),
    })
}

fn source(url: &str) -> SpecSource {
    SpecSource::ControlPlane {
        base_url: format!("{url}/"),
        compute_id: "compute-1".to_string(),
        token: "cp-token".to_string(),
    }
}

#[test]
fn retries_503_and_garbage_then_succeeds() {
    let attached = format!(
        r#"{{"status": "attached", "spec": {SPEC}, "compute_ctl_config": {{"jwks": {{"keys": []}}}}}}"#
    );
    let server = control_plane(vec![
        (503, "busy".to_string()),
        (200, "{not json".to_string()),
        (200, attached),
    ]);
    let loaded = load(&source(&server.url())).unwrap();
    assert!(loaded.spec.is_some());
    assert_eq!(loaded.control_plane_attempts, 3);
    // Each request as upstream's metric counts it: an undecodable 200 is `200 OK`.
    assert_eq!(
        statuses(&loaded.requests),
        ["503 Service Unavailable", "200 OK", "200 OK"]
    );
    let seen = server.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].target, "/compute/api/v2/computes/compute-1/spec");
    assert_eq!(seen[0].header("Authorization"), Some("Bearer cp-token"));
}

#[test]
fn gives_up_after_three_attempts() {
    let server = control_plane(vec![
        (502, String::new()),
        (502, String::new()),
        (503, String::new()),
    ]);
    let error = load(&source(&server.url())).unwrap_err();
    assert_eq!(error.kind, ErrorKind::Network);
    assert!(error.retryable);
    assert!(error.message.contains("3 attempts"), "{}", error.message);
    assert_eq!(server.requests().len(), 3);
    // The failed requests travel with the error, for compute-ctl's metric.
    assert_eq!(
        statuses(&error.requests),
        [
            "502 Bad Gateway",
            "502 Bad Gateway",
            "503 Service Unavailable"
        ]
    );
}

fn statuses(requests: &[compute_spec::error::PeerRequest]) -> Vec<&str> {
    assert!(requests.iter().all(|request| request.rpc == "GetConfig"));
    requests
        .iter()
        .map(|request| request.http_status.as_str())
        .collect()
}

#[test]
fn a_control_plane_that_does_not_answer_counts_unknown() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let error = load(&source(&url)).unwrap_err();
    assert_eq!(statuses(&error.requests), ["unknown", "unknown", "unknown"]);
}

#[test]
fn other_statuses_are_not_retried() {
    let server = control_plane(vec![
        (404, "unknown compute".to_string()),
        (200, String::new()),
    ]);
    let error = load(&source(&server.url())).unwrap_err();
    assert_eq!(error.kind, ErrorKind::Server);
    assert!(error.message.contains("404"), "{}", error.message);
    assert!(error.message.contains("compute-1"), "{}", error.message);
    assert_eq!(server.requests().len(), 1);
    assert_eq!(statuses(&error.requests), ["404 Not Found"]);
}

#[test]
fn empty_means_no_spec_yet() {
    let empty = r#"{"status": "empty", "compute_ctl_config": {"jwks": {"keys": []}}}"#;
    let server = control_plane(vec![(200, empty.to_string())]);
    let loaded = load(&source(&server.url())).unwrap();
    assert!(loaded.spec.is_none());
}

#[test]
fn attached_without_a_spec_is_an_error() {
    let server = control_plane(vec![(200, r#"{"status": "attached"}"#.to_string())]);
    let error = load(&source(&server.url())).unwrap_err();
    assert_eq!(error.kind, ErrorKind::Server);
}

fn attached() -> String {
    format!(
        r#"{{"status": "attached", "spec": {SPEC}, "compute_ctl_config": {{"jwks": {{"keys": []}}}}}}"#
    )
}

#[test]
fn retries_500_then_succeeds() {
    let server = control_plane(vec![(500, "internal error".to_string()), (200, attached())]);
    let loaded = load(&source(&server.url())).unwrap();
    assert!(loaded.spec.is_some());
    assert_eq!(loaded.control_plane_attempts, 2);
    assert_eq!(server.requests().len(), 2);
}

fn assert_fails_within_deadline(url: &str) {
    let deadline = Duration::from_millis(300);
    let started = Instant::now();
    let error = fetch_from_control_plane(url, "compute-1", "t", deadline).unwrap_err();
    let elapsed = started.elapsed();
    // Three attempts of at most the deadline each, 100 ms apart, and some slack.
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert_eq!(error.kind, ErrorKind::Network);
    assert!(error.retryable);
    let full_url = format!("{url}/compute/api/v2/computes/compute-1/spec");
    assert!(error.message.contains(&full_url), "{}", error.message);
    assert!(error.message.contains("3 attempts"), "{}", error.message);
}

#[test]
fn a_server_that_never_answers_fails_within_the_deadline() {
    let server = FakeHttp::start(|_| Response::stall());
    assert_fails_within_deadline(&server.url());
}

#[test]
fn a_server_that_stalls_mid_body_fails_within_the_deadline() {
    let server = FakeHttp::start(|_| {
        Response::partial(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"status\": ",
        )
    });
    assert_fails_within_deadline(&server.url());
}
