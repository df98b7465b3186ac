//! State files that are not states, and documents that cannot be used: each refused with an
//! error naming what is wrong, before anything reaches Postgres.

use std::time::Duration;

use pg_prewarm::{CachedFork, VanillaState};
use pg_test_support::{run_stage_within, TestDir};

use super::*;

/// A document for a Postgres that is not there: none of these runs gets as far.
fn nowhere() -> String {
    document_for(
        Path::new("/nonexistent"),
        Path::new("/usr/bin"),
        Path::new("/nonexistent"),
        5432,
    )
}

/// `pg-prewarm prewarm --file <path>`, which must fail with `code` and `kind` within 30 s;
/// the message.
fn prewarm_fails(path: &Path, code: u8, kind: &str) -> String {
    let (run, _) = run_stage_within(
        PG_PREWARM,
        &["prewarm", "--file", &path.to_string_lossy()],
        &nowhere(),
        Duration::from_secs(30),
    );
    let error = failed(&run, code, kind);
    assert_eq!(error["stage"], "pg-prewarm");
    error["message"].as_str().unwrap().to_string()
}

#[test]
fn bad_state_files_are_refused_naming_the_file() {
    let dir = TestDir::new("pg-prewarm");
    let named = |name: &str| format!("the state file {}: ", dir.path().join(name).display());

    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, b"not a state at all").unwrap();
    let message = prewarm_fails(&garbage, 2, "usage");
    assert!(
        message.starts_with(&format!("{}decompressing the state", named("garbage"))),
        "{message}"
    );

    let json = dir.path().join("json.zst");
    std::fs::write(&json, zstd::encode_all(&b"{\"x\": 1}"[..], 3).unwrap()).unwrap();
    let message = prewarm_fails(&json, 2, "usage");
    assert!(
        message.starts_with(&format!(
            "{}the stored state is not a pg_buffercache block list",
            named("json.zst")
        )),
        "{message}"
    );

    let other = VanillaState {
        format: "someone-else/1".into(),
        relations: vec![CachedFork {
            database: "postgres".into(),
            tablespace: 1663,
            filenode: 1259,
            fork: 0,
            ranges: vec![(0, 0)],
        }],
    };
    let foreign = dir.path().join("foreign.zst");
    let bytes = serde_json::to_vec(&other).unwrap();
    std::fs::write(&foreign, zstd::encode_all(bytes.as_slice(), 3).unwrap()).unwrap();
    let message = prewarm_fails(&foreign, 2, "usage");
    assert!(
        message.contains("has format \"someone-else/1\""),
        "{message}"
    );

    let missing = dir.path().join("missing.zst");
    let message = prewarm_fails(&missing, 1, "io");
    assert!(
        message.starts_with(&format!("reading the state file {}: ", missing.display())),
        "{message}"
    );
}

#[test]
fn a_fifo_a_directory_or_a_huge_file_is_refused_unread() {
    let dir = TestDir::new("pg-prewarm");
    // A FIFO nobody writes: opening it would wait forever.
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let message = prewarm_fails(&fifo, 2, "usage");
    assert!(message.ends_with(": not a regular file"), "{message}");
    let message = prewarm_fails(dir.path(), 2, "usage");
    assert!(message.ends_with(": not a regular file"), "{message}");
    // 1 GiB and a byte, sparse: reading it would take a gigabyte of memory.
    let huge = dir.path().join("huge.zst");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len((1 << 30) + 1)
        .unwrap();
    let message = prewarm_fails(&huge, 2, "usage");
    assert!(
        message.ends_with(": 1073741825 bytes, more than the 1073741824 a state may have"),
        "{message}"
    );
}

#[test]
fn unusable_documents_fail_naming_what_is_missing() {
    // No --file and no endpoint storage in the spec.
    let run = pg_prewarm(&["offload"], &nowhere());
    let error = failed(&run, 2, "invalid_spec");
    let message = error["message"].as_str().unwrap();
    for field in ["endpoint_storage_addr", "tenant_id", "endpoint_id"] {
        assert!(message.contains(field), "{message}");
    }
    // Not a document at all.
    let run = pg_prewarm(&["prewarm", "--file", "/nonexistent"], "{}");
    failed(&run, 2, "invalid_document");
    // An earlier stage's error passes through.
    let envelope =
        r#"{"error":{"stage":"compute-spec","kind":"io","message":"m","retryable":false}}"#;
    let run = pg_prewarm(&["offload"], envelope);
    assert_eq!(run.code, 1);
    assert_eq!(run.json["error"]["stage"], "compute-spec");
    // The compute's Postgres is not there: the connection error names it.
    let dir = TestDir::new("pg-prewarm");
    let run = pg_prewarm(
        &["offload", "--file", &dir.path().join("s").to_string_lossy()],
        &nowhere(),
    );
    let error = failed(&run, 1, "postgres");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("connecting to the compute's postgres"),
        "{error}"
    );
}
