//! The single flight, the refusals and the checks before Postgres, on a stand-in compute.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use compute_spec::spec::ComputeMode;
use compute_spec::validate::FieldError;
use serde_json::{json, Value};

use super::*;

/// A minimal valid spec with the `extra` fields.
pub fn spec(extra: Value) -> Value {
    let mut spec = json!({
        "format_version": 1.0,
        "suspend_timeout_seconds": 0,
        "cluster": {"roles": [], "databases": []},
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    spec
}

/// A document whose spec has the `extra` fields, for a Postgres that is not there.
fn document(extra: Value) -> ComputeDocument {
    serde_json::from_value(json!({
        "document_version": 1,
        "spec": spec(extra),
        "pgdata": "/nonexistent",
        "pgbin": "/usr/bin/postgres",
        "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": 5432, "socket_dir": "/nonexistent"},
    }))
    .unwrap()
}

fn request(extra: Value, lsn: Option<&str>) -> PromoteRequest {
    serde_json::from_value(json!({"spec": spec(extra), "wal_flush_lsn": lsn})).unwrap()
}

/// A compute: its document and status, its prewarm, a validation refusing one role name,
/// and a count of the runs (each run asks for the current state once).
struct FakeHost {
    document: Mutex<Option<ComputeDocument>>,
    status: Status,
    prewarm: Option<PrewarmState>,
    runs: AtomicUsize,
}

impl FakeHost {
    fn new(extra: Value) -> FakeHost {
        FakeHost {
            document: Mutex::new(Some(document(extra))),
            status: Status::Running,
            prewarm: Some(PrewarmState::Skipped),
            runs: AtomicUsize::new(0),
        }
    }
}

impl Host for FakeHost {
    fn current(&self) -> (Option<ComputeDocument>, Status) {
        self.runs.fetch_add(1, Ordering::SeqCst);
        // Long enough for concurrent callers to arrive while the run is under way.
        std::thread::sleep(Duration::from_millis(50));
        (self.document.lock().unwrap().clone(), self.status.clone())
    }

    fn prewarm_state(&self) -> Option<PrewarmState> {
        self.prewarm.clone()
    }

    fn validate(&self, spec: &ComputeSpec) -> Result<(), SpecErrors> {
        match spec
            .cluster
            .roles
            .iter()
            .position(|role| role.name == "admin")
        {
            Some(index) => Err(SpecErrors(vec![FieldError {
                field: format!("cluster.roles[{index}].name"),
                message: "the compute's admin role".into(),
            }])),
            None => Ok(()),
        }
    }

    fn reconfigure(&self, _spec: ComputeSpec) -> Result<(), String> {
        panic!("no test here gets as far as the reconfiguration");
    }
}

fn error_of(state: &PromoteState) -> &Error {
    match state {
        PromoteState::Failed { error } => error,
        other => panic!("not failed: {other:?}"),
    }
}

/// The error of one promotion of `host`.
fn promoted(host: &FakeHost, request: &PromoteRequest) -> Error {
    error_of(Promotion::new().promote(host, request).unwrap()).clone()
}

#[test]
fn a_refused_spec_runs_nothing_and_is_not_the_answer() {
    let host = FakeHost::new(json!({"mode": "Replica"}));
    let promotion = Promotion::new();
    let empty_name = request(
        json!({"cluster": {"roles": [{"name": ""}], "databases": []}}),
        None,
    );
    let refused = promotion.promote(&host, &empty_name).unwrap_err();
    assert!(refused
        .to_string()
        .starts_with("invalid spec: cluster.roles[0].name: "));
    let admin = request(
        json!({"cluster": {"roles": [{"name": "admin"}], "databases": []}}),
        None,
    );
    let refused = promotion.promote(&host, &admin).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "invalid spec: cluster.roles[0].name: the compute's admin role"
    );
    assert!(promotion.result().is_none());
    assert_eq!(host.runs.load(Ordering::SeqCst), 0, "nothing ran");
}

