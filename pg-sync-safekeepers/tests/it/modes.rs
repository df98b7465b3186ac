//! Modes that need no network: no storage, Static, Replica; and the contract's edges.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::path::PathBuf;

use crate::util::{document, lsn_and_method, run_doc, run_stage, spec_json};
use serde_json::json;

fn pgbin() -> PathBuf {
    pg_test_support::pg_bin("postgres")
}

#[test]
fn no_storage_is_lsn_zero() {
    let dir = tempfile::tempdir().unwrap();
    let doc = document(&spec_json(json!({})), &dir.path().join("pgdata"), &pgbin());
    let outcome = run_doc(&doc, &["--log-format", "json"]);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(lsn_and_method(&outcome), ("0/0".into(), "none".into()));
    // The rest of the document passes through.
    assert_eq!(outcome.json["pgdata"], json!(doc.pgdata));
    assert!(outcome.json["spec_load"].is_object());
}

#[test]
fn static_uses_the_spec_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_json(json!({"mode": {"Static": "1/16B5A50"}}));
    let outcome = run_doc(&document(&spec, dir.path(), &pgbin()), &[]);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(
        lsn_and_method(&outcome),
        ("1/16B5A50".into(), "static".into())
    );
}

#[test]
fn replica_is_lsn_zero() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_json(json!({"mode": "Replica"}));
    let outcome = run_doc(&document(&spec, dir.path(), &pgbin()), &[]);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(lsn_and_method(&outcome), ("0/0".into(), "replica".into()));
}

#[test]
fn error_envelope_passes_through() {
    let envelope =
        r#"{"error":{"stage":"compute-spec","kind":"io","message":"m","retryable":false}}"#;
    let outcome = run_stage(envelope, &[]);
    assert_eq!(outcome.code, compute_spec::exit_code::RUNTIME as i32);
    assert_eq!(outcome.json["error"]["stage"], "compute-spec");
}

#[test]
fn garbage_is_a_usage_error() {
    let outcome = run_stage("{}", &[]);
    assert_eq!(outcome.code, compute_spec::exit_code::USAGE as i32);
    assert_eq!(outcome.json["error"]["stage"], "pg-sync-safekeepers");
}

#[test]
fn a_newer_stages_values_pass_through_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_json(json!({"mode": "Replica"}));
    let doc = document(&spec, &dir.path().join("pgdata"), &pgbin());
    let mut input = serde_json::to_value(&doc).unwrap();
    let deltas = json!([{"action": "archive_db", "name": "cold", "new_name": null}]);
    let spec_load = json!({"source": "vault", "spec_load_ms": 3, "control_plane_attempts": 0});
    let basebackup = json!({"source": "s3-snapshot", "basebackup_ms": 1, "basebackup_bytes": 2,
                            "attempts": 1, "layers": 5});
    input["spec"]["delta_operations"] = deltas.clone();
    input["spec_load"] = spec_load.clone();
    input["basebackup"] = basebackup.clone();
    let outcome = run_stage(&input.to_string(), &[]);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(lsn_and_method(&outcome), ("0/0".into(), "replica".into()));
    assert_eq!(outcome.json["spec"]["delta_operations"], deltas);
    assert_eq!(outcome.json["spec_load"], spec_load);
    assert_eq!(outcome.json["basebackup"], basebackup);
}
