//! The start plan's checks, the files written and the restarts run, with a restart command
//! that counts its runs.

use super::*;
use std::os::unix::fs::PermissionsExt;

fn document(pgdata: &Path, spec: serde_json::Value) -> ComputeDocument {
    serde_json::from_value(serde_json::json!({
        "document_version": 1,
        "spec": spec,
        "pgdata": pgdata,
        "pgbin": "/usr/lib/postgresql/15/bin/postgres",
        "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": 5432, "socket_dir": "/tmp"},
    }))
    .unwrap()
}

fn spec(level: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut spec = serde_json::json!({
        "format_version": 1.0,
        "audit_log_level": level,
        "endpoint_id": "ep-test-1",
        "cluster": {"roles": [], "databases": []},
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

struct Setup {
    dir: tempfile::TempDir,
    params: AuditParams,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rsyslog.d")).unwrap();
        std::fs::create_dir(dir.path().join("pgdata")).unwrap();
        let count = dir.path().join("restarts");
        let params = AuditParams {
            rsyslog_dir: dir.path().join("rsyslog.d"),
            work_dir: dir.path().join("work"),
            ca_file: PathBuf::from(CA_FILE),
            restart: Some(format!("echo restarted >> '{}'", count.display())),
            cleanup_interval: Duration::from_secs(60),
        };
        Setup { dir, params }
    }

    fn pgdata(&self) -> PathBuf {
        self.dir.path().join("pgdata")
    }

    fn restarts(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("restarts"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.params.rsyslog_dir.join(name)).ok()
    }
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    move |name| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| OsString::from(value))
    }
}

#[test]
fn compliance_levels_need_an_endpoint() {
    let setup = Setup::new();
    for level in ["Hipaa", "Extended", "Full"] {
        let doc = document(&setup.pgdata(), spec(level, serde_json::json!({})));
        for vars in [&[][..], &[(ENDPOINT_VAR, ""), (TLS_ENDPOINT_VAR, " ")][..]] {
            let error = plan_start(&setup.params, &doc, env(vars))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(TLS_ENDPOINT_VAR) && error.contains(ENDPOINT_VAR),
                "{error}"
            );
            assert!(error.contains(level), "{error}");
        }
    }
    for level in ["Disabled", "Log", "Base"] {
        let doc = document(&setup.pgdata(), spec(level, serde_json::json!({})));
        let plan = plan_start(&setup.params, &doc, env(&[])).unwrap();
        assert!(plan.audit.is_none() && plan.export.is_none());
    }
}

#[test]
fn bad_endpoints_and_ids_are_refused_naming_their_source() {
    let setup = Setup::new();
    let doc = document(&setup.pgdata(), spec("Hipaa", serde_json::json!({})));
    let error = plan_start(&setup.params, &doc, env(&[(ENDPOINT_VAR, "nohost")]))
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("AUDIT_LOGGING_ENDPOINT: \"nohost\""),
        "{error}"
    );
    // The TLS one wins, so its error is the one reported.
    let vars = [(ENDPOINT_VAR, "ok:1"), (TLS_ENDPOINT_VAR, "h:1\"\naction(")];
    let error = plan_start(&setup.params, &doc, env(&vars))
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("AUDIT_LOGGING_TLS_ENDPOINT: "), "{error}");
    let hostile = spec(
        "Full",
        serde_json::json!({"endpoint_id": "ep\"; action(type=\"omfile\" file=\"/tmp/x\")"}),
    );
    let doc = document(&setup.pgdata(), hostile);
    let error = plan_start(&setup.params, &doc, env(&[(ENDPOINT_VAR, "h:1")]))
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("endpoint_id "), "{error}");
    let hostile = spec("Full", serde_json::json!({"project_id": "p\nq"}));
    let doc = document(&setup.pgdata(), hostile);
    let error = plan_start(&setup.params, &doc, env(&[(ENDPOINT_VAR, "h:1")]))
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("project_id "), "{error}");
    let bad_export = spec(
        "Disabled",
        serde_json::json!({"logs_export_host": "h:1\"x"}),
    );
    let doc = document(&setup.pgdata(), bad_export);
    let error = plan_start(&setup.params, &doc, env(&[]))
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("logs_export_host: "), "{error}");
    let quoted_dir = setup.dir.path().join("pg\"data");
    let doc = document(&quoted_dir, spec("Hipaa", serde_json::json!({})));
    let error = plan_start(&setup.params, &doc, env(&[(ENDPOINT_VAR, "h:1")]))
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("--pgdata "), "{error}");
}

