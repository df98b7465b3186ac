//! Hostile and mistyped specs: what could inject lines into `postgresql.conf` or SQL through
//! options is refused by validation (exit 2, naming the field by its JSON path) and again by
//! rendering; type errors name the JSON path of the field.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::path::PathBuf;
use std::process::Command;

use compute_spec::parse::{parse_any, parse_bare, parse_envelope};
use compute_spec::pgconf::{render, ConfParams};
use compute_spec::spec::ComputeSpec;
use serde_json::{json, Value};
use stage_kit::stage::{parse_input, StageInput};

fn spec_with(cluster_extra: Value) -> ComputeSpec {
    let mut value = json!({"format_version": 1.0, "cluster": {"roles": [], "databases": []}});
    if let (Some(cluster), Value::Object(extra)) = (value["cluster"].as_object_mut(), cluster_extra)
    {
        cluster.extend(extra);
    }
    serde_json::from_value(value).unwrap()
}

fn params() -> ConfParams {
    ConfParams {
        port: 5432,
        socket_dir: PathBuf::from("/run/pg"),
        privileged_role_name: "neon_superuser".to_string(),
        extension_server_port: None,
        dynamic_shared_memory_mmap: false,
        extra_lines: Vec::new(),
        neon_library: false,
    }
}

fn fields(spec: &ComputeSpec) -> Vec<String> {
    match spec.validate() {
        Ok(source) => panic!("validated: {source:?}"),
        Err(errors) => errors.0.into_iter().map(|e| e.field).collect(),
    }
}

#[test]
fn settings_that_would_add_lines_are_refused_by_validation_and_rendering() {
    let spec = spec_with(json!({"settings": [
        {"name": "fsync", "value": "off", "vartype": "bool"},
        {"name": "work_mem", "value": "5\ncluster_name = 'X'", "vartype": "integer"},
        {"name": "statement_timeout = 1\nwork_mem", "value": "64MB", "vartype": "integer"},
        {"name": "cluster_name", "value": "x\ny", "vartype": "string"},
        {"name": "shared_buffers", "value": "lots", "vartype": "integer"},
        {"name": "jit", "value": "maybe", "vartype": "bool"},
        {"name": "work_mem", "value": "1", "vartype": "number"},
        {"name": "x", "value": "a\u{0}b", "vartype": "enum"},
        {"name": "include_dir", "value": "/tmp", "vartype": "string"}
    ]}));
    assert_eq!(
        fields(&spec),
        [
            "cluster.settings[1].value",
            "cluster.settings[2].name",
            "cluster.settings[3].value",
            "cluster.settings[4].value",
            "cluster.settings[5].value",
            "cluster.settings[6].vartype",
            "cluster.settings[7].value",
            "cluster.settings[8].name",
        ]
    );
    let error = render(&spec, &params()).unwrap_err();
    assert_eq!(error.field, "cluster.settings[1].value");
    assert!(error.message.contains("control character"), "{error}");
}

#[test]
fn every_text_that_reaches_postgresql_conf_is_checked() {
    let mut spec = spec_with(json!({}));
    spec.endpoint_id = Some("ep\nport = 1".to_string());
    assert_eq!(fields(&spec), ["endpoint_id"]);
    assert_eq!(render(&spec, &params()).unwrap_err().field, "endpoint_id");

    let mut params = params();
    params.socket_dir = PathBuf::from("/tmp/a\nport = 1");
    let spec = spec_with(json!({}));
    let error = render(&spec, &params).unwrap_err();
    assert_eq!(error.field, "instance.socket_dir");

    let mut params = self::params();
    params.extra_lines = vec![("primary_conninfo".into(), "'x'\nport = 1".into())];
    assert!(render(&spec, &params).is_err());
}

