//! The typed values of the stage sections and of the spec's deltas: every known value and an
//! unknown one round-trip as the same string, and a document written by a newer stage (values
//! and fields this version does not know) is written back unchanged.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use compute_spec::section::{
    BasebackupSection, BasebackupSource, ReconcilePhase, SpecLoadSource, SyncMethod,
};
use compute_spec::spec::DeltaAction;
use compute_spec::ComputeDocument;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// Each known value reads back as itself, and `unknown` stays verbatim.
fn round_trips<T>(known: &[T], names: &[&str], unknown: &str)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + for<'a> From<&'a str>,
{
    assert_eq!(known.len(), names.len(), "one name per known value");
    for (value, name) in known.iter().zip(names) {
        assert_eq!(serde_json::to_value(value).unwrap(), json!(name));
        let back: T = serde_json::from_value(json!(name)).unwrap();
        assert_eq!(&back, value);
        assert_eq!(&T::from(name), value);
    }
    let back: T = serde_json::from_value(json!(unknown)).unwrap();
    assert!(!known.contains(&back), "{unknown} is not a known value");
    assert_eq!(serde_json::to_value(&back).unwrap(), json!(unknown));
}

#[test]
fn sync_method_round_trips() {
    let names = [
        "none",
        "static",
        "replica",
        "safekeepers-fast-path",
        "sync-safekeepers",
        "upstream",
    ];
    round_trips(SyncMethod::KNOWN, &names, "safekeepers-grpc");
    assert_eq!(
        SyncMethod::from("from-the-future"),
        SyncMethod::Unknown("from-the-future".into())
    );
}

#[test]
fn basebackup_source_round_trips() {
    let names = ["pageserver", "upstream", "initdb"];
    round_trips(BasebackupSource::KNOWN, &names, "s3-snapshot");
}

#[test]
fn spec_load_source_round_trips() {
    let names = [
        "spec-path",
        "spec",
        "config",
        "stdin",
        "control-plane",
        "embedded",
    ];
    round_trips(SpecLoadSource::KNOWN, &names, "test");
}

#[test]
fn reconcile_phase_round_trips() {
    let names = [
        "settings",
        "drop_subscriptions",
        "create_privileged_role",
        "drop_invalid_databases",
        "rename_roles",
        "create_and_alter_roles",
        "rename_and_delete_databases",
        "create_and_alter_databases",
        "delete_role_shared_references",
        "delete_role_references",
        "change_schema_perms",
        "handle_other_extensions",
        "handle_neon_extension",
        "create_availability_check",
        "drop_roles",
        "finalize_drop_subscriptions",
        "pgaudit",
    ];
    // "extensions" is the single phase older versions wrote: kept verbatim, as any value
    // this version does not know.
    round_trips(ReconcilePhase::KNOWN, &names, "extensions");
    // A failure whose writer left the phase out keeps the empty string it always had.
    assert_eq!(serde_json::to_value(ReconcilePhase::default()).unwrap(), "");
}

#[test]
fn delta_action_round_trips() {
    let names = ["delete_db", "rename_db", "delete_role", "rename_role"];
    round_trips(DeltaAction::KNOWN, &names, "delete_extension");
}

#[test]
fn basebackup_counters_are_fields_not_extras() {
    let text = json!({
        "source": "pageserver", "basebackup_ms": 5, "basebackup_bytes": 10,
        "attempts": 2, "files": 3, "unpacked_bytes": 40, "newer": true,
    });
    let section: BasebackupSection = serde_json::from_value(text.clone()).unwrap();
    assert_eq!(section.source, BasebackupSource::Pageserver);
    assert_eq!(
        (section.attempts, section.files, section.unpacked_bytes),
        (Some(2), Some(3), Some(40))
    );
    assert_eq!(section.extra.keys().collect::<Vec<_>>(), ["newer"]);
    // Written back in the same order as before they were typed.
    assert_eq!(
        serde_json::to_string(&section).unwrap(),
        serde_json::to_string(&text).unwrap()
    );

    let initdb = json!({"source": "initdb", "basebackup_ms": 5, "basebackup_bytes": 0});
    let section: BasebackupSection = serde_json::from_value(initdb.clone()).unwrap();
    assert_eq!((section.attempts, section.files), (None, None));
    assert_eq!(serde_json::to_value(&section).unwrap(), initdb);
}

#[test]
fn a_newer_stages_document_is_written_back_unchanged() {
    let document = json!({
        "document_version": 1,
        "spec": {
            "format_version": 1.0,
            "cluster": {"roles": [], "databases": []},
            "delta_operations": [
                {"action": "delete_role", "name": "old", "new_name": null},
                {"action": "archive_db", "name": "cold", "new_name": null},
            ],
        },
        "pgdata": "/data",
        "pgbin": "/usr/bin/postgres",
        "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": 5432, "socket_dir": "/data"},
        "spec_load": {"source": "vault", "spec_load_ms": 1, "control_plane_attempts": 0},
        "sync_safekeepers": {"lsn": "0/16B5A50", "method": "safekeepers-grpc", "quorum": 3},
        "basebackup": {"source": "s3-snapshot", "basebackup_ms": 7, "basebackup_bytes": 9,
                       "attempts": 1, "files": 2, "unpacked_bytes": 3, "layers": 4},
        "reconcile": {"plan": [{"sql": "GRANT x TO y", "phase": "grants", "database": "postgres",
                                "destructive": false}],
                      "failures": [{"object": "role \"y\"", "phase": "grants", "sql": "GRANT x TO y",
                                    "database": "postgres", "error": "no"}]},
    });
    let parsed: ComputeDocument = serde_json::from_value(document.clone()).unwrap();
    let sync = parsed.sync_safekeepers.as_ref().unwrap();
    assert_eq!(sync.method, SyncMethod::Unknown("safekeepers-grpc".into()));
    let basebackup = parsed.basebackup.as_ref().unwrap();
    assert_eq!(basebackup.source, "s3-snapshot");
    assert_eq!(basebackup.attempts, Some(1));
    let deltas = parsed
        .spec
        .as_ref()
        .unwrap()
        .delta_operations
        .as_ref()
        .unwrap();
    assert_eq!(deltas[0].action, DeltaAction::DeleteRole);
    assert_eq!(deltas[1].action, DeltaAction::Unknown("archive_db".into()));

    let written = serde_json::to_value(&parsed).unwrap();
    for path in [
        "/spec/delta_operations",
        "/spec_load",
        "/sync_safekeepers",
        "/basebackup",
        "/reconcile/plan",
        "/reconcile/failures",
    ] {
        assert_eq!(written.pointer(path), document.pointer(path), "{path}");
    }
    assert_eq!(
        written["reconcile"]["plan"][0]["phase"],
        Value::from("grants")
    );
}
