//! The pageserver source against a stand-in serving a real data directory: the exact
//! command and connection parameters, a start with real `postgres`, and the faults.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::util;

use std::sync::OnceLock;
use std::time::Duration;

use compute_spec::exit_code;
use compute_spec::section::SyncSafekeepersSection;
use pg_test_support::{free_tcp_port, TestDir};
use pg_test_support::{Answer, FakeBackend, Script, Silence};
use serde_json::json;

const TENANT: &str = "3aa8fcc61f6d357410b7de754b1d9001";
const TIMELINE: &str = "de5a2f3ab7e1d7cd4e0e6a1c1a5d2f0b";
const OTHER_TIMELINE: &str = "0000000000000000000000000000dead";
const TOKEN: &str = "storage-token";

/// The archive is made once per test binary (it needs a Postgres start and stop).
fn archive() -> &'static [u8] {
    static ARCHIVE: OnceLock<Vec<u8>> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        util::archive::clean_cluster_tar_gz(&[("zenith.signal", b"PREV LSN: none\n")])
    })
}

fn standin(command: &str, cut_first: usize, archive: Vec<u8>) -> FakeBackend {
    FakeBackend::start(Script {
        password: TOKEN.to_string(),
        command: command.to_string(),
        answer: copy(archive),
        cut_first,
        late_error: false,
        ..Default::default()
    })
}

/// The gzip tar as a plain (not `BASE_BACKUP`-framed) COPY OUT.
fn copy(archive: Vec<u8>) -> Answer {
    Answer::Copy {
        bytes: archive,
        replication: false,
    }
}

fn neon_document(
    pgdata: &std::path::Path,
    standin: &FakeBackend,
    timeline: &str,
    token: &str,
) -> compute_spec::document::ComputeDocument {
    let url = standin.url();
    util::document(pgdata, free_tcp_port(), |spec| {
        spec["tenant_id"] = json!(TENANT);
        spec["timeline_id"] = json!(timeline);
        spec["pageserver_connstring"] = json!(url);
        spec["safekeeper_connstrings"] = json!(["127.0.0.1:1"]);
        spec["storage_auth_token"] = json!(token);
    })
}

#[test]
fn fetches_a_startable_pgdata_with_the_exact_command() {
    let command = format!("basebackup {TENANT} {TIMELINE} 0/16B5A50 --gzip");
    let standin = standin(&command, 0, archive().to_vec());
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    let mut document = neon_document(&pgdata, &standin, TIMELINE, TOKEN);
    document.sync_safekeepers = Some(SyncSafekeepersSection {
        lsn: "0/16B5A50".parse().unwrap(),
        method: "test".into(),
        sync_sk_check_ms: None,
        sync_safekeepers_ms: None,
        spans: Vec::new(),
        extra: Default::default(),
    });
    let outcome = util::run_stage(&document, &[]);
    assert_eq!(outcome.code, i32::from(exit_code::OK), "{}", outcome.stderr);
    let section = &outcome.json["basebackup"];
    assert_eq!(section["source"], "pageserver");
    assert_eq!(section["basebackup_bytes"], archive().len() as u64);
    assert!(section["pageserver_connect_micros"].as_u64().unwrap() > 0);
    assert_eq!(section["attempts"], 1);

    let seen = standin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].password, TOKEN);
    assert_eq!(seen[0].commands, [command]);
    let param = |name: &str| {
        seen[0]
            .params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(param("application_name").as_deref(), Some("compute_ctl"));
    assert_eq!(
        param("options").as_deref(),
        Some("-c neon.compute_mode=primary")
    );
    assert_eq!(param("user").as_deref(), Some("no_user"));

    assert!(pgdata.join("neon.signal").exists());
    assert!(pgdata.join("pg_dynshmem").is_symlink());
    assert!(!pgdata.join("standby.signal").exists());
    let postgres = util::RunningPostgres::start(&document);
    let rows = postgres
        .client()
        .query("SELECT v FROM fetched ORDER BY v", &[])
        .unwrap();
    let values: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(values, [1, 2, 3]);
}