#[test]
fn the_first_answer_is_every_answer_and_concurrent_calls_share_one_run() {
    let host = Arc::new(FakeHost::new(json!({"mode": "Primary"})));
    let promotion = Arc::new(Promotion::new());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (host, promotion) = (host.clone(), promotion.clone());
            std::thread::spawn(move || {
                let request = request(json!({}), Some("0/1"));
                promotion.promote(&*host, &request).unwrap().clone()
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(
            error_of(&thread.join().unwrap()),
            &Error::NotReplica(ComputeMode::Primary)
        );
    }
    // Even once the compute is a replica, the first answer stands.
    *host.document.lock().unwrap() = Some(document(json!({"mode": "Replica"})));
    let again = promotion
        .promote(&*host, &request(json!({}), None))
        .unwrap();
    assert_eq!(error_of(again), &Error::NotReplica(ComputeMode::Primary));
    assert_eq!(host.runs.load(Ordering::SeqCst), 1, "one run");
}

#[test]
fn the_checks_before_postgres_in_upstream_s_order() {
    let neon = json!({"mode": "Replica"});
    let with_safekeepers = json!({"safekeeper_connstrings": ["127.0.0.1:5454"]});
    let valid = request(with_safekeepers.clone(), Some("0/1"));
    let mut host = FakeHost::new(json!({"mode": {"Static": "0/16B3748"}}));
    assert_eq!(
        promoted(&host, &valid).to_string(),
        "compute mode \"static\" is not replica"
    );
    *host.document.get_mut().unwrap() = None;
    assert_eq!(promoted(&host, &valid), Error::NoSpec);
    // Prewarm before status, for a Neon replica only.
    for (state, error) in [
        (PrewarmState::NotPrewarmed, "compute NotPrewarmed"),
        (PrewarmState::Prewarming, "compute Prewarming"),
    ] {
        let mut host = FakeHost::new(neon.clone());
        host.prewarm = Some(state.clone());
        host.status = Status::Other("configuration".into());
        assert_eq!(promoted(&host, &valid).to_string(), error);
        let vanilla = json!({"mode": "Replica", "upstream_connstring": "host=/x"});
        let mut host = FakeHost::new(vanilla);
        host.prewarm = Some(state);
        host.status = Status::Other("configuration".into());
        assert_eq!(
            promoted(&host, &valid).to_string(),
            "the compute is configuration, not running: only a running replica is promoted"
        );
    }
    // No prewarm job (the binary): the rule does not apply.
    let mut host = FakeHost::new(neon.clone());
    host.prewarm = None;
    assert_eq!(
        promoted(&host, &request(with_safekeepers.clone(), None)),
        Error::LsnRequired
    );
    let host = FakeHost::new(neon.clone());
    assert_eq!(
        promoted(&host, &request(json!({}), Some("0/1"))),
        Error::NoSafekeepers
    );
    let mut as_replica = with_safekeepers.clone();
    as_replica["mode"] = json!("Replica");
    assert_eq!(
        promoted(&host, &request(as_replica, Some("0/1"))).to_string(),
        "spec.mode: the new spec must be Primary, not \"replica\""
    );
    // Past every check, a Postgres that is not there.
    let error = promoted(&host, &valid);
    assert_eq!(error.kind(), compute_spec::ErrorKind::Postgres);
    assert!(
        error
            .to_string()
            .starts_with("connecting to the compute's postgres: "),
        "{error}"
    );
}

#[test]
fn a_vanilla_primary_s_password_is_never_in_the_error() {
    let host = FakeHost::new(json!({
        "mode": "Replica",
        "upstream_connstring": "host=/nonexistent port=1 user=u password=hunter2",
    }));
    let error = promoted(&host, &request(json!({}), None));
    assert_eq!(error.kind(), compute_spec::ErrorKind::Network);
    let text = error.to_string();
    assert!(
        text.starts_with("connecting to the primary (upstream_connstring): "),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn answers_serialise_as_upstream_s() {
    let completed = PromoteState::Completed(Timings {
        lsn_wait_time_ms: 1200,
        pg_promote_time_ms: 80,
        reconfigure_time_ms: 150,
    });
    assert_eq!(
        serde_json::to_string(&completed).unwrap(),
        r#"{"status":"completed","lsn_wait_time_ms":1200,"pg_promote_time_ms":80,"reconfigure_time_ms":150}"#
    );
    let failed = PromoteState::Failed {
        error: Error::CatchUp(20),
    };
    assert_eq!(
        serde_json::to_string(&failed).unwrap(),
        r#"{"status":"failed","error":"didn't catch up with primary in 20 retries"}"#
    );
    assert_eq!(
        Error::Reconfigure("x".into()).to_string(),
        "promoted, but x"
    );
    assert_eq!(
        Error::NotReplica(ComputeMode::Primary).kind().exit_code(),
        compute_spec::exit_code::USAGE
    );
    assert!(Error::CatchUp(20).kind().is_retryable());
}
