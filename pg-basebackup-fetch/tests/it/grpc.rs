//! The pageserver source over gRPC (`prefer_protocol: "grpc"`) against the gRPC stand-in
//! (`pg_page_grpc::standin`, a real tonic server): upstream's choice of protocol and shard, the
//! request and metadata, a start with real `postgres`, and every fault — a cut stream
//! retried, silences given up on, a trickle, refused credentials final, the server's errors.

use std::sync::OnceLock;
use std::time::Duration;

use compute_spec::document::{ComputeDocument, PGDATA_MARKER};
use compute_spec::exit_code;
use compute_spec::section::SyncSafekeepersSection;
use pg_page_grpc::standin::{Behaviour, Config, StandIn};
use pg_page_grpc::Code;
use pg_test_support::{free_tcp_port, FakeBackend, Script, TestDir};
use serde_json::json;

use crate::util;

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

/// A stand-in for shard `shard` serving `archive`, with `config` edited by `edit`.
fn standin_with(shard: &str, archive: Vec<u8>, edit: impl FnOnce(&mut Config)) -> StandIn {
    let mut config = Config::new(TENANT, TIMELINE, Some(TOKEN), archive);
    config.shard = shard.to_string();
    edit(&mut config);
    StandIn::start(config).unwrap()
}

fn standin(archive: Vec<u8>) -> StandIn {
    standin_with("0000", archive, |_| {})
}

/// A document whose spec prefers gRPC, with `shards` (key, grpc URL, optional libpq URL).
fn grpc_document(
    pgdata: &std::path::Path,
    shards: &[(&str, String, Option<String>)],
    timeline: &str,
    token: &str,
) -> ComputeDocument {
    let count = if shards.len() == 1 { 0 } else { shards.len() };
    let map: serde_json::Map<String, serde_json::Value> = shards
        .iter()
        .map(|(key, grpc, libpq)| {
            let pageserver = json!({"id": 1, "grpc_url": grpc, "libpq_url": libpq});
            (key.to_string(), json!({"pageservers": [pageserver]}))
        })
        .collect();
    util::document(pgdata, free_tcp_port(), |spec| {
        spec["tenant_id"] = json!(TENANT);
        spec["timeline_id"] = json!(timeline);
        spec["pageserver_connection_info"] = json!({
            "shard_count": count, "stripe_size": (count > 0).then_some(2048),
            "prefer_protocol": "grpc", "shards": map,
        });
        spec["safekeeper_connstrings"] = json!(["127.0.0.1:1"]);
        spec["storage_auth_token"] = json!(token);
    })
}

fn one_shard(pgdata: &std::path::Path, standin: &StandIn, token: &str) -> ComputeDocument {
    grpc_document(pgdata, &[("0000", standin.url(), None)], TIMELINE, token)
}

#[test]
fn a_sharded_grpc_spec_fetches_shard_zero_over_grpc_not_libpq_and_postgres_starts() {
    let shard0 = standin_with("0002", archive().to_vec(), |_| {});
    let shard1 = standin_with("0102", archive().to_vec(), |_| {});
    // Both URLs are given: gRPC is preferred, so the libpq pageserver is never asked.
    let libpq = FakeBackend::start(Script::default());
    let dir = TestDir::new("bbf-grpc-");
    let pgdata = dir.path().join("pgdata");
    let shards = [
        ("0102", shard1.url(), Some(libpq.url())),
        ("0002", shard0.url(), Some(libpq.url())),
    ];
    let mut document = grpc_document(&pgdata, &shards, TIMELINE, TOKEN);
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

    let seen = shard0.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "GetBaseBackup");
    assert_eq!(request.tenant_id.as_deref(), Some(TENANT));
    assert_eq!(request.timeline_id.as_deref(), Some(TIMELINE));
    assert_eq!(request.shard_id.as_deref(), Some("0002"));
    assert_eq!(
        request.authorization.as_deref(),
        Some("Bearer storage-token")
    );
    assert_eq!(request.lsn, 0x16B5A50);
    assert_eq!(
        (request.replica, request.full, request.compression),
        (false, false, 2)
    );
    assert!(shard1.seen().is_empty(), "only shard 0 serves a basebackup");
    assert!(libpq.seen().is_empty(), "libpq was not preferred");

    assert!(pgdata.join("neon.signal").exists());
    let conf = std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap();
    assert!(conf.contains("neon.stripe_size=2048"), "{conf}");
    let postgres = util::RunningPostgres::start(&document);
    let rows = postgres
        .client()
        .query("SELECT v FROM fetched ORDER BY v", &[])
        .unwrap();
    let values: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(values, [1, 2, 3]);
}

