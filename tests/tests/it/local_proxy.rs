//! local_proxy end to end with a stand-in (`compute_tools_tests::stand_in::LocalProxy`:
//! local_proxy is Neon's program, not packaged). compute-ctl with the real
//! stages writes the spec's `local_proxy_config` (its `tls` replaced by compute-ctl's own TLS
//! paths, nulls dropped), sends SIGHUP at start and after a `/configure`, creates the
//! `role_names` roles, and sends SIGTERM on `/terminate`.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::process::Stdio;
use std::time::Duration;

use compute_tools_tests::{
    compute_ctl_command, post, psql, stand_in::LocalProxy, wait_running, wait_until,
    write_sample_spec, PostgresChild,
};
use pg_test_support::tls::{CertKit, KeyType};
use pg_test_support::{free_tcp_port, TestDir};
use serde_json::{json, Value};

#[test]
fn config_written_signals_sent_only_to_the_lock_holder_and_roles_created() {
    let dir = TestDir::new("e2e-local-proxy");
    let kit = CertKit::new(&dir.path().join("certs"));
    let cert = kit.server("server", KeyType::EcSec1, "3001", 2);
    let mut stand_in = LocalProxy::start(&dir.path().join("local_proxy"));

    let port = free_tcp_port();
    let spec_path = write_sample_spec(dir.path(), port);
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&spec_path).unwrap()).unwrap();
    spec["features"] = json!(["tls_experimental"]);
    let jwks = |url: &str| {
        json!({"jwks": [{"id": "p1", "role_names": ["proxy_user"], "jwks_url": url,
                         "provider_name": "test", "jwt_audience": null}],
               "tls": {"key_path": "/from/the/spec.key", "cert_path": "/from/the/spec.crt"}})
    };
    spec["local_proxy_config"] = jwks("https://auth.example/jwks");
    spec["cluster"]["roles"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "proxy_user", "encrypted_password": null, "options": null}));
    let tls = json!({"key_path": cert.key, "cert_path": cert.cert});
    let config = json!({"spec": spec, "compute_ctl_config": {"tls": tls}});
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();

    let pgdata = dir.path().join("pgdata");
    let http_port = free_tcp_port();
    let child = compute_ctl_command(&pgdata, http_port, 0)
        .args(["-c", config_path.to_str().unwrap()])
        .args([
            "--local-proxy-config",
            stand_in.config_file.to_str().unwrap(),
        ])
        .args([
            "--local-proxy-pid-file",
            stand_in.pid_file.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut compute = PostgresChild::new(child, &pgdata);
    wait_running(http_port, Duration::from_secs(90));
    // Written and signalled before `running`.
    // (The stand-in's handler records the signal asynchronously: poll for it.)
    assert!(
        wait_until(Duration::from_secs(10), || stand_in.hup(0).is_some()),
        "no SIGHUP at start: {:?}",
        stand_in.record()
    );
    let first = stand_in.hup(0).unwrap();
    assert_eq!(first["pretty"], true, "{first}");
    assert_eq!(
        first["config"],
        json!({"jwks": [{"id": "p1", "role_names": ["proxy_user"],
                         "jwks_url": "https://auth.example/jwks", "provider_name": "test"}],
               "tls": {"key_path": cert.key, "cert_path": cert.cert}})
    );
    // A role of `role_names` is created without the privileged role's membership that the
    // other spec roles get.
    let members = "select string_agg(m.rolname, ',' order by m.rolname) from pg_auth_members a \
                   join pg_roles r on r.oid = a.roleid join pg_roles m on m.oid = a.member \
                   where r.rolname = 'neon_superuser' and m.rolname in ('app_reader', 'proxy_user')";
    assert_eq!(psql(&pgdata, port, "postgres", members), "app_reader");
    assert_eq!(
        psql(
            &pgdata,
            port,
            "postgres",
            "select count(*) from pg_roles where rolname = 'proxy_user'"
        ),
        "1"
    );

    spec["local_proxy_config"] = jwks("https://auth.example/jwks-2");
    let body = json!({"spec": spec, "compute_ctl_config": {"tls": tls}});
    let base = format!("http://127.0.0.1:{http_port}");
    let (code, answer) = post(&format!("{base}/configure"), &body.to_string());
    assert_eq!(code, 200, "{answer}");
    assert!(
        wait_until(Duration::from_secs(10), || stand_in.hup(1).is_some()),
        "no SIGHUP after /configure: {:?}",
        stand_in.record()
    );
    assert_eq!(
        stand_in.hup(1).unwrap()["config"]["jwks"][0]["jwks_url"],
        "https://auth.example/jwks-2"
    );

    let (code, answer) = post(&format!("{base}/terminate"), "");
    assert_eq!(code, 200, "{answer}");
    let mut exit = None;
    assert!(wait_until(Duration::from_secs(20), || {
        exit = stand_in.process.0.try_wait().unwrap();
        exit.is_some()
    }));
    assert_eq!(stand_in.record().last().map(String::as_str), Some("TERM"));
    assert!(wait_until(Duration::from_secs(30), || compute
        .try_wait()
        .ok()
        .flatten()
        .is_some()));
}
