//! The `pg-extensions-fetch` binary on documents: without `remote_extensions`, without
//! `-r`, with a bad control file name, without `pg_config`, without a spec.
#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

/// A minimal installation: `pg_config` (copied: it finds the directories relative to its
/// own path) and the two directories it reports.
fn installation(root: &Path) -> PathBuf {
    let real = common::real_bin_dir();
    let version = real.parent().unwrap().file_name().unwrap().to_owned();
    let bin = root.join("usr/lib/postgresql").join(&version).join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(root.join("usr/lib/postgresql").join(&version).join("lib")).unwrap();
    fs::create_dir_all(
        root.join("usr/share/postgresql")
            .join(&version)
            .join("extension"),
    )
    .unwrap();
    fs::copy(real.join("pg_config"), bin.join("pg_config")).unwrap();
    bin.join("postgres")
}

fn run(pgbin: &Path, args: &[&str], spec: Value) -> (i32, Value) {
    let document = json!({
        "document_version": 1,
        "spec": spec,
        "pgdata": "/nonexistent/pgdata",
        "pgbin": pgbin,
        "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": 5432, "socket_dir": "/tmp"}
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_pg-extensions-fetch"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A usage error exits before reading stdin: the write may fail then.
    let _ = serde_json::to_writer(child.stdin.take().unwrap(), &document);
    let output = child.wait_with_output().unwrap();
    let stdout = if output.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&output.stdout).unwrap()
    };
    (output.status.code().unwrap(), stdout)
}

fn spec(remote: Option<Value>) -> Value {
    let mut spec = json!({
        "format_version": 1.0,
        "cluster": {"roles": [], "databases": [], "settings": [
            {"name": "shared_preload_libraries", "value": "anon", "vartype": "string"}
        ]}
    });
    if let Some(remote) = remote {
        spec["remote_extensions"] = remote;
    }
    spec
}

fn remote(control_file: &str) -> Value {
    json!({
        "public_extensions": ["anon"],
        "library_index": {"anon": "anon"},
        "extension_data": {"anon": {
            "control_data": {control_file: "default_version = '1.0'\n"},
            "archive_path": "x",
            "kept": "an unknown field"
        }},
        "also_kept": 1
    })
}

#[test]
fn without_remote_extensions_nothing_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let pgbin = installation(dir.path());
    let before = common::tree(dir.path());
    let (code, document) = run(&pgbin, &["-r", "http://127.0.0.1:9/"], spec(None));
    assert_eq!(code, 0, "{document}");
    assert_eq!(
        document["extensions"],
        json!({"base_url": "http://127.0.0.1:9/", "control_files_written": 0, "preloaded": [],
               "load_ext_ms": 0, "num_ext_downloaded": 0, "largest_ext_size": 0,
               "total_ext_download_size": 0})
    );
    assert_eq!(common::tree(dir.path()), before);
}

#[test]
fn without_a_base_url_only_control_files_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let pgbin = installation(dir.path());
    let (code, document) = run(&pgbin, &[], spec(Some(remote("anon.control"))));
    assert_eq!(code, 0, "{document}");
    let section = &document["extensions"];
    assert_eq!(section["control_files_written"], 1, "{section}");
    assert_eq!(section["num_ext_downloaded"], 0, "{section}");
    assert_eq!(section["preloaded"], json!([]), "{section}");
    let extension_dir = PathBuf::from(section["extension_dir"].as_str().unwrap());
    assert!(extension_dir.starts_with(dir.path()), "{section}");
    assert_eq!(
        fs::read_to_string(extension_dir.join("anon.control")).unwrap(),
        "default_version = '1.0'\n"
    );
    // Unknown fields of remote_extensions pass through.
    let passed = &document["spec"]["remote_extensions"];
    assert_eq!(passed["also_kept"], 1);
    assert_eq!(passed["extension_data"]["anon"]["kept"], "an unknown field");
    // An existing control file is kept as it is.
    fs::write(extension_dir.join("anon.control"), "local\n").unwrap();
    let (code, document) = run(&pgbin, &[], spec(Some(remote("anon.control"))));
    assert_eq!(code, 0, "{document}");
    assert_eq!(document["extensions"]["control_files_written"], 0);
    assert_eq!(
        fs::read_to_string(extension_dir.join("anon.control")).unwrap(),
        "local\n"
    );
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pgbin = installation(dir.path());

    let (code, envelope) = run(&pgbin, &[], spec(Some(remote("../../evil.control"))));
    assert_eq!(code, 2, "{envelope}");
    let message = envelope["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("remote_extensions.extension_data.anon.control_data"),
        "{message}"
    );

    let (code, envelope) = run(&pgbin, &["-r", "http://x/?token=1"], spec(None));
    assert_eq!(code, 2, "a query string in -r is a usage error: {envelope}");

    let nowhere = dir.path().join("empty/postgres");
    let (code, envelope) = run(&nowhere, &[], spec(Some(remote("anon.control"))));
    assert_eq!(code, 1, "{envelope}");
    let message = envelope["error"]["message"].as_str().unwrap();
    assert!(message.contains("empty/pg_config"), "{message}");
    assert!(message.contains("beside the postgres binary"), "{message}");

    let (code, envelope) = run(&pgbin, &[], Value::Null);
    assert_eq!(code, 2, "{envelope}");
    assert_eq!(envelope["error"]["kind"], "invalid_document");
}

#[test]
fn a_preload_library_that_cannot_be_had_stops_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    let pgbin = installation(dir.path());
    let server = common::ArchiveServer::start();
    let args = ["-r", server.base_url.as_str()];
    let (code, envelope) = run(&pgbin, &args, spec(Some(remote("anon.control"))));
    assert_eq!(code, 1, "{envelope}");
    let message = envelope["error"]["message"].as_str().unwrap();
    assert!(message.contains("library \"anon\""), "{message}");
    assert!(message.contains("cluster.settings"), "{message}");
    assert!(message.contains("404"), "{message}");
    assert_eq!(envelope["error"]["kind"], "network");

    // Installed locally: the failed download is only logged, as upstream.
    let library_dir = pgbin.parent().unwrap().parent().unwrap().join("lib");
    fs::write(library_dir.join("anon.so"), b"local").unwrap();
    let (code, document) = run(&pgbin, &args, spec(Some(remote("anon.control"))));
    assert_eq!(code, 0, "{document}");
    assert_eq!(document["extensions"]["num_ext_downloaded"], 0);
    assert_eq!(
        server.requests("v15", "anon")
            + server.requests("v16", "anon")
            + server.requests("v17", "anon"),
        2
    );
}
