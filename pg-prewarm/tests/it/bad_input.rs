//! State files that are not states, and documents that cannot be used: each refused with an
//! error naming what is wrong, before anything reaches Postgres.

use std::time::Duration;

use pg_prewarm::transfer::{MAX_STATE, MAX_UNCOMPRESSED};
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
    // A byte over the cap, sparse: reading it would take that much memory.
    let huge = dir.path().join("huge.zst");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(MAX_STATE + 1)
        .unwrap();
    let message = prewarm_fails(&huge, 2, "usage");
    let expected = format!(
        ": {} bytes, more than the {MAX_STATE} a state may have",
        MAX_STATE + 1
    );
    assert!(message.ends_with(&expected), "{message}");
}

/// A zstd frame of RLE blocks: `blocks` × 128 KiB of zeros in 4 bytes each.
fn zstd_bomb(blocks: usize) -> Vec<u8> {
    // Magic; a descriptor without content size; a 128 KiB window (2^(10+7)).
    let mut frame = 0xFD2F_B528u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&[0x00, 7 << 3]);
    for index in 0..blocks {
        let last = u32::from(index + 1 == blocks);
        // Block header (little-endian, 3 bytes): last flag, type 1 (RLE), size.
        let header = last | (1 << 1) | ((128 << 10) << 3);
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(0);
    }
    frame
}

#[test]
fn a_zstd_bomb_is_refused_without_the_memory() {
    let dir = TestDir::new("pg-prewarm");
    // ~10 KB expanding to 300 MiB, past the 256 MiB cap (and far past the ratio).
    let blocks = 2400;
    let bomb = zstd_bomb(blocks);
    assert!(blocks * (128 << 10) > MAX_UNCOMPRESSED && bomb.len() < 10_000);
    let path = dir.path().join("bomb.zst");
    std::fs::write(&path, &bomb).unwrap();
    let (run, took, peak_kib) = pg_test_support::run_stage_measured(
        PG_PREWARM,
        &["prewarm", "--file", &path.to_string_lossy()],
        &nowhere(),
        Duration::from_secs(60),
    );
    eprintln!(
        "{} compressed bytes: peak RSS {peak_kib} KiB, {took:?}",
        bomb.len()
    );
    let error = failed(&run.expect_json(), 2, "usage");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("expands past"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(peak_kib < 64 << 10, "peak RSS {peak_kib} KiB");
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

/// An endpoint-storage stand-in: answers every request 404 and records its request line.
fn recording_storage() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = lines.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            seen.lock().unwrap().push(line.trim_end().to_string());
            // The rest of the head, then the answer.
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (address, lines)
}

#[test]
fn a_from_endpoint_cannot_leave_its_place_in_the_storage_path() {
    let (address, requests) = recording_storage();
    let tenant = "0123456789abcdef0123456789abcdef";
    let timeline = "fedcba9876543210fedcba9876543210";
    let mut document: serde_json::Value = serde_json::from_str(&nowhere()).unwrap();
    document["spec"]["tenant_id"] = json!(tenant);
    document["spec"]["timeline_id"] = json!(timeline);
    document["spec"]["endpoint_id"] = json!("ep-own");
    document["spec"]["endpoint_storage_addr"] = json!(address);
    document["spec"]["endpoint_storage_token"] = json!("t0ken");
    let document = document.to_string();
    // Dot segments are refused before any request.
    for dots in ["..", "."] {
        let run = pg_prewarm(&["prewarm", "--from-endpoint", dots], &document);
        let error = failed(&run, 2, "invalid_spec");
        let message = error["message"].as_str().unwrap();
        assert!(message.starts_with("from_endpoint"), "{message}");
    }
    assert!(requests.lock().unwrap().is_empty(), "{:?}", requests.lock());
    // Anything else is one segment: `../x` asks for the object of an endpoint named `../x`,
    // inside this timeline (none here: skipped), never `/{tenant}/x/lfc_state`.
    let run = pg_prewarm(&["prewarm", "--from-endpoint", "../../x"], &document);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json["status"], "skipped");
    let requests = requests.lock().unwrap().clone();
    assert_eq!(
        requests,
        [format!(
            "GET /{tenant}/{timeline}/..%2F..%2Fx/lfc_state HTTP/1.1"
        )]
    );
}
