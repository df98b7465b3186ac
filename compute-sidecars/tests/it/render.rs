//! `compute-sidecars render`: every sidecar file of a document on stdout, a hostile value
//! refused with an error envelope naming it (and nothing rendered), bad stdin and an earlier
//! stage's error handled as the stages handle them.

use std::io::Write;
use std::process::{Command, Stdio};

use compute_spec::exit_code;
use pg_test_support::stage_run::StageRun;
use serde_json::{json, Value};

/// A compute document around `spec` (the pipeline's shape, written by hand).
fn document(spec: Value) -> String {
    let mut spec_object = json!({
        "format_version": 1.0,
        "cluster": {"roles": [], "databases": []},
    });
    spec_object
        .as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    json!({
        "document_version": 1,
        "spec": spec_object,
        "pgdata": "/var/db/postgres/compute",
        "pgbin": "/usr/lib/postgresql/15/bin/postgres",
        "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": 55433, "socket_dir": "/tmp"},
    })
    .to_string()
}

/// Runs `compute-sidecars render` with `args`, `stdin` and only the audit endpoint variables
/// given in `env`.
fn render(args: &[&str], env: &[(&str, &str)], stdin: &str) -> StageRun {
    let mut command = Command::new(env!("CARGO_BIN_EXE_compute-sidecars"));
    command
        .arg("render")
        .args(args)
        .env_remove("AUDIT_LOGGING_ENDPOINT")
        .env_remove("AUDIT_LOGGING_TLS_ENDPOINT")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    StageRun::from_output(&child.wait_with_output().unwrap())
}

#[test]
fn render_writes_every_sidecar_file_of_a_document() {
    let spec = json!({
        "endpoint_id": "ep-quiet-1",
        "project_id": "proj-1",
        "audit_log_level": "Hipaa",
        "logs_export_host": "collector:10514",
        "pgbouncer_settings": {"default_pool_size": "7", "max_client_conn": "300"},
        "local_proxy_config": {
            "jwks": [{"id": "k1", "role_names": ["app"], "jwks_url": "https://auth/jwks",
                      "provider_name": "auth", "jwt_audience": null}]
        },
    });
    let run = render(
        &["--rsyslog-work-dir", "/var/lib/rsyslog"],
        &[("AUDIT_LOGGING_ENDPOINT", "audit.example.com:6514")],
        &document(spec),
    )
    .expect_json();
    assert_eq!(run.code, i32::from(exit_code::OK), "{}", run.stderr);
    assert_eq!(
        run.json["pgbouncer_settings"],
        json!({"default_pool_size": "7", "max_client_conn": "300"})
    );
    assert_eq!(
        run.json["local_proxy_config"],
        json!({"jwks": [{"id": "k1", "role_names": ["app"], "jwks_url": "https://auth/jwks",
                         "provider_name": "auth"}]})
    );
    let audit = run.json["rsyslog"]["audit"].as_str().unwrap();
    for expected in [
        "target=\"audit.example.com\" port=\"6514\"",
        "global(workDirectory=\"/var/lib/rsyslog\")",
        "File=\"/var/db/postgres/compute/log/*.log\"",
        "set $.json_log!endpoint_id = \"ep-quiet-1\";",
    ] {
        assert!(audit.contains(expected), "{expected} not in {audit}");
    }
    let export = run.json["rsyslog"]["export"].as_str().unwrap();
    assert!(
        export.contains("target=\"collector\" port=\"10514\""),
        "{export}"
    );

    let plain = render(&[], &[], &document(json!({}))).expect_json();
    assert_eq!(plain.code, i32::from(exit_code::OK), "{}", plain.stderr);
    assert_eq!(
        plain.json,
        json!({"pgbouncer_settings": null, "local_proxy_config": null,
               "rsyslog": {"audit": null, "export": null}})
    );
}

/// Values that would add lines to pgbouncer's INI file or directives to rsyslog's
/// configuration are refused with exit 2 and an envelope naming them; nothing is rendered.
#[test]
fn hostile_values_are_refused_naming_them() {
    let endpoint = [("AUDIT_LOGGING_ENDPOINT", "audit.example.com:6514")];
    let cases = [
        (
            json!({"pgbouncer_settings": {"default_pool_size": "7\n[databases]\nx = host=evil"}}),
            &endpoint[..],
            "pgbouncer_settings.default_pool_size: the value has a control character",
        ),
        (
            json!({"pgbouncer_settings": {"auth_file = /etc/passwd\n;": "1"}}),
            &endpoint[..],
            "pgbouncer_settings: \"auth_file = /etc/passwd\\n;\" is not a setting name",
        ),
        (
            json!({"audit_log_level": "Full",
                   "endpoint_id": "ep\"; action(type=\"omfile\" file=\"/tmp/x\")"}),
            &endpoint[..],
            "endpoint_id ",
        ),
        (
            json!({"audit_log_level": "Hipaa"}),
            &[("AUDIT_LOGGING_ENDPOINT", "h:1\naction(type=\"omfile\")")][..],
            "AUDIT_LOGGING_ENDPOINT: ",
        ),
        (
            json!({"logs_export_host": "h:1\" x"}),
            &[][..],
            "logs_export_host: ",
        ),
    ];
    for (spec, env, message) in cases {
        let run = render(&[], env, &document(spec.clone())).expect_json();
        let error = run.failed_with(exit_code::USAGE, "invalid_spec");
        assert_eq!(error["stage"], "compute-sidecars");
        let text = error["message"].as_str().unwrap();
        assert!(text.starts_with(message), "{spec}: {text}");
        assert!(run.json.get("rsyslog").is_none(), "{}", run.stdout);
    }
}

#[test]
fn bad_stdin_and_an_earlier_error_are_handled_as_the_stages_do() {
    let run = render(&[], &[], "not json").expect_json();
    run.failed_with(exit_code::USAGE, "invalid_document");
    let earlier = json!({"error": {"stage": "compute-spec", "kind": "invalid_spec",
                                   "message": "no spec", "retryable": false}});
    let run = render(&[], &[], &earlier.to_string()).expect_json();
    assert_eq!(run.code, i32::from(exit_code::RUNTIME));
    assert_eq!(run.json, earlier);
}