#[test]
fn a_cut_stream_is_retried_on_a_fresh_pgdata() {
    let standin = standin(archive().to_vec());
    standin.plan([Behaviour::CutAfter(64 << 10)]);
    let dir = TestDir::new("bbf-grpc-");
    let pgdata = dir.path().join("pgdata");
    let mut document = one_shard(&pgdata, &standin, TOKEN);
    document.spec.as_mut().unwrap().mode = compute_spec::spec::ComputeMode::Replica;
    let outcome = util::run_stage(&document, &["--retry-initial-ms", "10"]);
    assert_eq!(outcome.code, i32::from(exit_code::OK), "{}", outcome.stderr);
    assert_eq!(outcome.json["basebackup"]["attempts"], 2);
    assert!(
        outcome.stderr.contains("attempt 1 failed") && outcome.stderr.contains("connection broke"),
        "{}",
        outcome.stderr
    );
    let seen = standin.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen
        .iter()
        .all(|request| request.replica && request.lsn == 0));
    assert!(pgdata.join("standby.signal").exists());
    assert!(pgdata.join("global/pg_control").exists());
}

/// A wrong or missing token is refused by the server: the stage fails at once (one request,
/// no retry, the default policy's minute of retries not spent), as auth, naming the server,
/// never repeating the token.
#[test]
fn refused_credentials_are_final_naming_the_server() {
    for (token, refusal, code) in [
        ("wrong-token", Code::PermissionDenied, "PERMISSION_DENIED"),
        ("wrong-token", Code::Unauthenticated, "UNAUTHENTICATED"),
    ] {
        let standin = standin_with("0000", archive().to_vec(), |config| {
            config.wrong_token = refusal;
        });
        let dir = TestDir::new("bbf-grpc-");
        let document = one_shard(&dir.path().join("pgdata"), &standin, token);
        let (outcome, took) = util::run_stage_within(&document, &[], Duration::from_secs(60));
        let error = outcome.failed_with(exit_code::RUNTIME, "auth");
        assert_eq!(error["retryable"], false);
        let message = error["message"].as_str().unwrap();
        let server = format!(
            "pageserver 127.0.0.1:{} rejected the credentials",
            standin.port
        );
        assert!(message.starts_with(&server), "{message}");
        assert!(message.contains(code), "{message}");
        assert!(!message.contains(token), "the token leaked: {message}");
        assert_eq!(standin.seen().len(), 1, "{}", outcome.stderr);
        assert!(took < Duration::from_secs(10), "took {took:?}");
    }
}

#[test]
fn an_unknown_timeline_is_final_and_an_unavailable_server_is_retried() {
    let standin = standin(archive().to_vec());
    let dir = TestDir::new("bbf-grpc-");
    let pgdata = dir.path().join("pgdata");
    let shards = [("0000", standin.url(), None)];
    let document = grpc_document(&pgdata, &shards, OTHER_TIMELINE, TOKEN);
    let outcome = util::run_stage(&document, &["--retry-initial-ms", "10"]);
    let error = outcome.failed_with(exit_code::RUNTIME, "server");
    assert_eq!(error["retryable"], false);
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("NOT_FOUND"), "{message}");
    assert!(message.contains(OTHER_TIMELINE), "{message}");
    assert_eq!(standin.seen().len(), 1);
    // A partial PGDATA is never left unmarked: the next start wipes it.
    assert!(!pgdata.exists() || pgdata.join(PGDATA_MARKER).exists());

    let document = one_shard(&pgdata, &standin, TOKEN);
    standin.plan([Behaviour::Fail(Code::Unavailable, "shutting down".into())]);
    let outcome = util::run_stage(&document, &["--retry-initial-ms", "10"]);
    assert_eq!(outcome.code, i32::from(exit_code::OK), "{}", outcome.stderr);
    assert_eq!(outcome.json["basebackup"]["attempts"], 2);
    assert!(
        outcome.stderr.contains("UNAVAILABLE: shutting down"),
        "{}",
        outcome.stderr
    );
}

