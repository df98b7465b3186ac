//! Shared test helpers: build compute documents in-process and run the built binary on them.

#![allow(dead_code)]

use std::path::Path;

use compute_spec::parse::parse_bare;
use compute_spec::ComputeDocument;
use compute_spec_cli::begin::{start_document, DocumentParams};
pub use pg_test_support::StageRun;
use pg_test_support::{Answer, FakeBackend, Script, Silence};
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

/// Runs the built binary with `args` on `input` (stdout must be JSON).
pub fn run_stage(input: &str, args: &[&str]) -> StageRun {
    pg_test_support::run_stage(env!("CARGO_BIN_EXE_pg-sync-safekeepers"), args, input).expect_json()
}

/// Runs the binary on a document.
pub fn run_doc(doc: &ComputeDocument, args: &[&str]) -> StageRun {
    run_stage(&serde_json::to_string(doc).unwrap(), args)
}

/// The section's `lsn` and `method`.
pub fn lsn_and_method(outcome: &StageRun) -> (String, String) {
    let section = &outcome.json["sync_safekeepers"];
    assert!(
        section.is_object(),
        "no section; exit {} stdout {} stderr {}",
        outcome.code,
        outcome.json,
        outcome.stderr
    );
    (
        section["lsn"].as_str().unwrap().to_string(),
        section["method"].as_str().unwrap().to_string(),
    )
}

/// How a safekeeper stand-in behaves.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// Answer `TIMELINE_STATUS` with these `flush_lsn` / `commit_lsn` (term 7).
    Answer(&'static str, &'static str),
    /// Accept and read the startup packet, then never answer.
    Hang,
    /// Start up and authenticate, then take every query and never answer it.
    SilentAfterStartup,
}

/// A safekeeper stand-in (the kit's fake backend) that expects `token` as password; with
/// `Hang` or `SilentAfterStartup` it also stands in for a silent upstream primary.
pub fn safekeeper(behaviour: Behaviour, token: &str) -> FakeBackend {
    let (flush, commit, silence) = match behaviour {
        Behaviour::Answer(flush, commit) => (flush, commit, Silence::Never),
        Behaviour::Hang => ("", "", Silence::AtStartup),
        Behaviour::SilentAfterStartup => ("", "", Silence::AfterCommand),
    };
    let columns = [("term", "7"), ("flush_lsn", flush), ("commit_lsn", commit)];
    FakeBackend::start(Script {
        password: token.to_string(),
        command: "TIMELINE_STATUS".to_string(),
        answer: Answer::Row(
            columns
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        ),
        silence,
        ..Script::default()
    })
}

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
