//! `LeaseLsn` through [`lease_lsn`]: a grant, the refusal, and a silent server.

use std::time::{Duration, SystemTime};

use pg_page_grpc::standin::Behaviour;
use pg_page_grpc::{lease_lsn, Code, GrpcError, LeaseAnswer};

use crate::{standin, target, TOKEN};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn a_lease_is_granted_until_the_servers_expiry_on_the_shard_asked() {
    let standin = standin("0104", Vec::new());
    let before = SystemTime::now();
    let answer = lease_lsn(
        &target(&standin, "0104"),
        Some(TOKEN),
        0x16B3748,
        SECOND,
        SECOND,
    );
    let LeaseAnswer::Until(until) = answer.unwrap() else {
        panic!("not granted");
    };
    // The stand-in grants 10 minutes.
    let length = until.duration_since(before).unwrap();
    assert!(length > Duration::from_secs(590) && length < Duration::from_secs(610));
    let seen = standin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].method, seen[0].lsn), ("LeaseLsn", 0x16B3748));
    assert_eq!(seen[0].shard_id.as_deref(), Some("0104"));
}

#[test]
fn failed_precondition_is_the_refusal_and_other_statuses_are_failures() {
    let standin = standin("0000", Vec::new());
    standin.plan([
        Behaviour::Fail(Code::FailedPrecondition, "LSN below the GC cutoff".into()),
        Behaviour::Fail(Code::Unavailable, "shutting down".into()),
    ]);
    let target = target(&standin, "0000");
    let refused = lease_lsn(&target, Some(TOKEN), 1, SECOND, SECOND).unwrap();
    assert_eq!(
        refused,
        LeaseAnswer::Refused("LSN below the GC cutoff".into())
    );
    let error = lease_lsn(&target, Some(TOKEN), 1, SECOND, SECOND).unwrap_err();
    assert!(error.is_transient(), "{error}");
    let error = lease_lsn(&target, Some("wrong"), 1, SECOND, SECOND).unwrap_err();
    assert!(error.is_auth(), "{error}");
}

#[test]
fn a_silent_server_ends_at_the_answer_deadline() {
    let standin = standin("0000", Vec::new());
    standin.plan([Behaviour::SilentAfterRequest]);
    let started = std::time::Instant::now();
    let error = lease_lsn(&target(&standin, "0000"), Some(TOKEN), 1, SECOND, SECOND).unwrap_err();
    assert!(matches!(error, GrpcError::Timeout { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
