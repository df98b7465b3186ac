//! `GetBaseBackup` through [`BaseBackupStream`]: what is sent, what is read, and each failure.

use std::io::Read;
use std::time::{Duration, Instant};

use pg_page_grpc::standin::Behaviour;
use pg_page_grpc::{BaseBackupRequest, BaseBackupStream, Code, Deadlines, GrpcError};

use crate::{standin, target, TENANT, TIMELINE, TOKEN};

const QUICK: Deadlines = Deadlines {
    connect: Duration::from_secs(2),
    answer: Duration::from_secs(1),
    idle: Duration::from_secs(1),
    min_rate: None,
};

const REQUEST: BaseBackupRequest = BaseBackupRequest {
    lsn: 0x16B5A50,
    replica: true,
    gzip: true,
};

/// 1 MiB of bytes that differ from chunk to chunk.
fn archive() -> Vec<u8> {
    (0..1u32 << 20).map(|i| (i % 251) as u8).collect()
}

/// Opens and reads the whole stream: its bytes, or the error it failed with.
fn fetch(
    standin: &pg_page_grpc::standin::StandIn,
    shard: &str,
    token: Option<&str>,
    deadlines: Deadlines,
) -> Result<Vec<u8>, GrpcError> {
    let mut stream = BaseBackupStream::open(&target(standin, shard), token, REQUEST, deadlines)?;
    let mut bytes = Vec::new();
    match stream.read_to_end(&mut bytes) {
        Ok(_) => Ok(bytes),
        Err(error) => {
            let inner = error.into_inner().unwrap();
            Err(*inner.downcast::<GrpcError>().unwrap())
        }
    }
}

#[test]
fn the_archive_arrives_whole_with_the_metadata_and_request_upstream_sends() {
    let standin = standin("0004", archive());
    let bytes = fetch(&standin, "0004", Some(TOKEN), QUICK).unwrap();
    assert_eq!(bytes, archive());
    let seen = standin.seen();
    assert_eq!(seen.len(), 1);
    let seen = &seen[0];
    assert_eq!(seen.method, "GetBaseBackup");
    assert_eq!(seen.tenant_id.as_deref(), Some(TENANT));
    assert_eq!(seen.timeline_id.as_deref(), Some(TIMELINE));
    assert_eq!(seen.shard_id.as_deref(), Some("0004"));
    assert_eq!(seen.authorization.as_deref(), Some("Bearer storage-token"));
    assert_eq!(
        (seen.lsn, seen.replica, seen.full),
        (0x16B5A50, true, false)
    );
    assert_eq!(seen.compression, 2, "gzip");
}

#[test]
fn refused_credentials_are_auth_failures_naming_the_server() {
    let standin = standin("0000", archive());
    let server = format!("127.0.0.1:{}", standin.port);
    let cases = [
        (None, Code::Unauthenticated, "no authorization header"),
        (
            Some("not-the-token"),
            Code::PermissionDenied,
            "not valid for tenant",
        ),
    ];
    for (token, code, message) in cases {
        let error = fetch(&standin, "0000", token, QUICK).unwrap_err();
        assert_eq!(error.code(), Some(code), "{error}");
        assert!(error.is_auth() && !error.is_transient(), "{error}");
        let text = error.to_string();
        assert!(
            text.contains(&format!("pageserver {server} answered")),
            "{text}"
        );
        assert!(text.contains(message), "{text}");
        assert!(!text.contains("not-the-token"), "the token leaked: {text}");
    }
}

