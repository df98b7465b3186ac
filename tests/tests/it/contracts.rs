//! The published contracts: `docs/examples/pipeline.sh` runs exactly as written, and what the
//! stages really produce validates against the JSON Schemas under `docs/schema/`.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::path::{Path, PathBuf};
use std::process::Command;

use compute_tools_tests::{bin_dir, run_stage, write_sample_spec};
use pg_test_support::{free_tcp_port, TestDir};
use serde_json::Value;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn validator(schema_file: &str) -> jsonschema::Validator {
    let path = repository().join("docs/schema").join(schema_file);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_valid(validator: &jsonschema::Validator, value: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its schema: {errors:?}\n{value}"
    );
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_documented_pipeline_runs_and_its_outputs_match_the_schemas() {
    let dir = TestDir::new("e2e-doc");
    let work = dir.path().join("work");
    let spec = write_sample_spec(dir.path(), free_tcp_port());
    let path = format!(
        "{}:{}:{}",
        bin_dir().display(),
        pg_test_support::pg_bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .arg(repository().join("docs/examples/pipeline.sh"))
        .arg(&work)
        .arg(&spec)
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pipeline.sh failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "app_owner\napp_reader");

    let document = validator("compute-document.schema.json");
    for file in ["doc.json", "plan.json", "reconciled.json"] {
        assert_valid(&document, &read_json(&work.join(file)), file);
    }
    let plan = read_json(&work.join("plan.json"));
    assert_eq!(plan["reconcile"]["dry_run"], true);
    assert!(!plan["reconcile"]["plan"].as_array().unwrap().is_empty());

    let event = validator("supervise-event.schema.json");
    let events = std::fs::read_to_string(work.join("events.jsonl")).unwrap();
    let events: Vec<Value> = events
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    for value in &events {
        assert_valid(&event, value, "event");
    }
    assert_eq!(events.first().unwrap()["event"], "ready");
    assert_eq!(events.last().unwrap()["event"], "exited");
}

#[test]
fn error_envelopes_match_their_schema() {
    let envelope = validator("error-envelope.schema.json");
    let bad_spec = run_stage(
        "compute-spec",
        &["-s", "{\"cluster\": 1}", "-D", "/nonexistent"],
        "",
    );
    assert_valid(&envelope, &bad_spec.json, "compute-spec error");
    let bad_document = run_stage("pg-basebackup-fetch", &[], "{\"document_version\": 1}");
    assert_valid(&envelope, &bad_document.json, "pg-basebackup-fetch error");
    assert_eq!(bad_document.json["error"]["kind"], "invalid_document");
}

/// The typed fields' schemas say what their types read: `last_active` only in the RFC 3339
/// UTC form, a `vartype` or `template` this version does not know kept (any string).
#[test]
fn the_typed_fields_schemas_match_their_types() {
    let event = validator("supervise-event.schema.json");
    let activity = |text: &str| serde_json::json!({"event": "activity", "last_active": text});
    for good in [
        "2026-11-24T22:00:00.123Z",
        "2026-11-24T22:00:00Z",
        "2026-11-24T22:00:00.5+00:00",
    ] {
        assert_valid(&event, &activity(good), good);
        compute_spec::Timestamp::parse(good).unwrap();
    }
    for bad in [
        "2026-11-24 22:00:00.123Z",
        "2026-11-24T22:00:00.123",
        "2026-11-24T22:00:00.123+02:00",
        "2026-11-24T22:00:00.Z",
        "yesterday",
    ] {
        assert!(
            !event.is_valid(&activity(bad)),
            "the schema accepts {bad:?}"
        );
        assert!(compute_spec::Timestamp::parse(bad).is_err(), "{bad:?}");
    }
    let document = validator("compute-document.schema.json");
    let newer = serde_json::json!({
        "document_version": 1,
        "spec": {"format_version": 1.0, "cluster": {"roles": [], "databases": [],
            "settings": [{"name": "x", "value": "1", "vartype": "float"}]}},
        "pgdata": "/data",
        "pgbin": "/usr/bin/postgres",
        "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": 5432, "socket_dir": "/data"},
        "basebackup": {"source": "initdb", "basebackup_ms": 1, "basebackup_bytes": 0,
                       "template": "shared"},
        "reconcile": {"migrations": {"from": 1, "to": 2, "pending": [], "applied": ["0002-x"],
                                     "failed": null}},
    });
    assert_valid(&document, &newer, "a newer stage's document");
    let mut bad = newer.clone();
    bad["reconcile"]["migrations"]["from"] = "one".into();
    assert!(
        !document.is_valid(&bad),
        "the schema accepts a non-integer `from`"
    );
}