#[test]
fn postgresql_conf_must_be_plain_settings() {
    let good = spec_with(json!({"postgresql_conf":
        "# comment\nshared_buffers = 128MB\nlisten_addresses='*' # all\n\nwork_mem 4MB\n"}));
    good.validate().unwrap();
    let conf = render(&good, &params()).unwrap();
    assert!(
        conf.starts_with("# comment\nshared_buffers = 128MB\n"),
        "{conf}"
    );
    for (text, line) in [
        ("a = 1\ninclude '/etc/passwd'\n", "line 2"),
        ("a = 'unterminated\nb = 2", "line 1"),
        ("a = 1 2", "line 1"),
        ("# Managed by compute_ctl: begin\n", "line 1"),
        ("x = 1\0", "line 1"),
    ] {
        let spec = spec_with(json!({ "postgresql_conf": text }));
        let errors = spec.validate().unwrap_err();
        assert_eq!(errors.0[0].field, "cluster.postgresql_conf", "{text:?}");
        assert!(errors.0[0].message.starts_with(line), "{errors}");
        assert!(render(&spec, &params()).is_err(), "{text:?}");
    }
}

#[test]
fn role_and_database_options_outside_the_keyword_tables_are_refused() {
    let spec = spec_with(json!({
        "roles": [
            {"name": "ok", "options": [
                {"name": "CONNECTION LIMIT", "value": "3", "vartype": "integer"},
                {"name": "IN ROLE pg_monitor", "value": null, "vartype": "string"}]},
            {"name": "evil", "options": [
                {"name": "NOLOGIN", "value": null, "vartype": "bool"},
                {"name": "CONNECTION LIMIT 3; CREATE ROLE x; --", "value": null, "vartype": "integer"}]}
        ],
        "databases": [
            {"name": "d", "owner": "ok", "options": [
                {"name": "TEMPLATE", "value": "template0", "vartype": "enum"},
                {"name": "ALLOW_CONNECTIONS", "value": "sometimes", "vartype": "bool"}]}
        ]
    }));
    let errors = spec.validate().unwrap_err();
    let found: Vec<(&str, &str)> = errors
        .0
        .iter()
        .map(|e| (e.field.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(found.len(), 2, "{errors}");
    assert_eq!(found[0].0, "cluster.roles[1].options[1].name");
    assert!(found[0].1.starts_with("role \"evil\", option "), "{errors}");
    assert_eq!(found[1].0, "cluster.databases[0].options[1].value");
    assert!(
        found[1].1.starts_with("database \"d\", option "),
        "{errors}"
    );
}

#[test]
fn the_binary_exits_2_naming_the_field() {
    let spec = json!({"format_version": 1.0, "cluster": {"roles": [], "databases": [],
        "settings": [{"name": "work_mem", "value": "5\ncluster_name = 'X'", "vartype": "integer"}]}});
    let output = Command::new(env!("CARGO_BIN_EXE_compute-spec"))
        .args([
            "-s",
            &spec.to_string(),
            "-D",
            "/tmp/compute-spec-hardening-test",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let envelope: Value = serde_json::from_str(&stdout).unwrap();
    let message = envelope["error"]["message"].as_str().unwrap();
    assert!(message.contains("cluster.settings[0].value"), "{message}");
    assert_eq!(envelope["error"]["kind"], "invalid_spec");
}

#[test]
fn type_errors_name_the_json_path() {
    let bare = r#"{"format_version": 1.0, "cluster": {"roles": [{"name": "a"}, {"name": 5}],
        "databases": []}}"#;
    let message = parse_bare(bare, "spec.json").unwrap_err().message;
    assert!(
        message.contains("cluster.roles[1].name: invalid type: integer `5`, expected a string"),
        "{message}"
    );
    assert!(!message.contains("line"), "{message}");
    assert_eq!(
        parse_any(bare, "stdin").unwrap_err().message,
        message.replace("spec.json", "stdin")
    );

    let envelope = r#"{"spec": {"format_version": 1.0, "cluster": {"roles": [],
        "databases": [{"name": "d", "owner": ["x"]}]}}, "compute_ctl_config": {}}"#;
    let message = parse_envelope(envelope, "config.json").unwrap_err().message;
    assert!(
        message.contains("spec.cluster.databases[0].owner: invalid type"),
        "{message}"
    );

    let settings = r#"{"format_version": 1.0, "cluster": {"roles": [], "databases": [],
        "settings": [{"name": "a", "value": "1"}]}}"#;
    let message = parse_bare(settings, "s").unwrap_err().message;
    assert!(
        message.contains("cluster.settings[0]: missing field `vartype`"),
        "{message}"
    );

    // A syntax error still says where in the text.
    let message = parse_bare("{\"format_version\": 1.0,", "s")
        .unwrap_err()
        .message;
    assert!(message.contains("line 1"), "{message}");

    // The compute document read by every stage.
    let document = json!({"document_version": 1, "spec": {"format_version": 1.0,
        "cluster": {"roles": [], "databases": [], "settings": [{"name": "a", "value": 1, "vartype": "integer"}]}}});
    match parse_input("test", &document.to_string()) {
        Ok(StageInput::Document(_)) | Ok(StageInput::Failed(_)) => panic!("parsed"),
        Err(error) => assert!(
            error
                .message
                .contains("spec.cluster.settings[0].value: invalid type"),
            "{}",
            error.message
        ),
    }
}

