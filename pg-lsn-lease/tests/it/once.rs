//! One lease: every shard's `valid_until` on stdout, or an error naming the pageserver and
//! the shard with the right exit code, within the time limits.

use pg_test_support::fake_pg::page_service::Behaviour;
use pg_test_support::FakeBackend;

use super::*;

#[test]
fn a_lease_on_two_shards_prints_each_shards_valid_until() {
    let a = Pageserver::start(TOKEN, vec![Behaviour::ValidFor(Duration::from_secs(3600))]);
    let b = Pageserver::start(TOKEN, vec![Behaviour::ValidFor(Duration::from_secs(1800))]);
    let (run, _) = lease(&[], &two_shards(&a, &b));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let shards = run.json["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2, "{}", run.json);
    assert_eq!(run.json["lsn"], LSN);
    assert_eq!(shards[0]["tenant_shard_id"], shard("0002"));
    assert_eq!(shards[0]["pageserver"], a.address());
    assert_eq!(shards[1]["tenant_shard_id"], shard("0102"));
    assert_eq!(shards[1]["pageserver"], b.address());
    let hour = from_now(&shards[0]["valid_until"]);
    let half = from_now(&shards[1]["valid_until"]);
    assert!(hour > Duration::from_secs(3500) && hour <= Duration::from_secs(3600));
    assert!(half > Duration::from_secs(1700) && half <= Duration::from_secs(1800));
    // The earliest is the compute's.
    assert_eq!(run.json["valid_until"], shards[1]["valid_until"]);
    for (server, index) in [(&a, "0002"), (&b, "0102")] {
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].query, command(&shard(index)));
        assert_eq!(seen[0].password, TOKEN);
    }
}

#[test]
fn lsn_overrides_the_mode() {
    let a = Pageserver::start(TOKEN, vec![]);
    let replica = document(
        json!("Replica"),
        json!({"pageserver_connstring": a.connstr()}),
    );
    let (run, _) = lease(&["--lsn", "1/2A"], &replica);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json["lsn"], "1/2A");
    assert_eq!(
        a.seen()[0].query,
        format!("lease lsn {TENANT} {TIMELINE} 1/2A ")
    );
}

#[test]
fn a_refusal_names_the_pageserver_and_the_shard() {
    let a = Pageserver::start(TOKEN, vec![Behaviour::ValidFor(Duration::from_secs(3600))]);
    let b = Pageserver::start(TOKEN, vec![Behaviour::Refuse]);
    let (run, _) = lease(&[], &two_shards(&a, &b));
    let message = failed(&run, 1, "server");
    assert_eq!(
        message,
        format!(
            "the pageserver {} refused to lease {LSN} on {} (below its GC cutoff)",
            b.address(),
            shard("0102")
        )
    );
    assert_eq!(run.json["error"]["retryable"], false);
}

#[test]
fn a_silent_pageserver_fails_within_the_request_timeout() {
    let silent = Pageserver::silent(TOKEN);
    let (run, took) = lease(&["--request-timeout", "1s"], &one_shard(&silent));
    let message = failed(&run, 1, "timeout");
    assert_eq!(
        message,
        format!(
            "{TENANT}: lease lsn on pageserver: {}: no answer within 1s; check that the \
             server is up, or allow more time",
            silent.address()
        )
    );
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(
        took < Duration::from_secs(10),
        "the time limit did not apply: {took:?}"
    );
    assert_eq!(silent.seen().len(), 1, "the query was not sent");
}

