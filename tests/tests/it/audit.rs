//! Audit logging and log export end to end: compute-ctl with the real stages, Debian's
//! pgaudit and pgauditlogtofile, and a real `rsyslogd` started by the test (its own main
//! configuration, work directory and pid file; a supervisor thread of the test starts it
//! again when compute-ctl's restart command stops it), forwarding to TCP receivers in the
//! test. A user's DDL reaches the receiver as a JSON payload carrying `endpoint_id`; the
//! tools' own statements are not audited; old audit files are deleted and the directory is
//! measured; a compliance level without an endpoint fails the start naming both variables;
//! with `logs_export_host` a Postgres log line reaches a second receiver through
//! `postgres_logs.conf` (Postgres and compute-ctl run in a private mount namespace where
//! `/dev/log` is rsyslogd's private socket).
#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

pub(crate) mod common;

use std::io::BufRead;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::{audited_spec, compute_ctl, payload, wait_running, Rsyslog};
use compute_tools_tests::{psql, status, wait_until, PostgresChild};
use pg_test_support::{free_tcp_port, TestDir};
use serde_json::{json, Value};

/// A TCP receiver: every line any client sends, kept in order.
struct Receiver {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let kept = kept.clone();
                std::thread::spawn(move || {
                    for line in std::io::BufReader::new(stream).lines() {
                        let Ok(line) = line else { return };
                        kept.lock().unwrap().push(line);
                    }
                });
            }
        });
        Receiver { port, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for a line containing `needle`.
    fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        pg_test_support::wait_for(timeout, || {
            self.lines().into_iter().find(|line| line.contains(needle))
        })
    }
}