#[test]
fn the_upstream_fixtures_still_render() {
    for name in ["compute_api-cluster_spec.json", "spec.json", "config.json"] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/neon")
            .join(name);
        let text = std::fs::read_to_string(path).unwrap();
        let spec = parse_any(&text, name).unwrap().spec.unwrap();
        let conf = render(&spec, &params()).unwrap();
        assert!(conf.contains("\nfsync = off\n"), "{name}");
    }
}

/// What a real `postgres -C <name>` reads from the rendered file, for each name.
fn postgres_reads(conf: &str, names: &[&str]) -> Vec<String> {
    let pg = pg_test_support::TestPostgres::start();
    let path = pg.dir().join("rendered.conf");
    std::fs::write(&path, conf).unwrap();
    pg_test_support::chown_to_postgres(&path);
    names
        .iter()
        .map(|name| {
            let mut command = Command::new(pg.bin_dir().join("postgres"));
            pg_test_support::as_postgres_user(&mut command);
            let output = command
                .arg("-D")
                .arg(pg.data_dir())
                .arg(format!("--config-file={}", path.display()))
                .args(["-C", name])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success(),
                "postgres -C {name}: {stderr}\n{conf}"
            );
            String::from_utf8_lossy(&output.stdout)
                .trim_end()
                .to_string()
        })
        .collect()
}

#[test]
fn a_real_postgres_reads_the_rendered_file_as_meant() {
    let spec = spec_with(json!({
        "postgresql_conf": "work_mem = 4MB\ndefault_statistics_target 200 # kept\nsearch_path = café\n",
        "settings": [
            {"name": "application_name", "value": "it's a \\ test # not a comment", "vartype": "string"},
            {"name": "default_transaction_isolation", "value": "read committed", "vartype": "enum"},
            {"name": "maintenance_work_mem", "value": "64 MB", "vartype": "integer"},
            {"name": "statement_timeout", "value": "1min", "vartype": "integer"},
            {"name": "random_page_cost", "value": "1e1", "vartype": "real"},
            {"name": "work_mem", "value": "8MB", "vartype": "integer"}
        ]
    }));
    spec.validate().unwrap();
    let mut params = params();
    params.port = 5433;
    let conf = render(&spec, &params).unwrap();
    let names = [
        "work_mem",
        "default_statistics_target",
        "application_name",
        "default_transaction_isolation",
        "maintenance_work_mem",
        "statement_timeout",
        "random_page_cost",
        "search_path",
        "port",
        "cluster_name",
    ];
    assert_eq!(
        postgres_reads(&conf, &names),
        // `postgres -C` prints base units: kB and ms.
        [
            "8192",
            "200",
            "it's a \\ test # not a comment",
            "read committed",
            "65536",
            "60000",
            "10",
            "café",
            "5433",
            ""
        ]
    );
}