/// A gRPC pageserver that falls silent as `behaviour` says: with 1 s deadlines and one retry,
/// the stage gives up after two attempts, well within a bound, naming the pageserver.
fn gives_up_on_a_silent_pageserver(behaviour: Behaviour) {
    let standin = standin(archive().to_vec());
    standin.plan([behaviour.clone(), behaviour.clone()]);
    let dir = TestDir::new("bbf-grpc-");
    let document = one_shard(&dir.path().join("pgdata"), &standin, TOKEN);
    let (outcome, took) =
        util::run_stage_within(&document, &util::QUICK_GIVE_UP, Duration::from_secs(30));
    let error = outcome.failed_with(exit_code::RUNTIME, "network");
    assert_eq!(error["retryable"], true);
    let message = error["message"].as_str().unwrap();
    let server = format!("pageserver 127.0.0.1:{}", standin.port);
    assert!(message.contains(&server), "{message}");
    assert!(message.contains("said nothing for 1s"), "{message}");
    assert!(message.contains("gave up after 2 attempts"), "{message}");
    assert_eq!(
        standin.connections(),
        2,
        "{behaviour:?}: {}",
        outcome.stderr
    );
    assert!(
        took < Duration::from_secs(10),
        "{behaviour:?} took {took:?}"
    );
}

#[test]
fn a_grpc_pageserver_silent_at_startup_is_given_up_on() {
    gives_up_on_a_silent_pageserver(Behaviour::SilentAtStartup);
}

#[test]
fn a_grpc_pageserver_silent_after_the_request_is_given_up_on() {
    gives_up_on_a_silent_pageserver(Behaviour::SilentAfterRequest);
}

#[test]
fn a_grpc_pageserver_stalled_mid_stream_is_given_up_on() {
    gives_up_on_a_silent_pageserver(Behaviour::StallAfter(64 << 10));
}

#[test]
fn a_grpc_pageserver_that_never_answers_is_given_up_on_without_progress() {
    let standin = standin(archive().to_vec());
    standin.plan(std::iter::repeat_n(Behaviour::SilentAfterRequest, 100));
    let dir = TestDir::new("bbf-grpc-");
    let document = one_shard(&dir.path().join("pgdata"), &standin, TOKEN);
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
    let error = outcome.failed_with(exit_code::RUNTIME, "network");
    let message = error["message"].as_str().unwrap();
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
fn a_trickling_grpc_pageserver_fails_its_minimum_rate_and_the_retry_succeeds() {
    let standin = standin(archive().to_vec());
    standin.plan([Behaviour::Trickle {
        piece: 1024,
        every: Duration::from_millis(100),
    }]);
    let dir = TestDir::new("bbf-grpc-");
    let document = one_shard(&dir.path().join("pgdata"), &standin, TOKEN);
    let flags = [
        "--min-rate-bytes",
        "65536",
        "--min-rate-window",
        "1s",
        "--retry-initial-ms",
        "10",
    ];
    let (outcome, took) = util::run_stage_within(&document, &flags, Duration::from_secs(30));
    assert_eq!(outcome.code, i32::from(exit_code::OK), "{}", outcome.stderr);
    assert_eq!(outcome.json["basebackup"]["attempts"], 2);
    assert!(
        outcome.stderr.contains("less than the 65536 required"),
        "{}",
        outcome.stderr
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn corrupt_hostile_and_late_failing_archives_are_final() {
    let dir = TestDir::new("bbf-grpc-");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let evil = util::archive::raw_tar(&[util::archive::raw_entry(
        "../outside/evil",
        tar::EntryType::Regular,
        b"pwned",
        None,
    )]);
    let whole = archive();
    let late = Behaviour::FailAfter(whole.len(), Code::Internal, "late failure".into());
    let cases = [
        (
            "not gzip",
            b"certainly not gzip".repeat(1000),
            Behaviour::Serve,
            "server",
        ),
        (
            "gzip cut short",
            whole[..whole.len() / 2].to_vec(),
            Behaviour::Serve,
            "server",
        ),
        (
            "an entry escaping PGDATA",
            util::archive::gzip(&evil),
            Behaviour::Serve,
            "refused",
        ),
        ("a status after the archive", whole.to_vec(), late, "server"),
    ];
    for (case, bytes, behaviour, kind) in cases {
        let standin = standin(bytes);
        standin.plan([behaviour]);
        let pgdata = dir.path().join("pgdata");
        let document = one_shard(&pgdata, &standin, TOKEN);
        // The default retry policy: about a minute of retries if it were retried.
        let (outcome, took) = util::run_stage_within(&document, &[], Duration::from_secs(120));
        let error = outcome.failed_with(exit_code::RUNTIME, kind);
        assert_eq!(error["retryable"], false, "{case}");
        assert_eq!(standin.seen().len(), 1, "{case}: {}", outcome.stderr);
        assert!(took < Duration::from_secs(10), "{case}: took {took:?}");
        assert!(
            !pgdata.exists() || pgdata.join(PGDATA_MARKER).exists(),
            "{case}"
        );
        let message = error["message"].as_str().unwrap();
        if kind == "server" {
            let server = format!("pageserver 127.0.0.1:{}", standin.port);
            assert!(message.starts_with(&server), "{case}: {message}");
        }
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}
