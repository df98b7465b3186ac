//! The HTTP API's contract: configure, terminate, errors, limits, request ids.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::time::{Duration, Instant};

use crate::common::*;
use pg_test_support::probe::eventually;
use serde_json::json;

#[test]
fn no_spec_waits_in_empty_then_configure_starts_the_compute() {
    let mut harness = Harness::new();
    let mut compute = harness.start(&[]);
    assert_eq!(compute.wait_status("empty")["status"], "empty");
    assert!(!harness.log().contains("sync"), "no stage before a spec");
    assert_eq!(compute.post("/configure", b"{not json").status, 400);
    let missing = compute.post("/configure", b"{}");
    assert_eq!(missing.status, 422);
    assert!(missing.json()["error"].as_str().unwrap().contains("spec"));
    let invalid = json!({"spec": {"format_version": 1.0, "mode": "Primary",
        "tenant_id": "00000000000000000000000000000001", "timeline_id": "00000000000000000000000000000002",
        "pageserver_connstring": "postgresql://ps:6400", "cluster": {"roles": [], "databases": []}},
        "compute_ctl_config": {}});
    let invalid = compute.post("/configure", invalid.to_string().as_bytes());
    assert_eq!(invalid.status, 400);
    assert!(
        invalid.json()["error"]
            .as_str()
            .unwrap()
            .contains("safekeeper"),
        "{}",
        invalid.body
    );

    // Lets measurable time pass in `empty` (a wait for no condition): wait_for_spec_ms must
    // cover it.
    std::thread::sleep(Duration::from_millis(50));
    let body = json!({"spec": empty_spec(Some("bob")), "compute_ctl_config": {}});
    let started = Instant::now();
    let answer = compute.post("/configure", body.to_string().as_bytes());
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["status"], "running");
    assert!(harness.log().contains("roles=bob"));
    let metrics = compute.get("/metrics.json").json();
    assert!(
        metrics["wait_for_spec_ms"].as_u64().unwrap() >= 50,
        "{metrics}"
    );
    assert!(metrics["total_startup_ms"].as_u64().unwrap() <= started.elapsed().as_millis() as u64);

    let terminated = compute.post("/terminate", b"");
    assert_eq!(terminated.status, 200);
    assert_eq!(terminated.json(), json!({"lsn": null}));
    assert_eq!(compute.wait_exit(Duration::from_secs(10)), 0);
}