#[test]
fn a_down_or_confused_pageserver_is_named() {
    let down = FakeBackend::down();
    let connstr = format!("host=127.0.0.1 port={}", down.port);
    let doc = document(
        json!({"Static": LSN}),
        json!({"pageserver_connstring": connstr}),
    );
    let message = failed(&lease(&[], &doc).0, 1, "network");
    assert!(
        message.starts_with(&format!(
            "{TENANT}: connecting to pageserver: {}: connecting: ",
            down.address()
        )),
        "{message}"
    );
    let wrong_token = Pageserver::start("another-token", vec![]);
    let message = failed(&lease(&[], &one_shard(&wrong_token)).0, 1, "auth");
    assert!(message.contains(&wrong_token.address()), "{message}");
    assert!(!message.contains(TOKEN), "the token leaked: {message}");
    for (says, what) in [
        ("soon", "\"soon\", not milliseconds since the epoch"),
        ("253402300800000", "253402300800000, past the year 9999"),
    ] {
        let confused = Pageserver::start(TOKEN, vec![Behaviour::Says(Some(says.into()))]);
        let message = failed(&lease(&[], &one_shard(&confused)).0, 1, "server");
        assert_eq!(
            message,
            format!(
                "{TENANT}: pageserver {} answered valid_until {what}",
                confused.address()
            )
        );
    }
    let failing = Pageserver::start(TOKEN, vec![Behaviour::Fail]);
    let message = failed(&lease(&[], &one_shard(&failing)).0, 1, "server");
    assert!(message.ends_with("tenant shard not found"), "{message}");
}

#[test]
fn bad_input_exits_2_before_any_pageserver_is_asked() {
    let a = Pageserver::start(TOKEN, vec![]);
    let primary = document(
        json!("Primary"),
        json!({"pageserver_connstring": a.connstr()}),
    );
    let message = failed(&lease(&[], &primary).0, 2, "usage");
    assert_eq!(
        message,
        "spec.mode is primary, not Static: give the LSN to lease (--lsn)"
    );
    let vanilla = document(
        json!({"Static": LSN}),
        json!({"upstream_connstring": "host=x"}),
    );
    let message = failed(&lease(&[], &vanilla).0, 2, "invalid_spec");
    assert!(message.contains("names no pageserver"), "{message}");
    let bad_shard = document(
        json!({"Static": LSN}),
        json!({"shard_stripe_size": 2048, "pageserver_connection_info": {"shard_count": 2,
            "shards": {"zz02": {"pageservers": [{"libpq_url": a.connstr()}]}}}}),
    );
    let message = failed(&lease(&[], &bad_shard).0, 2, "invalid_spec");
    assert!(
        message.contains("pageserver_connection_info.shards.zz02: a shard index is 4 hex digits"),
        "{message}"
    );
    let no_spec: Value = json!({
        "document_version": 1, "spec": null, "pgdata": "/nonexistent",
        "pgbin": "/nonexistent/postgres", "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": 5432, "socket_dir": "/nonexistent"},
    });
    let message = failed(&lease(&[], &no_spec.to_string()).0, 2, "invalid_spec");
    assert_eq!(message, "the compute has no spec");
    failed(&lease(&[], "{}").0, 2, "invalid_document");
    assert!(a.seen().is_empty());
    // An earlier stage's error passes through.
    let envelope =
        r#"{"error":{"stage":"compute-spec","kind":"io","message":"m","retryable":false}}"#;
    let (run, _) = lease(&[], envelope);
    assert_eq!(run.code, 1);
    assert_eq!(run.json["error"]["stage"], "compute-spec");
}

#[test]
fn a_pageserver_flooding_its_answer_is_refused_without_the_memory() {
    // ~40 MiB of rows where one is due: refused once past one row, read no further.
    let flood = FakeBackend::start(pg_test_support::fake_pg::Script {
        password: TOKEN.to_string(),
        command: command(TENANT),
        answer: pg_test_support::fake_pg::Answer::Rows {
            columns: vec![("valid_until".to_string(), "9".repeat(48))],
            count: 655_360,
        },
        ..Default::default()
    });
    let doc = document(
        json!({"Static": LSN}),
        json!({"pageserver_connstring": format!("host=127.0.0.1 port={} user=cloud_admin", flood.port)}),
    );
    let (run, took, peak_kib) =
        pg_test_support::run_stage_measured(PG_LSN_LEASE, &[], &doc, Duration::from_secs(30));
    let message = failed(&run.expect_json(), 1, "server");
    assert!(message.contains(&flood.address()), "{message}");
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB in {took:?}");
}
