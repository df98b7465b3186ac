//! The typed values of the stage sections and of the spec's deltas: every known value and an
//! unknown one round-trip as the same string, and a document written by a newer stage (values
//! and fields this version does not know) is written back unchanged.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use compute_spec::guc::VarType;
use compute_spec::section::{
    BasebackupSection, BasebackupSource, FailedMigration, MigrationReport, ReconcilePhase,
    ReconcileSection, SpecLoadSource, SyncMethod, TemplateOutcome,
};
use compute_spec::spec::{DeltaAction, GenericOption};
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
fn template_outcome_round_trips() {
    let names = ["hit", "miss", "off", "fallback"];
    round_trips(TemplateOutcome::KNOWN, &names, "shared");
}

#[test]
fn vartype_round_trips() {
    let names = ["bool", "integer", "real", "enum", "string"];
    round_trips(VarType::KNOWN, &names, "float");
    // An option whose vartype this version does not know keeps it, byte for byte.
    for unknown in ["float", "", "Bool", "string "] {
        let text = format!(r#"{{"name":"x","value":"1","vartype":{unknown:?}}}"#);
        let option: GenericOption = serde_json::from_str(&text).unwrap();
        assert_eq!(option.vartype, VarType::Unknown(unknown.to_string()));
        assert_eq!(serde_json::to_string(&option).unwrap(), text);
    }
    let option: GenericOption =
        serde_json::from_str(r#"{"name":"x","value":"1","vartype":"integer"}"#).unwrap();
    assert_eq!(option.vartype, VarType::Integer);
}

#[test]
fn a_setting_with_an_unknown_vartype_is_refused_naming_the_vartype() {
    let setting: GenericOption =
        serde_json::from_value(json!({"name": "work_mem", "value": "1", "vartype": "float"}))
            .unwrap();
    let error = compute_spec::pgconf::check_setting(&setting, 3).unwrap_err();
    assert_eq!(error.field, "cluster.settings[3].vartype");
    assert!(error.message.contains("\"float\""), "{}", error.message);
}

#[test]
fn the_template_outcome_is_a_field_not_an_extra() {
    // As pg-basebackup-fetch has always written it for an `initdb` source.
    let text = r#"{"source":"initdb","basebackup_ms":5,"basebackup_bytes":0,"template":"miss"}"#;
    let section: BasebackupSection = serde_json::from_str(text).unwrap();
    assert_eq!(section.template, Some(TemplateOutcome::Miss));
    assert!(section.extra.is_empty());
    assert_eq!(serde_json::to_string(&section).unwrap(), text);
    // A value a newer stage writes is kept verbatim.
    let newer = text.replace("miss", "shared");
    let section: BasebackupSection = serde_json::from_str(&newer).unwrap();
    assert_eq!(
        section.template,
        Some(TemplateOutcome::Unknown("shared".into()))
    );
    assert_eq!(serde_json::to_string(&section).unwrap(), newer);
    // Other sources have none, and write none.
    let pageserver = r#"{"source":"pageserver","basebackup_ms":5,"basebackup_bytes":9}"#;
    let section: BasebackupSection = serde_json::from_str(pageserver).unwrap();
    assert_eq!(section.template, None);
    assert_eq!(serde_json::to_string(&section).unwrap(), pageserver);
}

#[test]
fn the_migration_report_is_a_field_not_an_extra() {
    // As `pg-reconcile --migrate` has always written it, after the section's other fields.
    let done = json!({"from": 10, "to": 12, "pending": [], "applied": ["0011-a", "0012-b"],
                      "failed": null});
    let failed = json!({"from": 10, "to": 11, "pending": ["0012-b"], "applied": ["0011-a"],
                        "failed": {"id": 12, "name": "0012-b", "error": "boom"}});
    for report in [done, failed] {
        let mut text = serde_json::to_value(ReconcileSection::default()).unwrap();
        text["migrations"] = report.clone();
        let text = serde_json::to_string(&text).unwrap();
        let section: ReconcileSection = serde_json::from_str(&text).unwrap();
        assert!(section.extra.is_empty());
        let typed = section.migrations.as_ref().unwrap();
        assert_eq!(serde_json::to_value(typed).unwrap(), report);
        assert_eq!(serde_json::to_string(&section).unwrap(), text);
    }
    let text = serde_json::to_string(&json!({"migrations": {"from": 3, "to": 4,
        "failed": {"id": 4}}}))
    .unwrap();
    let section: ReconcileSection = serde_json::from_str(&text).unwrap();
    assert_eq!(
        section.migrations,
        Some(MigrationReport {
            from: 3,
            to: 4,
            failed: Some(FailedMigration {
                id: 4,
                ..Default::default()
            }),
            ..Default::default()
        })
    );
    // Runs other than the migrations write no `migrations` member.
    let plain = serde_json::to_value(ReconcileSection::default()).unwrap();
    assert!(plain.get("migrations").is_none());
    // A report of the wrong shape is an error naming it, not an extra passed along.
    let bad = r#"{"migrations": {"from": "ten"}}"#;
    let error = compute_spec::parse::decode::<ReconcileSection>(bad).unwrap_err();
    assert!(error.starts_with("migrations.from: "), "{error}");
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
                       "attempts": 1, "files": 2, "unpacked_bytes": 3, "template": "shared",
                       "layers": 4},
        "reconcile": {"plan": [{"sql": "GRANT x TO y", "phase": "grants", "database": "postgres",
                                "destructive": false}],
                      "failures": [{"object": "role \"y\"", "phase": "grants", "sql": "GRANT x TO y",
                                    "database": "postgres", "error": "no"}],
                      "migrations": {"from": 12, "to": 13, "pending": [], "applied": ["0013-x"],
                                     "failed": null}},
    });
    let parsed: ComputeDocument = serde_json::from_value(document.clone()).unwrap();
    let sync = parsed.sync_safekeepers.as_ref().unwrap();
    assert_eq!(sync.method, SyncMethod::Unknown("safekeepers-grpc".into()));
    let basebackup = parsed.basebackup.as_ref().unwrap();
    assert_eq!(basebackup.source, "s3-snapshot");
    assert_eq!(basebackup.attempts, Some(1));
    assert_eq!(basebackup.template, Some(TemplateOutcome::from("shared")));
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
        "/reconcile/migrations",
    ] {
        assert_eq!(written.pointer(path), document.pointer(path), "{path}");
    }
    assert_eq!(
        written["reconcile"]["plan"][0]["phase"],
        Value::from("grants")
    );
}

