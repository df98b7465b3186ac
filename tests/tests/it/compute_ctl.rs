//! compute-ctl as the all-in-one entrypoint, with the real stages and real PostgreSQL.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use compute_tools_tests::{
    binary, post, postmaster_pid, process_alive, psql, wait_until, write_sample_spec, PostgresChild,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pg_test_support::{free_tcp_port, TestDir};
use serde_json::Value;

/// A running compute-ctl, killed with its postmaster on drop if the test fails.
struct Compute {
    child: PostgresChild,
    http_port: u16,
}

impl Compute {
    fn start(args: &[&str], pgdata: &Path, http_port: u16) -> Compute {
        Compute::start_with_env(args, pgdata, http_port, &[])
    }

    fn start_with_env(
        args: &[&str],
        pgdata: &Path,
        http_port: u16,
        env: &[(&str, &str)],
    ) -> Compute {
        let child = Command::new(binary("compute-ctl"))
            .envs(env.iter().copied())
            .args(args)
            .args(["-D", pgdata.to_str().unwrap()])
            .args(["--external-http-port", &http_port.to_string()])
            .args(["--internal-http-port", "0"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning compute-ctl");
        Compute {
            child: PostgresChild::new(child, pgdata),
            http_port,
        }
    }

    fn status(&self) -> Option<Value> {
        let url = format!("http://127.0.0.1:{}/status", self.http_port);
        let mut response = ureq::get(&url).call().ok()?;
        response.body_mut().read_json().ok()
    }

    fn wait_for_status(&self, wanted: &str, timeout: Duration) -> Value {
        pg_test_support::probe::wait_for_status(timeout, wanted, || self.status())
            .unwrap_or_else(|last| panic!("status never became {wanted}; last: {last}"))
    }
}

#[test]
fn compute_ctl_runs_the_spec_and_exits_with_postgres_code_on_sigterm() {
    let dir = TestDir::new("e2e-ctl");
    let port = free_tcp_port();
    let spec = write_sample_spec(dir.path(), port);
    let pgdata = dir.path().join("pgdata");
    let pgbin = pg_test_support::pg_bin("postgres");
    let mut compute = Compute::start(
        &[
            "-C",
            "postgresql://cloud_admin@localhost/postgres",
            "-S",
            spec.to_str().unwrap(),
            "-b",
            pgbin.to_str().unwrap(),
        ],
        &pgdata,
        free_tcp_port(),
    );
    let status = compute.wait_for_status("running", Duration::from_secs(60));
    assert!(status["start_time"].is_string(), "{status}");

    let socket_dir = pgdata.as_path();
    let roles = psql(
        socket_dir,
        port,
        "postgres",
        "select count(*) from pg_roles where rolname in ('app_owner', 'app_reader')",
    );
    assert_eq!(roles, "2");
    let app_owner = psql(
        socket_dir,
        port,
        "postgres",
        "select pg_get_userbyid(datdba) from pg_database where datname = 'app'",
    );
    assert_eq!(app_owner, "app_owner");

    let postmaster = postmaster_pid(&pgdata).expect("postmaster.pid");
    kill(Pid::from_raw(compute.child.id() as i32), Signal::SIGTERM).unwrap();
    let mut exit = None;
    assert!(wait_until(Duration::from_secs(30), || {
        exit = compute.child.try_wait().ok().flatten();
        exit.is_some()
    }));
    assert_eq!(exit.and_then(|status| status.code()), Some(0));
    assert!(wait_until(Duration::from_secs(5), || !process_alive(
        postmaster
    )));
}

#[test]
fn autoscaling_starts_the_vm_monitor_and_stops_it_with_postgres() {
    let dir = TestDir::new("e2e-auto");
    let spec = write_sample_spec(dir.path(), free_tcp_port());
    let pgdata = dir.path().join("pgdata");
    let pgbin = pg_test_support::pg_bin("postgres");
    let monitor_addr = format!("127.0.0.1:{}", free_tcp_port());
    let mut compute = Compute::start_with_env(
        &[
            "-S",
            spec.to_str().unwrap(),
            "-b",
            pgbin.to_str().unwrap(),
            "--vm-monitor-addr",
            &monitor_addr,
        ],
        &pgdata,
        free_tcp_port(),
        &[("AUTOSCALING", "1")],
    );
    compute.wait_for_status("running", Duration::from_secs(60));

    // The agent protocol: version handshake, then a health check echoed with its id.
    let url = format!("ws://{monitor_addr}/monitor");
    let mut agent = None;
    assert!(wait_until(Duration::from_secs(10), || {
        agent = tungstenite::connect(url.as_str()).ok();
        agent.is_some()
    }));
    let (mut socket, _) = agent.unwrap();
    let mut exchange = |message: &str| -> Value {
        socket.send(tungstenite::Message::text(message)).unwrap();
        loop {
            if let tungstenite::Message::Text(text) = socket.read().unwrap() {
                return serde_json::from_str(text.as_str()).unwrap();
            }
        }
    };
    assert_eq!(exchange(r#"{"min": 1, "max": 1}"#)["version"], 1);
    let health = exchange(r#"{"type": "HealthCheck", "content": {}, "id": 2}"#);
    assert_eq!(health["type"], "HealthCheck");
    assert_eq!(health["id"], 2);

    // The PGDATA lock goes to the stages and Postgres, never to a sidecar like the vm-monitor.
    let lock = std::fs::canonicalize(dir.path().join("pgdata.compute-tools.lock")).unwrap();
    let mut holding = Vec::new();
    let mut others = Vec::new();
    for pid in pg_test_support::crash::descendants(compute.child.id() as i32) {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|fds| {
                fds.flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == lock))
            })
            .unwrap_or(false);
        match open {
            true => holding.push(comm.trim().to_string()),
            false => others.push(comm.trim().to_string()),
        }
    }
    assert!(holding.iter().any(|c| c == "postgres"), "{holding:?}");
    assert!(others.iter().any(|c| c == "vm-monitor"), "{others:?}");
    assert!(!holding.iter().any(|c| c == "vm-monitor"), "{holding:?}");

    kill(Pid::from_raw(compute.child.id() as i32), Signal::SIGTERM).unwrap();
    let mut exit = None;
    assert!(wait_until(Duration::from_secs(30), || {
        exit = compute.child.try_wait().ok().flatten();
        exit.is_some()
    }));
    assert_eq!(exit.and_then(|status| status.code()), Some(0));
    assert!(
        std::net::TcpStream::connect(&monitor_addr).is_err(),
        "the vm-monitor still listens after Postgres stopped"
    );
}

#[test]
fn systemd_hears_ready_once_running_and_stopping_on_shutdown() {
    let dir = TestDir::new("e2e-sd");
    let spec = write_sample_spec(dir.path(), free_tcp_port());
    let pgdata = dir.path().join("pgdata");
    let pgbin = pg_test_support::pg_bin("postgres");
    let socket_path = dir.path().join("notify.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut compute = Compute::start_with_env(
        &["-S", spec.to_str().unwrap(), "-b", pgbin.to_str().unwrap()],
        &pgdata,
        free_tcp_port(),
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
    );
    let mut buffer = [0u8; 512];
    let n = listener.recv(&mut buffer).expect("a notification");
    // Postgres (built with systemd support) must not speak first: READY=1 means running.
    assert_eq!(&buffer[..n], b"READY=1");
    assert_eq!(compute.status().unwrap()["status"], "running");

    kill(Pid::from_raw(compute.child.id() as i32), Signal::SIGTERM).unwrap();
    let n = listener.recv(&mut buffer).expect("a notification");
    assert_eq!(&buffer[..n], b"STOPPING=1");
    assert_eq!(compute.child.wait().unwrap().code(), Some(0));
    listener
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(listener.recv(&mut buffer).is_err(), "nothing else was sent");
}

#[test]
fn empty_then_configure_then_reconfigure_then_terminate() {
    let dir = TestDir::new("e2e-cfg");
    let port = free_tcp_port();
    let spec_path = write_sample_spec(dir.path(), port);
    let mut spec: Value =
        serde_json::from_str(&std::fs::read_to_string(spec_path).unwrap()).unwrap();
    let pgdata = dir.path().join("pgdata");
    let pgbin = pg_test_support::pg_bin("postgres");
    let http_port = free_tcp_port();
    let mut compute = Compute::start(
        &["-b", pgbin.to_str().unwrap(), "--terminated-grace", "1s"],
        &pgdata,
        http_port,
    );
    compute.wait_for_status("empty", Duration::from_secs(30));
    let base = format!("http://127.0.0.1:{http_port}");

    let body = serde_json::json!({"spec": spec, "compute_ctl_config": {}});
    let (status, answer) = post(&format!("{base}/configure"), &body.to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "running");
    let roles =
        "select string_agg(rolname, ',' order by rolname) from pg_roles where rolname like 'app%'";
    assert_eq!(
        psql(&pgdata, port, "postgres", roles),
        "app_owner,app_reader"
    );

    // Live: one role more, one reloadable setting changed; Postgres is not restarted.
    let postmaster = postmaster_pid(&pgdata).unwrap();
    spec["cluster"]["roles"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "app_writer", "encrypted_password": null}));
    spec["cluster"]["settings"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(
            {"name": "log_min_duration_statement", "value": "250", "vartype": "integer"}
        ));
    let body = serde_json::json!({"spec": spec, "compute_ctl_config": {}});
    let (status, answer) = post(&format!("{base}/configure"), &body.to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        psql(&pgdata, port, "postgres", roles),
        "app_owner,app_reader,app_writer"
    );
    assert_eq!(
        psql(&pgdata, port, "postgres", "show log_min_duration_statement"),
        "250ms"
    );
    assert_eq!(
        postmaster_pid(&pgdata),
        Some(postmaster),
        "Postgres was restarted"
    );