#[test]
fn a_start_writes_both_files_and_restarts_once() {
    let setup = Setup::new();
    let doc = document(
        &setup.pgdata(),
        spec(
            "Hipaa",
            serde_json::json!({"project_id": "proj-1", "logs_export_host": "collector:10514"}),
        ),
    );
    let vars = [(TLS_ENDPOINT_VAR, "[::1]:6514")];
    let plan = plan_start(&setup.params, &doc, env(&vars)).unwrap();
    install_start(&setup.params, &plan, &setup.pgdata()).unwrap();
    assert_eq!(setup.restarts(), 1);
    let audit = setup.read(AUDIT_CONF).unwrap();
    assert!(audit.contains("target=\"::1\" port=\"6514\""), "{audit}");
    assert!(
        audit.contains("StreamDriverPermittedPeers=\"::1\""),
        "{audit}"
    );
    assert!(
        audit.contains("set $.json_log!endpoint_id = \"ep-test-1\";"),
        "{audit}"
    );
    assert!(
        audit.contains("set $.json_log!project_id = \"proj-1\";"),
        "{audit}"
    );
    let pgdata = setup.pgdata();
    assert!(audit.contains(&format!("File=\"{}/log/*.log\"", pgdata.display())));
    let mode = std::fs::metadata(pgdata.join("log"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let export = setup.read(EXPORT_CONF).unwrap();
    assert!(
        export.contains("target=\"collector\" port=\"10514\""),
        "{export}"
    );
    // A second start restarts again: the audit file is rewritten at every start.
    install_start(&setup.params, &plan, &setup.pgdata()).unwrap();
    assert_eq!(setup.restarts(), 2);
}

#[test]
fn reconfigured_export_restarts_only_on_a_change() {
    let setup = Setup::new();
    let first = export_text(
        &serde_json::from_value(spec(
            "Disabled",
            serde_json::json!({"logs_export_host": "collector:1"}),
        ))
        .unwrap(),
    )
    .unwrap();
    assert!(install_export(&setup.params, first.as_deref()).unwrap());
    assert!(!install_export(&setup.params, first.as_deref()).unwrap());
    assert!(!install_export(&setup.params, None).unwrap());
    assert!(
        setup.read(EXPORT_CONF).is_some(),
        "a disabled export keeps the file"
    );
    assert_eq!(setup.restarts(), 1);
    let second = export_text(
        &serde_json::from_value(spec(
            "Disabled",
            serde_json::json!({"logs_export_host": "collector:2"}),
        ))
        .unwrap(),
    )
    .unwrap();
    assert!(install_export(&setup.params, second.as_deref()).unwrap());
    assert_eq!(setup.restarts(), 2);
}

#[test]
fn restart_and_write_failures_say_what_to_do() {
    let mut setup = Setup::new();
    setup.params.restart = Some("echo nope >&2; exit 3".into());
    let error = install_export(&setup.params, Some("x\n"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("COMPUTE_CTL_RSYSLOG_RESTART"), "{error}");
    setup.params.rsyslog_dir = setup.dir.path().join("missing");
    let error = install_export(&setup.params, Some("y\n"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("does not exist") && error.contains("--rsyslog-dir"),
        "{error}"
    );
}

/// Links planted where the configuration's temporary file (the name the old code used) and
/// `<pgdata>/log` go: the victim file keeps its content, the victim directory its mode and
/// owner (it is not made 0700 nor given to PGDATA's owner).
#[test]
fn planted_links_are_never_followed() {
    let setup = Setup::new();
    let victim = setup.dir.path().join("passwd");
    std::fs::write(&victim, "root:x:0:0\n").unwrap();
    let path = setup.params.rsyslog_dir.join(EXPORT_CONF);
    let old_temporary = setup
        .params
        .rsyslog_dir
        .join(format!(".{EXPORT_CONF}.compute-ctl-{}", std::process::id()));
    std::os::unix::fs::symlink(&victim, &old_temporary).unwrap();
    write_file(&path, "export\n").unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:x:0:0\n");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "export\n");

    let pgdata = setup.pgdata();
    std::os::unix::fs::chown(&pgdata, Some(54_321), Some(54_321)).unwrap();
    let victim_dir = setup.dir.path().join("etc");
    std::fs::create_dir(&victim_dir).unwrap();
    std::fs::set_permissions(&victim_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(&victim_dir, pgdata.join("log")).unwrap();
    let error = make_log_dir(&pgdata).unwrap_err().to_string();
    assert!(error.contains("symbolic link"), "{error}");
    let metadata = std::fs::metadata(&victim_dir).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o7777, 0o755);
    assert_eq!(metadata.uid(), 0, "the linked directory was given away");
}