/// Each stage's spans are a field of its own section (found by the stage's name), and
/// `take_spans` empties every section: what compute-ctl passes on carries no span twice.
#[test]
fn each_stage_s_spans_are_in_its_section_and_taken_from_all() {
    let span = |name: &str| {
        json!({"name": name, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
               "span_id": "00f067aa0ba902b7", "parent_span_id": "53995c3f42cd8ad8",
               "start_unix_nanos": 1, "end_unix_nanos": 2})
    };
    let mut document: ComputeDocument = serde_json::from_value(json!({
        "document_version": 1, "spec": null, "pgdata": "/data", "pgbin": "/usr/bin/postgres",
        "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": 5432, "socket_dir": "/data"},
        "spec_load": {"source": "spec", "spec_load_ms": 1, "spans": [span("load")]},
        "basebackup": {"source": "initdb", "basebackup_ms": 5, "basebackup_bytes": 0,
                       "spans": [span("initdb"), span("configure")]},
        "reconcile": {"spans": [span("roles")]},
    }))
    .unwrap();
    let names = |spans: &[compute_spec::trace::SpanRecord]| {
        spans.iter().map(|s| s.name.clone()).collect::<Vec<_>>()
    };
    let basebackup = document.stage_spans_mut("pg-basebackup-fetch").unwrap();
    assert_eq!(names(basebackup), ["initdb", "configure"]);
    assert!(document.stage_spans_mut("pg-sync-safekeepers").is_none());
    assert!(document.stage_spans_mut("pg-supervise").is_none());
    assert_eq!(
        names(&document.take_spans()),
        ["load", "initdb", "configure", "roles"]
    );
    assert!(document.take_spans().is_empty());
    let written = serde_json::to_value(&document).unwrap();
    assert!(written["basebackup"].get("spans").is_none(), "{written}");
}