#[test]
fn a_stream_cut_midway_is_retried_on_a_fresh_pgdata() {
    // No LSN in the document: the command has none; a replica asks with --replica.
    let command = format!("basebackup {TENANT} {TIMELINE} --gzip --replica");
    let standin = standin(&command, 1, archive().to_vec());
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    let mut document = neon_document(&pgdata, &standin, TIMELINE, TOKEN);
    document.spec.as_mut().unwrap().mode = compute_spec::spec::ComputeMode::Replica;
    let outcome = util::run_stage(&document, &["--retry-initial-ms", "10"]);
    assert_eq!(outcome.code, i32::from(exit_code::OK), "{}", outcome.stderr);
    assert_eq!(outcome.json["basebackup"]["attempts"], 2);
    assert!(
        outcome.stderr.contains("attempt 1 failed"),
        "{}",
        outcome.stderr
    );
    let seen = standin.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1]
            .params
            .iter()
            .find(|(k, _)| k == "options")
            .unwrap()
            .1,
        "-c neon.compute_mode=replica"
    );
    assert!(pgdata.join("standby.signal").exists());
    assert!(pgdata.join("global/pg_control").exists());
}

#[test]
fn an_unknown_timeline_fails_at_once_with_the_servers_message() {
    let command = format!("basebackup {TENANT} {TIMELINE} --gzip");
    let standin = standin(&command, 0, archive().to_vec());
    let dir = TestDir::new("bbf-");
    let document = neon_document(&dir.path().join("pgdata"), &standin, OTHER_TIMELINE, TOKEN);
    let outcome = util::run_stage(&document, &["--retry-initial-ms", "10"]);
    let error = outcome.failed_with(exit_code::RUNTIME, "server");
    assert_eq!(error["retryable"], false);
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("unknown timeline"), "{message}");
    assert!(message.contains(OTHER_TIMELINE), "{message}");
    assert_eq!(standin.seen().len(), 1);
}

#[test]
fn a_bad_token_fails_at_once_as_auth() {
    let command = format!("basebackup {TENANT} {TIMELINE} --gzip");
    let standin = standin(&command, 0, archive().to_vec());
    let dir = TestDir::new("bbf-");
    let document = neon_document(&dir.path().join("pgdata"), &standin, TIMELINE, "wrong");
    let outcome = util::run_stage(&document, &["--retry-initial-ms", "10"]);
    let error = outcome.failed_with(exit_code::RUNTIME, "auth");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );
    assert!(!message.contains("wrong"), "the token leaked: {message}");
    assert_eq!(standin.seen().len(), 1);
}

#[test]
fn a_hostile_archive_from_the_pageserver_is_refused() {
    let command = format!("basebackup {TENANT} {TIMELINE} --gzip");
    let dir = TestDir::new("bbf-");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let evil = "../outside/evil";
    let tar = util::archive::raw_tar(&[util::archive::raw_entry(
        evil,
        tar::EntryType::Regular,
        b"pwned",
        None,
    )]);
    let standin = standin(&command, 0, util::archive::gzip(&tar));
    let document = neon_document(&dir.path().join("pgdata"), &standin, TIMELINE, TOKEN);
    let outcome = util::run_stage(&document, &["--retry-initial-ms", "10"]);
    outcome.failed_with(exit_code::RUNTIME, "refused");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert_eq!(standin.seen().len(), 1);
}

#[test]
fn an_error_after_the_archive_is_not_missed() {
    let command = format!("basebackup {TENANT} {TIMELINE} --gzip");
    let standin = FakeBackend::start(Script {
        password: TOKEN.to_string(),
        command: command.clone(),
        answer: copy(archive().to_vec()),
        cut_first: 0,
        late_error: true,
        ..Default::default()
    });
    let dir = TestDir::new("bbf-");
    let document = neon_document(&dir.path().join("pgdata"), &standin, TIMELINE, TOKEN);
    let outcome = util::run_stage(&document, &["--retry-initial-ms", "10"]);
    let error = outcome.failed_with(exit_code::RUNTIME, "server");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("late failure after the archive"),
        "{message}"
    );
    assert_eq!(standin.seen().len(), 1);
}

