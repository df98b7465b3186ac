//! Leases over gRPC (`prefer_protocol: "grpc"`), against `pg_page_grpc`'s stand-in
//! pageservers: every shard × pageserver with its shard in the metadata, the refusal
//! (`FAILED_PRECONDITION`), refused credentials, a silent server, and `--keep` on upstream's
//! schedule with our floor between renewals.

use nix::sys::signal::Signal;
use pg_page_grpc::standin::{Behaviour, Config, StandIn};
use pg_page_grpc::Code;

use super::keep::Keeping;
use super::*;

/// A stand-in for shard `key` granting leases of `lease`.
fn standin(key: &str, lease: Duration) -> StandIn {
    let mut config = Config::new(TENANT, TIMELINE, Some(TOKEN), Vec::new());
    config.shard = key.to_string();
    config.lease = lease;
    StandIn::start(config).unwrap()
}

/// A Static compute's document preferring gRPC, with `shards` (key, the pageservers' URLs).
fn grpc_document(shards: &[(&str, Vec<String>)]) -> String {
    let count = if shards.len() == 1 { 0 } else { shards.len() };
    let map: serde_json::Map<String, Value> = shards
        .iter()
        .map(|(key, urls)| {
            let pageservers: Vec<Value> = urls.iter().map(|url| json!({"grpc_url": url})).collect();
            (key.to_string(), json!({"pageservers": pageservers}))
        })
        .collect();
    document(
        json!({"Static": LSN}),
        json!({"pageserver_connection_info": {
            "shard_count": count, "stripe_size": (count > 0).then_some(2048),
            "prefer_protocol": "grpc", "shards": map,
        }}),
    )
}

fn address(standin: &StandIn) -> String {
    format!("127.0.0.1:{}", standin.port)
}

#[test]
fn every_shard_and_pageserver_is_leased_over_grpc_with_its_shard_in_the_metadata() {
    let hour = Duration::from_secs(3600);
    let a = standin("0002", hour);
    let b = standin("0102", Duration::from_secs(1800));
    let c = standin("0102", hour);
    let document = grpc_document(&[("0102", vec![b.url(), c.url()]), ("0002", vec![a.url()])]);
    let (run, _) = lease(&[], &document);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let shards = run.json["shards"].as_array().unwrap();
    let got: Vec<(&str, &str)> = shards
        .iter()
        .map(|lease| {
            let id = lease["tenant_shard_id"].as_str().unwrap();
            (id, lease["pageserver"].as_str().unwrap())
        })
        .collect();
    let (s0, s1) = (shard("0002"), shard("0102"));
    let (a_at, b_at, c_at) = (address(&a), address(&b), address(&c));
    assert_eq!(
        got,
        [
            (s0.as_str(), a_at.as_str()),
            (s1.as_str(), b_at.as_str()),
            (s1.as_str(), c_at.as_str())
        ]
    );
    // The earliest is the compute's: b's half hour.
    assert_eq!(run.json["valid_until"], shards[1]["valid_until"]);
    let half = from_now(&run.json["valid_until"]);
    assert!(half > Duration::from_secs(1700) && half <= Duration::from_secs(1800));
    for (server, key) in [(&a, "0002"), (&b, "0102"), (&c, "0102")] {
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].method, seen[0].lsn), ("LeaseLsn", 0x16B3748));
        assert_eq!(seen[0].tenant_id.as_deref(), Some(TENANT));
        assert_eq!(seen[0].timeline_id.as_deref(), Some(TIMELINE));
        assert_eq!(seen[0].shard_id.as_deref(), Some(key));
        assert_eq!(
            seen[0].authorization.as_deref(),
            Some("Bearer storage-token")
        );
    }
}

#[test]
fn failed_precondition_is_the_refusal_naming_the_pageserver_and_the_shard() {
    let a = standin("0002", Duration::from_secs(3600));
    let b = standin("0102", Duration::from_secs(3600));
    b.plan([Behaviour::Fail(
        Code::FailedPrecondition,
        "below the GC cutoff".into(),
    )]);
    let (run, _) = lease(
        &[],
        &grpc_document(&[("0002", vec![a.url()]), ("0102", vec![b.url()])]),
    );
    let message = failed(&run, 1, "server");
    assert_eq!(
        message,
        format!(
            "the pageserver {} refused to lease {LSN} on {} (below its GC cutoff)",
            address(&b),
            shard("0102")
        )
    );
    assert_eq!(run.json["error"]["retryable"], false);
}

#[test]
fn refused_credentials_and_a_silent_pageserver_are_named() {
    let a = standin("0000", Duration::from_secs(3600));
    let wrong = grpc_document(&[("0000", vec![a.url()])]).replace(TOKEN, "not-the-token");
    let (run, _) = lease(&[], &wrong);
    let message = failed(&run, 1, "auth");
    assert!(message.contains(&format!(
        "pageserver {} answered PERMISSION_DENIED",
        address(&a)
    )));
    assert!(message.starts_with(TENANT), "{message}");
    assert!(
        !message.contains("not-the-token"),
        "the token leaked: {message}"
    );

    a.plan([Behaviour::SilentAfterRequest]);
    let (run, took) = lease(
        &["--request-timeout", "1s"],
        &grpc_document(&[("0000", vec![a.url()])]),
    );
    let message = failed(&run, 1, "timeout");
    assert!(message.contains(&address(&a)), "{message}");
    assert!(message.contains("said nothing for 1s"), "{message}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn keep_renews_over_grpc_on_schedule_until_sigterm() {
    // Valid 2 s → renewed after max(2 s − 60 s, 1 s) = 1 s.
    let a = standin("0000", Duration::from_secs(2));
    let mut run = Keeping::start(&[], &grpc_document(&[("0000", vec![a.url()])]));
    for _ in 0..3 {
        let leases = run.next();
        assert_eq!(leases["shards"][0]["pageserver"], address(&a), "{leases}");
        assert!(from_now(&leases["valid_until"]) <= Duration::from_secs(2));
    }
    let seen = a.seen();
    assert!(seen.len() >= 3);
    for pair in seen.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(800), "renewed after {gap:?}");
    }
    run.signal(Signal::SIGTERM);
    assert_eq!(run.exit_within(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_grpc_lease_that_has_already_ended_is_renewed_with_back_off_not_in_a_loop() {
    let mut config = Config::new(TENANT, TIMELINE, Some(TOKEN), Vec::new());
    config.lease = Duration::from_secs(10);
    config.lease_already_ended = true;
    let a = StandIn::start(config).unwrap();
    let run = Keeping::start(&[], &grpc_document(&[("0000", vec![a.url()])]));
    run.next();
    std::thread::sleep(Duration::from_secs(4));
    let seen = a.seen();
    // At least a second between renewals, growing: 1 + 1 + 1.1 s… in 4 s.
    assert!(
        (2..=5).contains(&seen.len()),
        "{} lease requests in 4 s",
        seen.len()
    );
    for pair in seen.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(900), "renewed after {gap:?}");
    }
    run.signal(Signal::SIGTERM);
}
