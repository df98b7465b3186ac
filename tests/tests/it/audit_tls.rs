//! The TLS audit endpoint end to end: compute-ctl at level `Hipaa` with
//! `AUDIT_LOGGING_TLS_ENDPOINT=localhost:<port>` and `--rsyslog-ca-file` = a test CA, the
//! real `rsyslogd` (with Debian's rsyslog-gnutls: the gtls stream driver) started by the
//! test, and a TLS receiver (`openssl s_server`) started by the test. A user's DDL arrives
//! over TLS with `endpoint_id`; a receiver whose certificate was signed by another CA, names
//! another host, has expired or is not for server authentication gets nothing (rsyslogd
//! refuses it, and says why).
#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::audit::common;

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{audited_spec, compute_ctl, payload, wait_running, Rsyslog};
use compute_tools_tests::{psql, PostgresChild};
use pg_test_support::probe::wait_for_port;
use pg_test_support::tls::{CertKit, KeyType, Names, ServerCert};
use pg_test_support::{free_tcp_port, TestDir};
use serde_json::json;

/// The table the user's DDL creates: its name in a record means the record arrived.
const PROBE: &str = "audit_tls_probe";

/// `openssl s_server -quiet` on a free port with `cert`: every line a client sends over TLS
/// is kept in order (s_server prints only what it decrypted). Its stdin stays open (it ends
/// the session at end of input); it is killed on drop.
struct TlsReceiver {
    port: u16,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    errors: PathBuf,
}

impl TlsReceiver {
    fn start(dir: &Path, cert: &ServerCert) -> TlsReceiver {
        let port = free_tcp_port();
        let errors = dir.join(format!("s_server-{port}.err"));
        let mut child = Command::new("openssl")
            .args(["s_server", "-quiet", "-accept", &port.to_string(), "-cert"])
            .arg(&cert.cert)
            .arg("-key")
            .arg(&cert.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&errors).unwrap())
            .spawn()
            .expect("openssl (Debian package openssl; scripts/install-deps.sh installs it)");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                kept.lock().unwrap().push(line);
            }
        });
        let receiver = TlsReceiver {
            port,
            child,
            lines,
            errors,
        };
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(
            wait_for_port(address, Duration::from_secs(10)),
            "openssl s_server did not listen on {address}: {}",
            receiver.errors()
        );
        receiver
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn errors(&self) -> String {
        std::fs::read_to_string(&self.errors).unwrap_or_default()
    }
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running compute at level `Hipaa` forwarding to `localhost:<receiver>` over TLS, the
/// receiver's certificate checked against `ca`; a user's DDL done in database `app`.
struct AuditedCompute {
    rsyslog: Rsyslog,
    _compute: PostgresChild,
}

impl AuditedCompute {
    fn start(dir: &Path, receiver: &TlsReceiver, ca: &Path) -> AuditedCompute {
        assert!(
            has_gtls(),
            "these tests need rsyslog's gtls stream driver (lmnsd_gtls.so, Debian package \
             rsyslog-gnutls): run scripts/install-deps.sh"
        );
        let rsyslog = Rsyslog::start(&dir.join("rsyslog"), false);
        let port = free_tcp_port();
        let spec = audited_spec(dir, port, "Hipaa", json!({}));
        let http_port = free_tcp_port();
        let mut command = compute_ctl(dir, &spec, (http_port, 0), Some(&rsyslog));
        command
            .env(
                "AUDIT_LOGGING_TLS_ENDPOINT",
                format!("localhost:{}", receiver.port),
            )
            .arg("--rsyslog-ca-file")
            .arg(ca);
        let pgdata = dir.join("pgdata");
        let compute = PostgresChild::new(command.spawn().unwrap(), &pgdata);
        let started = Instant::now();
        wait_running(http_port, Some(&rsyslog), Duration::from_secs(30));
        eprintln!("measured: running after {:?}", started.elapsed());
        let written =
            std::fs::read_to_string(rsyslog.dir.join("rsyslog.d/compute_audit_rsyslog.conf"))
                .unwrap();
        for expected in [
            format!("DefaultNetstreamDriverCAFile=\"{}\"", ca.display()),
            format!("target=\"localhost\" port=\"{}\"", receiver.port),
            "StreamDriver=\"gtls\"".to_string(),
        ] {
            assert!(written.contains(&expected), "{expected} in:\n{written}");
        }
        psql(
            &pgdata,
            port,
            "app",
            &format!("CREATE TABLE {PROBE} (i int)"),
        );
        AuditedCompute {
            rsyslog,
            _compute: compute,
        }
    }
}