/// A pageserver that falls silent at `silence`: with 1 s timeouts and one retry, the stage
/// gives up after two attempts, well within a bound, naming the pageserver.
fn gives_up_on_a_silent_pageserver(silence: Silence) {
    let command = format!("basebackup {TENANT} {TIMELINE} --gzip");
    let standin = FakeBackend::start(Script {
        password: TOKEN.to_string(),
        command,
        answer: copy(archive().to_vec()),
        silence,
        ..Default::default()
    });
    let dir = TestDir::new("bbf-");
    let document = neon_document(&dir.path().join("pgdata"), &standin, TIMELINE, TOKEN);
    let (outcome, took) =
        util::run_stage_within(&document, &util::QUICK_GIVE_UP, Duration::from_secs(30));
    let error = outcome.failed_with(exit_code::RUNTIME, "network");
    assert_eq!(error["retryable"], true);
    let message = error["message"].as_str().unwrap();
    let server = format!("pageserver 127.0.0.1:{}", standin.port);
    assert!(message.contains(&server), "{message}");
    assert!(message.contains("said nothing for 1s"), "{message}");
    assert_eq!(standin.seen().len(), 2, "{}", outcome.stderr);
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_pageserver_silent_after_the_connect_is_given_up_on() {
    gives_up_on_a_silent_pageserver(Silence::AtStartup);
}

#[test]
fn a_pageserver_silent_after_the_command_is_given_up_on() {
    gives_up_on_a_silent_pageserver(Silence::AfterCommand);
}

#[test]
fn a_pageserver_silent_in_the_middle_of_the_stream_is_given_up_on() {
    gives_up_on_a_silent_pageserver(Silence::MidStream);
}

/// A pageserver that never answers (at `silence`) is given up on once nothing has arrived for
/// `--no-progress-timeout`, whatever `--retries` allows: the error names the pageserver and
/// the attempts.
fn gives_up_without_progress(silence: Silence) {
    let command = format!("basebackup {TENANT} {TIMELINE} --gzip");
    let standin = FakeBackend::start(Script {
        password: TOKEN.to_string(),
        command,
        answer: copy(archive().to_vec()),
        silence,
        ..Default::default()
    });
    let dir = TestDir::new("bbf-");
    let document = neon_document(&dir.path().join("pgdata"), &standin, TIMELINE, TOKEN);
    let flags = [
        "--no-progress-timeout",
        "3s",
        "--startup-timeout",
        "1s",
        "--idle-timeout",
        "1s",
        "--retries",
        "100",
        "--retry-initial-ms",
        "10",
        "--retry-multiplier",
        "1",
    ];
    let (outcome, took) = util::run_stage_within(&document, &flags, Duration::from_secs(30));
    eprintln!("{silence:?}: gave up after {took:?}");
    let error = outcome.failed_with(exit_code::RUNTIME, "network");
    let message = error["message"].as_str().unwrap();
    let server = format!("pageserver 127.0.0.1:{}", standin.port);
    assert!(message.contains(&server), "{message}");
    let attempts = standin.seen().len();
    assert!(
        (2..=5).contains(&attempts),
        "{attempts}: {}",
        outcome.stderr
    );
    let gave_up = format!("gave up after {attempts} attempts (no progress for");
    assert!(message.contains(&gave_up), "{message}");
    assert!(message.contains("--no-progress-timeout 3s"), "{message}");
    assert!(took >= Duration::from_millis(2900), "took only {took:?}");
    assert!(took < Duration::from_secs(6), "took {took:?}");
}

#[test]
fn a_pageserver_silent_at_startup_is_given_up_on_without_progress() {
    gives_up_without_progress(Silence::AtStartup);
}

#[test]
fn a_pageserver_silent_after_the_command_is_given_up_on_without_progress() {
    gives_up_without_progress(Silence::AfterCommand);
}

#[test]
fn a_slow_pageserver_that_keeps_sending_is_not_cut() {
    // The archive arrives in 16 KiB messages 10 ms apart: seconds in all, far past the
    // no-progress timeout, but never a second without progress.
    let command = format!("basebackup {TENANT} {TIMELINE} --gzip");
    let standin = FakeBackend::start(Script {
        password: TOKEN.to_string(),
        command,
        answer: copy(archive().to_vec()),
        pace: Some(Duration::from_millis(10)),
        ..Default::default()
    });
    let dir = TestDir::new("bbf-");
    let document = neon_document(&dir.path().join("pgdata"), &standin, TIMELINE, TOKEN);
    let (outcome, took) = util::run_stage_within(
        &document,
        &["--no-progress-timeout", "1s"],
        Duration::from_secs(120),
    );
    eprintln!("{} bytes at a steady pace: {took:?}", archive().len());
    assert_eq!(outcome.code, i32::from(exit_code::OK), "{}", outcome.stderr);
    assert_eq!(outcome.json["basebackup"]["attempts"], 1);
    assert!(
        took > Duration::from_secs(2),
        "not slow enough to tell: {took:?}"
    );
}

#[test]
fn a_corrupt_archive_fails_at_once_not_after_a_minute_of_retries() {
    let command = format!("basebackup {TENANT} {TIMELINE} --gzip");
    let whole = archive();
    let cases = [
        ("not gzip", b"certainly not gzip".repeat(1000)),
        ("gzip, not tar", util::archive::gzip(&[b'A'; 64 << 10])),
        ("gzip cut short", whole[..whole.len() / 2].to_vec()),
    ];
    for (case, bytes) in cases {
        let standin = standin(&command, 0, bytes);
        let dir = TestDir::new("bbf-");
        let document = neon_document(&dir.path().join("pgdata"), &standin, TIMELINE, TOKEN);
        // The default retry policy: ~1 minute of retries if it were retried.
        let (outcome, took) = util::run_stage_within(&document, &[], Duration::from_secs(120));
        eprintln!("{case}: failed after {took:?}");
        let error = outcome.failed_with(exit_code::RUNTIME, "server");
        assert_eq!(error["retryable"], false, "{case}");
        let message = error["message"].as_str().unwrap();
        let server = format!("pageserver 127.0.0.1:{}", standin.port);
        assert!(
            message.starts_with(&format!("{server} sent a corrupt basebackup archive")),
            "{case}: {message}"
        );
        assert_eq!(standin.seen().len(), 1, "{case}: {}", outcome.stderr);
        assert!(took < Duration::from_secs(10), "{case}: took {took:?}");
    }
}

/// Under compute-ctl's `$TRACEPARENT` the stage records a span per fetch attempt (the cut one
/// failed, the next with what it brought) and the configuration, all under the run's span, in
/// its section; it exports nothing itself.
#[test]
fn a_traced_fetch_records_each_attempt_under_the_run_s_span() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let command = format!("basebackup {TENANT} {TIMELINE} --gzip --replica");
    let standin = standin(&command, 1, archive().to_vec());
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    let mut document = neon_document(&pgdata, &standin, TIMELINE, TOKEN);
    document.spec.as_mut().unwrap().mode = compute_spec::spec::ComputeMode::Replica;
    let run = "b7ad6b7169203331";
    let mut child = Command::new(env!("CARGO_BIN_EXE_pg-basebackup-fetch"))
        .args(["--retry-initial-ms", "10"])
        .env(
            "TRACEPARENT",
            format!("00-0af7651916cd43dd8448eb211c80319c-{run}-01"),
        )
        // Set for the stage: it must still not export (only compute-ctl does).
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(&document).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let spans = written["basebackup"]["spans"].as_array().unwrap();
    let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["fetch", "fetch", "configure"]);
    assert!(
        spans
            .iter()
            .all(|s| s["parent_span_id"] == run
                && s["trace_id"] == "0af7651916cd43dd8448eb211c80319c")
    );
    let (first, second) = (&spans[0], &spans[1]);
    assert_eq!(first["attributes"]["attempt"], 1);
    assert!(first["error"].is_string(), "{first}");
    assert_eq!(first["kind"], "client");
    assert_eq!(second["attributes"]["attempt"], 2);
    assert!(second.get("error").is_none(), "{second}");
    assert_eq!(
        second["attributes"]["wire_bytes"],
        written["basebackup"]["basebackup_bytes"]
    );
    assert!(second["attributes"]["files"].as_u64().unwrap() > 0);
    assert!(first["end_unix_nanos"].as_u64() <= second["start_unix_nanos"].as_u64());
}