#[test]
fn the_real_servers_answers_for_a_wrong_target_are_final() {
    let standin = standin("0102", archive());
    // A basebackup is served by shard zero only.
    let error = fetch(&standin, "0102", Some(TOKEN), QUICK).unwrap_err();
    assert_eq!(error.code(), Some(Code::InvalidArgument), "{error}");
    assert!(
        error.to_string().contains("only valid on shard zero"),
        "{error}"
    );
    // Shard zero is not attached here.
    let error = fetch(&standin, "0002", Some(TOKEN), QUICK).unwrap_err();
    assert_eq!(error.code(), Some(Code::NotFound), "{error}");
    assert!(!error.is_transient() && !error.is_auth());
    // A shutting-down server is worth another try.
    let standin0 = crate::standin("0000", archive());
    standin0.plan([Behaviour::Fail(Code::Unavailable, "shutting down".into())]);
    let error = fetch(&standin0, "0000", Some(TOKEN), QUICK).unwrap_err();
    assert!(error.is_transient(), "{error}");
}

#[test]
fn a_cut_connection_is_a_transport_failure_worth_retrying() {
    let standin = standin("0000", archive());
    standin.plan([Behaviour::CutAfter(300 << 10)]);
    let error = fetch(&standin, "0000", Some(TOKEN), QUICK).unwrap_err();
    assert!(matches!(error, GrpcError::Transport { .. }), "{error:?}");
    assert!(error.is_transient(), "{error}");
    // The next request is served whole.
    assert_eq!(
        fetch(&standin, "0000", Some(TOKEN), QUICK).unwrap(),
        archive()
    );
}

#[test]
fn a_status_after_part_of_the_archive_is_not_missed() {
    let standin = standin("0000", archive());
    standin.plan([Behaviour::FailAfter(
        300 << 10,
        Code::Internal,
        "basebackup failed: disk".into(),
    )]);
    let error = fetch(&standin, "0000", Some(TOKEN), QUICK).unwrap_err();
    assert_eq!(error.code(), Some(Code::Internal), "{error}");
    assert!(
        !error.is_transient(),
        "the server's own failure is final: {error}"
    );
}

#[test]
fn every_silence_ends_at_its_deadline() {
    for (behaviour, what) in [
        (Behaviour::SilentAtStartup, "the answer to GetBaseBackup"),
        (Behaviour::SilentAfterRequest, "the answer to GetBaseBackup"),
        (Behaviour::StallAfter(300 << 10), "the next chunk"),
    ] {
        let standin = standin("0000", archive());
        standin.plan([behaviour.clone()]);
        let started = Instant::now();
        let error = fetch(&standin, "0000", Some(TOKEN), QUICK).unwrap_err();
        let took = started.elapsed();
        match &error {
            GrpcError::Timeout { what: said, .. } => assert!(said.starts_with(what), "{error}"),
            other => panic!("{behaviour:?}: {other:?}"),
        }
        assert!(error.is_transient());
        assert!(took < Duration::from_secs(3), "{behaviour:?}: {took:?}");
    }
}

#[test]
fn a_trickle_inside_the_idle_deadline_fails_its_minimum_rate() {
    let standin = standin("0000", archive());
    standin.plan([Behaviour::Trickle {
        piece: 512,
        every: Duration::from_millis(50),
    }]);
    let deadlines = Deadlines {
        min_rate: Some((64 << 10, Duration::from_millis(500))),
        ..QUICK
    };
    let started = Instant::now();
    let error = fetch(&standin, "0000", Some(TOKEN), deadlines).unwrap_err();
    assert!(matches!(error, GrpcError::TooSlow { .. }), "{error:?}");
    assert!(error.is_transient());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_refused_connection_is_a_connect_failure() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let standin = standin("0000", archive());
    let mut target = target(&standin, "0000");
    target.url.port = port;
    let error = BaseBackupStream::open(&target, Some(TOKEN), REQUEST, QUICK).unwrap_err();
    assert!(matches!(error, GrpcError::Connect { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
    assert!(error.is_transient());
}

#[test]
fn a_token_that_cannot_be_metadata_is_refused_without_repeating_it() {
    let standin = standin("0000", archive());
    let error = fetch(&standin, "0000", Some("bad token\n"), QUICK).unwrap_err();
    assert!(matches!(error, GrpcError::Invalid { .. }), "{error:?}");
    assert!(!error.to_string().contains("bad token"), "{error}");
    assert!(standin.seen().is_empty());
}
