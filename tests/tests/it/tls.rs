//! TLS end to end (`compute_ctl_config.tls` with the `tls_experimental` feature): compute-ctl
//! with the real stages and real PostgreSQL serves the certificate `openssl` made, a client
//! verifying it (`psql "sslmode=verify-full sslrootcert=…"`) connects over TLS, a renewed
//! certificate is served to new connections without a restart, and a key that does not
//! match leaves the compute `failed` with an error naming the file after the bounded wait.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use compute_tools_tests::{binary, postmaster_pid, wait_until, write_sample_spec, PostgresChild};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pg_test_support::tls::{served_serial, CertKit, KeyType, ServerCert};
use pg_test_support::{free_tcp_port, TestDir};
use serde_json::{json, Value};

/// Writes the `{spec, compute_ctl_config}` file: the sample spec on `port`, listening on
/// 127.0.0.1, with `tls_experimental`, and TLS from `cert_path`/`key_path`.
fn write_config(dir: &Path, port: u16, cert_path: &Path, key_path: &Path) -> PathBuf {
    let spec_path = write_sample_spec(dir, port);
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&spec_path).unwrap()).unwrap();
    for setting in spec["cluster"]["settings"].as_array_mut().unwrap() {
        if setting["name"] == "listen_addresses" {
            setting["value"] = json!("127.0.0.1");
        }
    }
    spec["features"] = json!(["tls_experimental"]);
    let config = json!({
        "spec": spec,
        "compute_ctl_config": {"tls": {"cert_path": cert_path, "key_path": key_path}},
    });
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// Replaces `to` with `from`'s content the way a certificate manager does (write, rename).
fn replace(from: &Path, to: &Path) {
    let temporary = to.with_extension("new");
    std::fs::copy(from, &temporary).unwrap();
    std::fs::rename(&temporary, to).unwrap();
}

fn start(config: &Path, pgdata: &Path, http_port: u16, env: &[(&str, &str)]) -> PostgresChild {
    let pgbin = pg_test_support::pg_bin("postgres");
    let child = Command::new(binary("compute-ctl"))
        .envs(env.iter().copied())
        .args(["-C", "postgresql://cloud_admin@localhost/postgres"])
        .args(["-c", config.to_str().unwrap()])
        .args(["-b", pgbin.to_str().unwrap()])
        .args(["-D", pgdata.to_str().unwrap()])
        .args(["--external-http-port", &http_port.to_string()])
        .args(["--internal-http-port", "0"])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawning compute-ctl");
    PostgresChild::new(child, pgdata)
}

fn status(http_port: u16) -> Option<Value> {
    let url = format!("http://127.0.0.1:{http_port}/status");
    let mut response = ureq::get(&url).call().ok()?;
    response.body_mut().read_json().ok()
}

/// Polls `/status` until it says `wanted` (or `failed`); the last body.
fn wait_status(http_port: u16, timeout: Duration, wanted: &str) -> Value {
    pg_test_support::probe::wait_for_status(timeout, wanted, || status(http_port))
        .unwrap_or_else(|last| last)
}

/// `psql` over TCP to `localhost`, verifying the server certificate against `ca`.
fn psql_verified(port: u16, ca: &Path, sql: &str) -> Result<String, String> {
    let conninfo = format!(
        "host=localhost port={port} user=cloud_admin dbname=postgres sslmode=verify-full \
         sslrootcert={}",
        ca.display()
    );
    let output = Command::new(pg_test_support::pg_bin("psql"))
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", &conninfo, "-c", sql])
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn postgres_uid() -> Option<u32> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    nix::unistd::User::from_name("postgres")
        .unwrap()
        .map(|user| user.uid.as_raw())
}

