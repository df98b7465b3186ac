//! Shared test helpers: build compute documents in-process and run the built binary on them.

#![allow(dead_code)]

use std::path::Path;

use compute_spec::parse::parse_bare;
use compute_spec::ComputeDocument;
use compute_spec_cli::begin::{start_document, DocumentParams};
use serde_json::Value;

/// A bare spec with the given extra top-level fields merged in.
pub fn spec_json(extra: Value) -> String {
    let mut spec = serde_json::json!({
        "format_version": 1.0,
        "cluster": {"roles": [], "databases": [], "settings": []},
        "delta_operations": []
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            spec.insert(key.clone(), value.clone());
        }
    }
    spec.to_string()
}

/// A compute document for `spec`, with `pgdata` and `pgbin` as given.
pub fn document(spec: &str, pgdata: &Path, pgbin: &Path) -> ComputeDocument {
    let loaded = parse_bare(spec, "test spec").unwrap();
    let params = DocumentParams {
        pgdata: pgdata.to_path_buf(),
        pgbin: pgbin.to_path_buf(),
        connstr: "postgresql://cloud_admin@localhost/postgres".to_string(),
        compute_id: None,
        privileged_role_name: "neon_superuser".to_string(),
        socket_dir: None,
    };
    start_document("test", &params, loaded, "test", 0).unwrap()
}

/// What one run of the binary produced.
pub struct Outcome {
    /// Exit code.
    pub code: i32,
    /// stdout parsed as JSON.
    pub stdout: Value,
    /// stderr text.
    pub stderr: String,
}

impl Outcome {
    /// Asserts that stdout is an error envelope of `kind`; the error object.
    pub fn failed_with(&self, kind: &str) -> &Value {
        let error = &self.stdout["error"];
        assert_eq!(error["kind"], kind, "{}", self.stdout);
        error
    }
}

/// Runs the built binary with `args` on `input`.
pub fn run_stage(input: &str, args: &[&str]) -> Outcome {
    let output =
        pg_test_support::run_with_stdin(env!("CARGO_BIN_EXE_pg-sync-safekeepers"), args, input);
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: serde_json::from_str(stdout.trim())
            .unwrap_or_else(|error| panic!("stdout {stdout:?} is not JSON: {error}")),
        stderr: String::from_utf8_lossy(&output.stderr).to_string(),
    }
}

/// Runs the binary on a document.
pub fn run_doc(doc: &ComputeDocument, args: &[&str]) -> Outcome {
    run_stage(&serde_json::to_string(doc).unwrap(), args)
}

/// The section's `lsn` and `method`.
pub fn lsn_and_method(outcome: &Outcome) -> (String, String) {
    let section = &outcome.stdout["sync_safekeepers"];
    assert!(
        section.is_object(),
        "no section; exit {} stdout {} stderr {}",
        outcome.code,
        outcome.stdout,
        outcome.stderr
    );
    (
        section["lsn"].as_str().unwrap().to_string(),
        section["method"].as_str().unwrap().to_string(),
    )
}

pub mod safekeeper;

/// The Neon fixture spec with its safekeepers replaced, a storage token and a mode.
pub fn neon_spec(safekeepers: &[String], token: &str, mode: Value) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/neon/compute_api-cluster_spec.json"
    );
    let mut spec: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for setting in spec["cluster"]["settings"].as_array_mut().unwrap() {
        if setting["name"] == "neon.safekeepers" {
            setting["value"] = Value::String(safekeepers.join(","));
        }
    }
    spec["storage_auth_token"] = Value::String(token.to_string());
    spec["mode"] = mode;
    spec.to_string()
}

/// Writes an executable shell script standing in for Neon's `postgres`.
pub fn fake_postgres(dir: &Path, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("postgres");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}
