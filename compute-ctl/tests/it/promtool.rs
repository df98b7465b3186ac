//! `/metrics` as Prometheus reads it: every scrape of a compute — waiting for a spec, running,
//! after a failed reconfiguration, after a reconfigure — passes `promtool check metrics`
//! (the real tool, Debian's `prometheus` package), and the series a control plane alerts on
//! are there with their labels.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::*;
use serde_json::json;

/// Upstream's names that break Prometheus's naming lint (a unit abbreviated as `ms`); a
/// drop-in replacement keeps them, so their lint lines are the only ones allowed.
const UPSTREAM_NAMES_PROMTOOL_LINTS: &[&str] = &[
    "compute_pg_current_downtime_ms",
    "compute_pg_downtime_ms_total",
];

/// Runs `promtool check metrics` on `text`: a parse error (exit 1) fails, and so does a lint
/// finding (exit 3) about any series but upstream's own names.
fn promtool_accepts(text: &str, when: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/install-deps.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let only_upstream_names = output.status.code() == Some(3)
        && said
            .lines()
            .filter(|line| !line.trim().is_empty())
            .all(|line| {
                UPSTREAM_NAMES_PROMTOOL_LINTS
                    .iter()
                    .any(|name| line.starts_with(&format!("{name} ")))
            });
    assert!(
        output.status.success() || only_upstream_names,
        "promtool check metrics refused the scrape {when} ({}):\n{said}\n--- scrape ---\n{text}",
        output.status,
    );
}

fn scrape(compute: &Compute) -> String {
    let answer = compute.get("/metrics");
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

/// pg-reconcile that fails only with --reconfigure.
const FAILS_ON_RECONFIGURE: &str = r#"import sys, json
doc = json.load(sys.stdin)
if "--reconfigure" in sys.argv:
    print(json.dumps({"error": {"stage": "pg-reconcile", "kind": "postgres", "message": "no", "retryable": False}}))
    sys.exit(1)
doc["reconcile"] = {"applied": 0}
print(json.dumps(doc))
"#;

#[test]
fn every_scrape_passes_promtool() {
    let mut harness = Harness::new();
    let compute = harness.start(&[]);
    compute.wait_status("empty");
    let empty = scrape(&compute);
    promtool_accepts(&empty, "while waiting for a spec");
    assert!(
        empty.contains("compute_ctl_up{") && empty.contains("status=\"empty\""),
        "{empty}"
    );
    drop(compute);

    let mut harness = Harness::new();
    harness.stage("pg-reconcile", FAILS_ON_RECONFIGURE);
    let mut compute = harness.start(&["--embedded-default"]);
    compute.wait_status("running");
    let running = scrape(&compute);
    promtool_accepts(&running, "while running");
    for family in [
        "# TYPE compute_ctl_up gauge",
        "compute_ctl_up{",
        "status=\"running\"",
    ] {
        assert!(running.contains(family), "{family} missing:\n{running}");
    }
    let answer = compute.post(
        "/configure",
        json!({"spec": empty_spec(None), "compute_ctl_config": {}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(answer.status, 500, "{}", answer.body);
    let failed = scrape(&compute);
    promtool_accepts(&failed, "after a failed reconfiguration");
    assert!(failed.contains("status=\"failed\""), "{failed}");
    compute.signal(nix::sys::signal::Signal::SIGTERM);
    compute.wait_exit(std::time::Duration::from_secs(30));
}