#[test]
fn verified_tls_connections_and_a_renewal_without_restart() {
    let dir = TestDir::new("e2e-tls");
    let kit = CertKit::new(&dir.path().join("certs"));
    let first: ServerCert = kit.server("first", KeyType::EcSec1, "1001", 2);
    let renewed = kit.server("renewed", KeyType::EcSec1, "1002", 2);
    // The paths compute-ctl watches.
    let live_cert = dir.path().join("tls.crt");
    let live_key = dir.path().join("tls.key");
    replace(&first.cert, &live_cert);
    replace(&first.key, &live_key);
    let port = free_tcp_port();
    let config = write_config(dir.path(), port, &live_cert, &live_key);
    let pgdata = dir.path().join("pgdata");
    let http_port = free_tcp_port();
    let mut compute = start(
        &config,
        &pgdata,
        http_port,
        &[("COMPUTE_CTL_TLS_WATCH_INTERVAL", "200ms")],
    );
    let running = wait_status(http_port, Duration::from_secs(90), "running");
    assert_eq!(running["status"], "running", "{running}");

    for file in ["server.crt", "server.key"] {
        let metadata = std::fs::metadata(pgdata.join(file)).unwrap();
        assert_eq!(metadata.mode() & 0o777, 0o600, "{file}");
        if let Some(uid) = postgres_uid() {
            assert_eq!(metadata.uid(), uid, "{file}");
        }
    }
    let conf = std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap();
    for line in [
        "ssl=on",
        "ssl_cert_file='server.crt'",
        "ssl_key_file='server.key'",
    ] {
        assert!(conf.lines().any(|l| l == line), "{line} missing:\n{conf}");
    }
    let ssl = psql_verified(
        port,
        &kit.ca_cert,
        "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
    );
    assert_eq!(ssl, Ok("t".to_string()));
    assert_eq!(served_serial(port).as_deref(), Some("1001"));
    // A client trusting another CA is refused: the verification is real.
    let stranger = CertKit::new(&dir.path().join("stranger"));
    let refused = psql_verified(port, &stranger.ca_cert, "select 1").unwrap_err();
    assert!(refused.contains("certificate verify failed"), "{refused}");

    // Renewal: key first, then certificate, as a certificate manager may write them.
    let postmaster = postmaster_pid(&pgdata).unwrap();
    replace(&renewed.key, &live_key);
    replace(&renewed.cert, &live_cert);
    let mut served = None;
    assert!(
        wait_until(Duration::from_secs(60), || {
            served = served_serial(port);
            served.as_deref() == Some("1002")
        }),
        "the renewed certificate was never served (last: {served:?}); status: {:?}",
        status(http_port)
    );
    assert_eq!(
        psql_verified(port, &kit.ca_cert, "select 1"),
        Ok("1".to_string())
    );
    assert_eq!(
        postmaster_pid(&pgdata),
        Some(postmaster),
        "Postgres restarted"
    );
    let after = status(http_port).unwrap();
    assert_eq!(after["status"], "running", "{after}");
    assert_eq!(
        std::fs::read(pgdata.join("server.crt")).unwrap(),
        std::fs::read(&renewed.cert).unwrap()
    );

    kill(Pid::from_raw(compute.id() as i32), Signal::SIGTERM).unwrap();
    assert!(wait_until(Duration::from_secs(30), || compute
        .try_wait()
        .ok()
        .flatten()
        .is_some()));
}

#[test]
fn a_key_that_does_not_match_fails_the_start_naming_the_file() {
    let dir = TestDir::new("e2e-tls-bad");
    let kit = CertKit::new(&dir.path().join("certs"));
    let cert = kit.server("server", KeyType::EcSec1, "2001", 2);
    let wrong_key = kit.key("wrong", KeyType::EcSec1);
    let port = free_tcp_port();
    let config = write_config(dir.path(), port, &cert.cert, &wrong_key);
    let pgdata = dir.path().join("pgdata");
    let http_port = free_tcp_port();
    let _compute = start(
        &config,
        &pgdata,
        http_port,
        &[("COMPUTE_CTL_TLS_WAIT", "1s")],
    );
    let failed = wait_status(http_port, Duration::from_secs(60), "failed");
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    let named = format!(
        "compute_ctl_config.tls.key_path {:?}",
        wrong_key.to_str().unwrap()
    );
    assert!(error.contains(&named), "{error}");
    assert!(error.contains("does not match"), "{error}");
    assert!(error.contains("after waiting 1 s"), "{error}");
    assert!(postmaster_pid(&pgdata).is_none(), "Postgres started anyway");
}