/// Whether rsyslog's gtls module is installed (`/usr/lib/<arch>/rsyslog/lmnsd_gtls.so`, or
/// `/usr/lib/rsyslog/` on other layouts).
fn has_gtls() -> bool {
    let mut dirs = vec![PathBuf::from("/usr/lib/rsyslog")];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        dirs.extend(entries.flatten().map(|entry| entry.path().join("rsyslog")));
    }
    dirs.iter().any(|dir| dir.join("lmnsd_gtls.so").is_file())
}

// Time bounds (each test < 60 s): rsyslogd up ≤ 10 s, the compute running ≤ 30 s, then the
// record ≤ 15 s, or the refusal ≤ 10 s and 5 s of nothing arriving.

#[test]
fn a_users_ddl_arrives_over_tls_with_the_endpoint_id() {
    let dir = TestDir::new("e2e-audit-tls");
    let kit = CertKit::new(&dir.path().join("certs"));
    let cert = kit.server("receiver", KeyType::EcSec1, "5001", 2);
    let receiver = TlsReceiver::start(dir.path(), &cert);
    let compute = AuditedCompute::start(dir.path(), &receiver, &kit.ca_cert);
    let asked = Instant::now();
    let record = pg_test_support::wait_for(Duration::from_secs(15), || {
        receiver
            .lines()
            .into_iter()
            .find(|line| line.contains(PROBE))
    })
    .unwrap_or_else(|| {
        panic!(
            "no audit record at the TLS receiver: {:?}\ns_server: {}\nrsyslogd: {}",
            receiver.lines(),
            receiver.errors(),
            compute.rsyslog.output()
        )
    });
    eprintln!(
        "measured: the record arrived {:?} after the DDL",
        asked.elapsed()
    );
    let json = payload(&record);
    assert_eq!(json["endpoint_id"], "ep-audit-test-1", "{record}");
    assert_eq!(json["project_id"], "proj-audit-1", "{record}");
    let msg = json["msg"].as_str().unwrap();
    assert!(msg.contains(&format!("CREATE TABLE {PROBE}")), "{msg}");
    assert!(msg.contains(",app,"), "the database: {msg}");
}

/// A receiver with the certificate `make` returns: rsyslogd refuses it, saying `reason` (its
/// own words), and no record arrives, not even after 5 s more.
fn refused(name: &str, make: impl FnOnce(&CertKit, &Path) -> ServerCert, reason: &str) {
    let dir = TestDir::new(name);
    let kit = CertKit::new(&dir.path().join("certs"));
    let cert = make(&kit, dir.path());
    let receiver = TlsReceiver::start(dir.path(), &cert);
    let compute = AuditedCompute::start(dir.path(), &receiver, &kit.ca_cert);
    let nothing_arrived = || {
        let lines = receiver.lines();
        assert!(
            lines.is_empty(),
            "the receiver got data over TLS with this certificate: {lines:?}"
        );
    };
    let asked = Instant::now();
    // rsyslogd tried, and refused for this reason (not for another one, and not because it
    // never got to try).
    let said = pg_test_support::wait_until(Duration::from_secs(10), || {
        nothing_arrived();
        compute.rsyslog.output().contains(reason)
    });
    assert!(
        said,
        "rsyslogd never said {reason:?}:\n{}\ns_server: {}",
        compute.rsyslog.output(),
        receiver.errors()
    );
    eprintln!("measured: refused {:?} after the DDL", asked.elapsed());
    std::thread::sleep(Duration::from_secs(5));
    nothing_arrived();
    let all = std::fs::read_to_string(compute.rsyslog.dir.join("all.log")).unwrap_or_default();
    assert!(!all.contains(PROBE), "the record went elsewhere: {all}");
}

#[test]
fn a_receiver_certificate_signed_by_another_ca_gets_nothing() {
    refused(
        "e2e-audit-tls-ca",
        |_, dir| {
            let stranger = CertKit::new(&dir.join("stranger"));
            stranger.server("receiver", KeyType::EcSec1, "5002", 2)
        },
        "signer not found",
    );
}

#[test]
fn a_receiver_certificate_for_another_host_gets_nothing() {
    refused(
        "e2e-audit-tls-name",
        |kit, _| {
            let names = Names::host("other.example");
            kit.server_named("receiver", KeyType::EcSec1, "5003", 2, &names)
        },
        "peer name not authorized",
    );
}

#[test]
fn an_expired_receiver_certificate_gets_nothing() {
    refused(
        "e2e-audit-tls-expired",
        |kit, _| kit.server("receiver", KeyType::EcSec1, "5004", -1),
        "certificate expired",
    );
}

#[test]
fn a_receiver_certificate_not_for_server_authentication_gets_nothing() {
    refused(
        "e2e-audit-tls-purpose",
        |kit, _| {
            let names = Names {
                extended_key_usage: "clientAuth".to_string(),
                ..Names::default()
            };
            kit.server_named("receiver", KeyType::EcSec1, "5005", 2, &names)
        },
        "key purpose OID does not match",
    );
}