    let (status, answer) = post(&format!("{base}/terminate?mode=fast"), "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["lsn"], Value::Null, "no safekeepers, no LSN");
    let mut exit = None;
    assert!(wait_until(Duration::from_secs(45), || {
        exit = compute.child.try_wait().ok().flatten();
        exit.is_some()
    }));
    assert_eq!(exit.and_then(|status| status.code()), Some(0));
    assert!(!process_alive(postmaster));
}

#[test]
fn compute_ctl_clones_a_vanilla_primary() {
    let primary = pg_test_support::TestPostgres::builder()
        .setting("wal_level", "replica")
        .setting("max_wal_senders", "5")
        .hba_line("local replication all trust")
        .start();
    primary.psql("create table accounts (id int primary key); insert into accounts select generate_series(1, 42)");
    let dir = TestDir::new("e2e-clone");
    let port = free_tcp_port();
    let spec_path = write_sample_spec(dir.path(), port);
    let mut spec: Value =
        serde_json::from_str(&std::fs::read_to_string(&spec_path).unwrap()).unwrap();
    spec["upstream_connstring"] = Value::from(format!(
        "host={} port={} user=cloud_admin",
        primary.socket_dir().display(),
        primary.port()
    ));
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let pgdata = dir.path().join("pgdata");
    let pgbin = pg_test_support::pg_bin("postgres");
    let mut compute = Compute::start(
        &[
            "-S",
            spec_path.to_str().unwrap(),
            "-b",
            pgbin.to_str().unwrap(),
        ],
        &pgdata,
        free_tcp_port(),
    );
    compute.wait_for_status("running", Duration::from_secs(60));
    assert_eq!(
        psql(&pgdata, port, "postgres", "select count(*) from accounts"),
        "42"
    );
    // A writable copy: the clone takes writes the primary never sees, and got the spec's roles.
    psql(
        &pgdata,
        port,
        "postgres",
        "insert into accounts values (43)",
    );
    assert_eq!(primary.psql("select count(*) from accounts"), "42");
    assert_eq!(
        psql(
            &pgdata,
            port,
            "postgres",
            "select count(*) from pg_roles where rolname = 'app_owner'"
        ),
        "1"
    );
    kill(Pid::from_raw(compute.child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(compute.child.wait().unwrap().code(), Some(0));
}