#[test]
fn reconfigure_a_running_compute_runs_reconcile_with_reconfigure() {
    let mut harness = Harness::new();
    harness.command.env("STANDIN_RECONCILE_SLEEP", "1");
    let compute = harness.start(&["-s", &empty_spec(None).to_string()]);
    compute.wait_status("running");
    let body = json!({"spec": empty_spec(Some("carol")), "compute_ctl_config": {}});
    let port = compute.port;
    let waiter = std::thread::spawn(move || {
        let json = [("Content-Type", "application/json")];
        http(
            port,
            "POST",
            "/configure",
            &json,
            body.to_string().as_bytes(),
        )
    });
    // While the reconcile runs, /status answers at once and says configuration.
    eventually(
        Duration::from_secs(10),
        "/status saying configuration",
        || {
            let asked = Instant::now();
            let status = compute.status();
            assert!(
                asked.elapsed() < Duration::from_millis(500),
                "/status was blocked"
            );
            status == "configuration"
        },
    );
    let during = compute.post(
        "/configure",
        json!({"spec": empty_spec(None), "compute_ctl_config": {}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(during.status, 412);
    assert_eq!(
        during.json()["error"],
        "invalid compute status: configuration"
    );
    let answer = waiter.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["status"], "running");
    let log = harness.log();
    assert!(
        log.contains("reconcile --log-format text --reconfigure roles=carol"),
        "{log}"
    );
    assert!(compute
        .get("/metrics")
        .body
        .contains("compute_ctl_reconciles_total 2"));
}

/// pg-reconcile that fails only with --reconfigure.
const FAILS_ON_RECONFIGURE: &str = r#"import sys, json
doc = json.load(sys.stdin)
if "--reconfigure" in sys.argv:
    print(json.dumps({"error": {"stage": "pg-reconcile", "kind": "postgres", "message": "role \"x\" cannot be altered", "retryable": False}}))
    sys.exit(1)
doc["reconcile"] = {"applied": 0}
print(json.dumps(doc))
"#;

#[test]
fn a_failing_reconfigure_reports_500_and_failed() {
    let mut harness = Harness::new();
    harness.stage("pg-reconcile", FAILS_ON_RECONFIGURE);
    let mut compute = harness.start(&["--embedded-default"]);
    compute.wait_status("running");
    let answer = compute.post(
        "/configure",
        json!({"spec": empty_spec(None), "compute_ctl_config": {}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(answer.status, 500);
    assert!(answer.json()["error"]
        .as_str()
        .unwrap()
        .contains("cannot be altered"));
    let status = compute.wait_status("failed");
    assert!(status["error"].as_str().unwrap().contains("pg-reconcile"));
    assert!(compute
        .get("/metrics")
        .body
        .contains("compute_ctl_reconcile_failures_total 1"));
    // Postgres still runs; unlike upstream (412), /terminate stops it from `failed`.
    let refused = compute.post(
        "/configure",
        json!({"spec": empty_spec(None), "compute_ctl_config": {}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(refused.status, 412);
    let terminated = compute.post("/terminate", b"");
    assert_eq!(terminated.status, 200, "{}", terminated.body);
    assert_eq!(terminated.json(), json!({"lsn": null}));
    assert_eq!(compute.wait_exit(Duration::from_secs(10)), 0);
}

#[test]
fn configure_during_init_is_412_and_errors_are_json() {
    let mut harness = Harness::new();
    harness.command.env("STANDIN_READY_DELAY", "2");
    let compute = harness.start(&["--embedded-default"]);
    compute.wait_status("init");
    let answer = compute.post(
        "/configure",
        json!({"spec": empty_spec(None), "compute_ctl_config": {}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(answer.status, 412);
    assert_eq!(
        answer.json(),
        json!({"error": "invalid compute status: init"})
    );
    let terminate = compute.post("/terminate", b"");
    assert_eq!(terminate.status, 412);

    assert_eq!(compute.get("/nope").status, 404);
    let wrong = compute.get("/configure");
    assert_eq!(wrong.status, 405);
    assert!(wrong.body.is_empty());
    assert!(
        wrong.headers.to_ascii_lowercase().contains("allow: post"),
        "{}",
        wrong.headers
    );
    let wrong = compute.post("/status", b"");
    assert_eq!(wrong.status, 405);
    assert!(
        wrong
            .headers
            .to_ascii_lowercase()
            .contains("allow: get,head"),
        "{}",
        wrong.headers
    );
    assert_eq!(compute.post("/terminate?mode=slow", b"").status, 400);
    let internal = http(harness.internal_port, "GET", "/status", &[], b"");
    assert_eq!(internal.json()["status"], "init");
    assert_eq!(
        http(harness.internal_port, "POST", "/configure", &[], b"{}").status,
        404
    );

    let big = vec![b' '; 2 * 1024 * 1024 + 1];
    let too_big = compute.post("/configure", &big);
    assert_eq!(too_big.status, 413);

    let traced = compute.request("GET", "/healthz", &[("X-Request-Id", "req-123")], b"");
    assert_eq!(traced.status, 200);
    assert!(traced
        .headers
        .to_ascii_lowercase()
        .contains("x-request-id: req-123"));
    let generated = compute.get("/healthz");
    let id = generated
        .headers
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("x-request-id: ")
                .map(str::to_string)
        })
        .unwrap();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    assert_eq!(compute.get("/readyz").status, 503);
}

/// The listening sockets on `port`, as the kernel lists them (`/proc/net/tcp` and `tcp6`):
/// each local address in hex, `0100007F` for 127.0.0.1, thirty-two zeros for `[::]`.
fn listeners_on(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let listening = *state == "0A";
            if listening && local.ends_with(&format!(":{port:04X}")) {
                found.push(local.split(':').next().unwrap().to_string());
            }
        }
    }
    found
}

/// Upstream binds its unauthenticated internal server on `[::]`; ours listens on 127.0.0.1
/// only (the external server, without keys, too).
#[test]
fn the_internal_server_listens_on_loopback_only() {
    let mut harness = Harness::new();
    let compute = harness.start(&[]);
    compute.wait_status("empty");
    assert_eq!(listeners_on(harness.internal_port), ["0100007F"]);
    assert_eq!(listeners_on(harness.port), ["0100007F"]);
}

#[test]
fn terminate_from_empty_does_not_hang() {
    let mut harness = Harness::new();
    let mut compute = harness.start(&[]);
    compute.wait_status("empty");
    assert_eq!(compute.post("/terminate?mode=bogus", b"").status, 400);
    let answer = compute.post("/terminate?mode=immediate", b"");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json(), json!({"lsn": null}));
    assert_eq!(compute.wait_exit(Duration::from_secs(10)), 0);
}

/// `--warm-up-memory always`: before it serves, a compute without a spec runs the memory
/// warm-up on the real Postgres (a throwaway cluster beside PGDATA, gone afterwards); the
/// default (`auto`, no `AUTOSCALING`) does not.
#[test]
fn a_start_without_a_spec_warms_memory_up_when_asked() {
    use std::os::unix::fs::PermissionsExt;
    for (args, warms) in [
        (&[][..], false),
        (&["--warm-up-memory", "always"][..], true),
    ] {
        let mut harness = Harness::new();
        // The postgres user runs the throwaway cluster beside PGDATA.
        std::fs::set_permissions(harness.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let log = harness.path().join("compute-ctl.stderr");
        harness.command.stderr(std::fs::File::create(&log).unwrap());
        let mut compute = harness.start(args);
        compute.wait_status("empty");
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.contains("memory warm-up done"), warms, "{text}");
        assert!(!text.contains("memory warm-up failed"), "{text}");
        assert!(!harness.path().join("pgdata.warmup").exists());
        assert_eq!(compute.post("/terminate?mode=immediate", b"").status, 200);
        assert_eq!(compute.wait_exit(Duration::from_secs(10)), 0);
    }
}

#[test]
fn terminate_a_primary_with_safekeepers_syncs_after_shutdown() {
    let mut harness = Harness::new();
    harness.command.env("STANDIN_PG_EXIT", "0");
    let spec = json!({"format_version": 1.0, "mode": "Primary",
        "tenant_id": "00000000000000000000000000000001", "timeline_id": "00000000000000000000000000000002",
        "pageserver_connstring": "postgresql://no_user@127.0.0.1:6400",
        "safekeeper_connstrings": ["127.0.0.1:5454"],
        "cluster": {"roles": [], "databases": []}});
    let mut compute = harness.start(&["-s", &spec.to_string()]);
    let status = compute.wait_status("running");
    assert_eq!(status["tenant"], "00000000000000000000000000000001");
    assert_eq!(status["timeline"], "00000000000000000000000000000002");
    let pid = supervise_pid(harness.path());
    let answer = compute.post("/terminate?mode=fast", b"");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json(), json!({"lsn": "0/2000000"}));
    assert!(harness
        .log()
        .contains("sync --log-format text --after-shutdown"));
    assert_eq!(compute.wait_exit(Duration::from_secs(10)), 0);
    assert!(!alive(pid));
}

/// Serves one control-plane answer to every request.
fn control_plane(answer: serde_json::Value) -> pg_test_support::fake_http::FakeHttp {
    crate::common::control_plane(std::sync::Arc::new(std::sync::Mutex::new(answer)))
}

#[test]
fn a_control_plane_without_a_spec_leaves_the_compute_empty() {
    let plane = control_plane(json!({"status": "empty", "spec": null,
        "compute_ctl_config": {}}));
    let mut harness = Harness::new();
    let mut compute = harness.start(&["-p", &plane.url(), "-i", "compute-7"]);
    compute.wait_status("empty");
    // Waits out a start that must not happen: without a spec the compute stays `empty`.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(compute.status(), "empty");
    let body = json!({"spec": empty_spec(Some("dave")), "compute_ctl_config": {}});
    let answer = compute.post("/configure", body.to_string().as_bytes());
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(harness.log().contains("roles=dave"));
    compute.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(compute.wait_exit(Duration::from_secs(10)), 0);
}