#[test]
fn hipaa_records_reach_the_receiver_without_the_tools_own_statements() {
    let dir = TestDir::new("e2e-audit");
    let receiver = Receiver::start();
    let rsyslog = Rsyslog::start(&dir.path().join("rsyslog"), false);
    let port = free_tcp_port();
    let spec = audited_spec(dir.path(), port, "Hipaa", json!({}));
    let http_port = free_tcp_port();
    let internal_port = free_tcp_port();
    let ports = (http_port, internal_port);
    let mut command = compute_ctl(dir.path(), &spec, ports, Some(&rsyslog));
    command.env(
        "AUDIT_LOGGING_ENDPOINT",
        format!("127.0.0.1:{}", receiver.port),
    );
    let pgdata = dir.path().join("pgdata");
    let _compute = PostgresChild::new(command.spawn().unwrap(), &pgdata);
    wait_running(http_port, Some(&rsyslog), Duration::from_secs(120));

    let written =
        std::fs::read_to_string(rsyslog.dir.join("rsyslog.d/compute_audit_rsyslog.conf")).unwrap();
    assert!(
        written.contains(&format!("port=\"{}\"", receiver.port)),
        "{written}"
    );
    let conf = std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap();
    assert!(
        conf.contains("shared_preload_libraries='pgaudit,pgauditlogtofile'\n"),
        "{conf}"
    );

    // A statement of the tools in a user database (`/grants`: a GRANT, which this level
    // audits), then a user's DDL there (not `postgres`, whose default is pgaudit.log=none).
    let grant = json!({"database": "app", "schema": "public", "privileges": ["CREATE"],
                       "role": "app_reader"});
    let url = format!("http://127.0.0.1:{internal_port}/grants");
    let (code, answer) = compute_tools_tests::post(&url, &grant.to_string());
    assert_eq!(code, 201, "{answer}");
    let socket = pgdata.clone();
    psql(&socket, port, "app", "CREATE TABLE audit_probe_t (i int)");
    let record = receiver
        .wait_for("audit_probe_t", Duration::from_secs(60))
        .unwrap_or_else(|| {
            panic!(
                "no audit record at the receiver: {:?}\nrsyslogd: {}\nfiles: {:?}",
                receiver.lines(),
                rsyslog.output(),
                std::fs::read_dir(pgdata.join("log")).map(|d| d.count())
            )
        });
    let json = payload(&record);
    assert_eq!(json["endpoint_id"], "ep-audit-test-1", "{record}");
    assert_eq!(json["project_id"], "proj-audit-1", "{record}");
    let msg = json["msg"].as_str().unwrap();
    assert!(msg.contains("CREATE TABLE audit_probe_t"), "{msg}");
    assert!(msg.contains(",SESSION,"), "{msg}");
    assert!(msg.contains(",app,"), "the database: {msg}");
    // `stop`: the record went to the receiver only, not to the main configuration's file.
    let all = std::fs::read_to_string(rsyslog.dir.join("all.log")).unwrap_or_default();
    assert!(!all.contains("audit_probe_t"), "{all}");

    // The tools' own sessions (the apply, /grants, the activity monitor, the scans) set
    // pgaudit.log=none: none of their statements was audited (the files are read in order,
    // so the GRANT's record would have come before the DDL's).
    for line in receiver.lines() {
        for theirs in ["CREATE ROLE", "GRANT", "app_reader", "compute_ctl:"] {
            assert!(
                !line.contains(theirs),
                "a tools statement was audited: {line}"
            );
        }
    }

    // Upkeep: an audit file older than 15 minutes is deleted, the rest measured.
    let old = pgdata.join("log/audit-19700101_0000.log");
    std::fs::write(&old, "old\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(16 * 60))
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || !old.exists()),
        "the old audit file was not deleted"
    );
    let size = metric(http_port, "compute_audit_log_dir_size");
    let on_disk: u64 = std::fs::read_dir(pgdata.join("log"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum();
    assert!(size > 0 && size <= on_disk + 4096, "{size} vs {on_disk}");
}

fn metric(http_port: u16, name: &str) -> u64 {
    let url = format!("http://127.0.0.1:{http_port}/metrics");
    let text = ureq::get(&url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn a_compliance_level_without_an_endpoint_fails_the_start() {
    let dir = TestDir::new("e2e-audit-missing");
    let port = free_tcp_port();
    let spec = audited_spec(dir.path(), port, "Full", json!({}));
    for endpoint in [None, Some("no-port-here"), Some("127.0.0.1:9")] {
        let http_port = free_tcp_port();
        let mut command = compute_ctl(dir.path(), &spec, (http_port, 0), None);
        if let Some(endpoint) = endpoint {
            command.env("AUDIT_LOGGING_ENDPOINT", endpoint);
        }
        let pgdata = dir.path().join("pgdata");
        let _compute = PostgresChild::new(command.spawn().unwrap(), &pgdata);
        let mut last = Value::Null;
        assert!(
            wait_until(Duration::from_secs(60), || {
                last = status(http_port);
                last["status"] == "failed"
            }),
            "{last}"
        );
        let error = last["error"].as_str().unwrap();
        match endpoint {
            None => assert!(
                error.contains("AUDIT_LOGGING_TLS_ENDPOINT")
                    && error.contains("AUDIT_LOGGING_ENDPOINT is set"),
                "{error}"
            ),
            Some("no-port-here") => assert!(
                error.contains("AUDIT_LOGGING_ENDPOINT: \"no-port-here\"")
                    && error.contains("expected host:port"),
                "{error}"
            ),
            // A good endpoint, but no rsyslog directory to write to (checked after the
            // stages, before Postgres starts).
            Some(_) => assert!(
                error.contains("no-rsyslog.d does not exist") && error.contains("--rsyslog-dir"),
                "{error}"
            ),
        }
        assert!(
            !pgdata.join("postmaster.pid").exists(),
            "Postgres was started"
        );
    }
}

/// Runs `inner` in a private mount namespace whose `/dev` is a copy of the real one (every
/// entry bind-mounted) plus `/dev/log` → `socket`: Postgres's syslog messages go to the
/// test's rsyslogd, and nothing outside the namespace changes.
fn in_private_dev(inner: &Command, socket: &Path, scratch: &Path) -> Command {
    let probe = Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .status();
    assert!(
        probe.is_ok_and(|status| status.success()),
        "this test runs compute-ctl in a private mount namespace: it needs root (CAP_SYS_ADMIN) \
         and util-linux's unshare"
    );
    let script = scratch.join("private-dev.sh");
    // The old /dev is reached through the shell's working directory once the new one is
    // mounted over it (the test directory itself lives under /dev/shm).
    std::fs::write(
        &script,
        "set -e\nsocket=\"$1\"; olddev=\"$2\"; shift 2\n\
         mkdir -p \"$olddev\"\nmount --rbind /dev \"$olddev\"\ncd \"$olddev\"\n\
         mount -t tmpfs -o mode=0755 tmpfs /dev\n\
         for entry in *; do\n  \
           if [ -L \"$entry\" ]; then cp -a \"$entry\" \"/dev/$entry\"\n  \
           elif [ -d \"$entry\" ]; then mkdir \"/dev/$entry\"; mount --rbind \"$entry\" \"/dev/$entry\"\n  \
           else touch \"/dev/$entry\"; mount --bind \"$entry\" \"/dev/$entry\"; fi\n\
         done\ncd /\nln -s \"$socket\" /dev/log\nexec \"$@\"\n",
    )
    .unwrap();
    let mut command = Command::new("unshare");
    command
        .args(["-m", "--propagation", "private", "sh"])
        .arg(&script)
        .arg(socket)
        .arg(scratch.join("olddev"))
        .arg(inner.get_program())
        .args(inner.get_args())
        .stdin(Stdio::null());
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command
}

#[test]
fn exported_postgres_log_lines_reach_the_collector_at_start_and_after_configure() {
    let dir = TestDir::new("e2e-logexp");
    let first = Receiver::start();
    let rsyslog = Rsyslog::start(&dir.path().join("rsyslog"), true);
    let port = free_tcp_port();
    let export = json!({"logs_export_host": format!("127.0.0.1:{}", first.port)});
    let spec = audited_spec(dir.path(), port, "Disabled", export);
    let http_port = free_tcp_port();
    let inner = compute_ctl(dir.path(), &spec, (http_port, 0), Some(&rsyslog));
    let mut command = in_private_dev(&inner, &rsyslog.dir.join("log.sock"), dir.path());
    let pgdata = dir.path().join("pgdata");
    let _compute = PostgresChild::new(command.spawn().unwrap(), &pgdata);
    wait_running(http_port, Some(&rsyslog), Duration::from_secs(120));
    let conf = std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap();
    assert!(conf.contains("log_destination='stderr,syslog'\n"), "{conf}");
    assert!(
        !rsyslog
            .dir
            .join("rsyslog.d/compute_audit_rsyslog.conf")
            .exists(),
        "no audit configuration below the compliance levels"
    );

    let raise = |text: &str| {
        let sql = format!("DO $$BEGIN RAISE LOG '{text}'; END$$");
        psql(&pgdata, port, "postgres", &sql);
    };
    raise("export-probe-one");
    let line = first
        .wait_for("export-probe-one", Duration::from_secs(60))
        .unwrap_or_else(|| {
            panic!(
                "nothing exported: {:?}\n{}",
                first.lines(),
                rsyslog.output()
            )
        });
    // RFC 5424 (RSYSLOG_SyslogProtocol23Format): `<PRI>1 TIMESTAMP HOST APP-NAME …`.
    let fields: Vec<&str> = line.split(' ').collect();
    assert!(
        fields[0].starts_with('<') && fields[0].ends_with(">1"),
        "{line}"
    );
    assert_eq!(fields[3], "postgres", "{line}");
    // The export rule ends with `stop`: the host's later rules (here the catch-all file)
    // never see an exported line.
    raise("export-probe-marker");
    assert!(first
        .wait_for("export-probe-marker", Duration::from_secs(60))
        .is_some());
    std::thread::sleep(Duration::from_millis(500));
    let rest = std::fs::read_to_string(rsyslog.dir.join("all.log")).unwrap_or_default();
    assert!(
        !rest.contains("export-probe"),
        "an exported line reached the host's later rules:\n{rest}"
    );

    // /configure with another collector: the file is rewritten, rsyslog restarted.
    let second = Receiver::start();
    let mut spec_json: Value = serde_json::from_slice(&std::fs::read(&spec).unwrap()).unwrap();
    spec_json["logs_export_host"] = json!(format!("127.0.0.1:{}", second.port));
    let body = json!({"spec": spec_json, "compute_ctl_config": {}});
    let url = format!("http://127.0.0.1:{http_port}/configure");
    let (code, answer) = compute_tools_tests::post(&url, &body.to_string());
    assert_eq!(code, 200, "{answer}");
    wait_running(http_port, Some(&rsyslog), Duration::from_secs(120));
    let written =
        std::fs::read_to_string(rsyslog.dir.join("rsyslog.d/postgres_logs.conf")).unwrap();
    assert!(
        written.contains(&format!("port=\"{}\"", second.port)),
        "{written}"
    );
    raise("export-probe-two");
    assert!(
        second
            .wait_for("export-probe-two", Duration::from_secs(60))
            .is_some(),
        "nothing at the second collector: {:?}\n{}",
        second.lines(),
        rsyslog.output()
    );
    assert!(first
        .lines()
        .iter()
        .all(|l| !l.contains("export-probe-two")));

    // A bad logs_export_host fails the reconfiguration, naming the field.
    spec_json["logs_export_host"] = json!("no-port");
    let body = json!({"spec": spec_json, "compute_ctl_config": {}});
    let (_, answer) = compute_tools_tests::post(&url, &body.to_string());
    let mut last = answer;
    assert!(
        wait_until(Duration::from_secs(30), || {
            last = status(http_port);
            last["status"] == "failed"
        }),
        "{last}"
    );
    let error = last["error"].as_str().unwrap();
    assert!(error.contains("logs_export_host: \"no-port\""), "{error}");
}
