//! pgbouncer end to end, with the real pgbouncer (Debian's package) started by the test as
//! the postgres user with its own INI file, port and pid file, in front of compute-ctl's
//! real Postgres: `pgbouncer_settings` show in `SHOW CONFIG` after the start and after a
//! `/configure`, the INI file keeps its comments and other keys, clients reach the compute
//! through pgbouncer, and `/terminate` kills it.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use compute_tools_tests::{
    compute_ctl_command, post, wait_running, wait_until, write_sample_spec, KillOnDrop,
    PostgresChild,
};
use pg_test_support::{free_tcp_port, TestDir};
use serde_json::{json, Value};

/// One `psql` command through pgbouncer's TCP port (`database` `pgbouncer`: its console).
fn via_pgbouncer(port: u16, database: &str, sql: &str) -> Result<String, String> {
    let output = Command::new(pg_test_support::pg_bin("psql"))
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args([
            "-p",
            &port.to_string(),
            "-U",
            "cloud_admin",
            "-d",
            database,
            "-c",
            sql,
        ])
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// `SHOW CONFIG`'s value of `key`.
fn show_config(port: u16, key: &str) -> Option<String> {
    let rows = via_pgbouncer(port, "pgbouncer", "SHOW CONFIG").ok()?;
    rows.lines().find_map(|row| {
        let mut fields = row.split('|');
        (fields.next() == Some(key)).then(|| fields.next().unwrap_or("").to_string())
    })
}

fn write_ini(dir: &Path, pg_port: u16, bouncer_port: u16) -> std::path::PathBuf {
    let ini = format!(
        "; written by the test\n[databases]\n* = host=127.0.0.1 port={pg_port}\n\n\
         [pgbouncer]\n# the test's own port\nlisten_addr = 127.0.0.1\nlisten_port = {bouncer_port}\n\
         unix_socket_dir =\nauth_type = trust\nauth_file = {dir}/userlist.txt\n\
         admin_users = cloud_admin\npidfile = {dir}/pgbouncer.pid\nlogfile = {dir}/pgbouncer.log\n\
         default_pool_size = 20\n\n[users]\n",
        dir = dir.display()
    );
    std::fs::write(dir.join("userlist.txt"), "\"cloud_admin\" \"\"\n").unwrap();
    let path = dir.join("pgbouncer.ini");
    std::fs::write(&path, ini).unwrap();
    pg_test_support::chown_to_postgres(dir);
    path
}

#[test]
fn settings_reach_the_real_pgbouncer_and_terminate_kills_it() {
    let dir = TestDir::new("e2e-pgbouncer");
    let bouncer_dir = dir.path().join("pgbouncer");
    std::fs::create_dir(&bouncer_dir).unwrap();
    let port = free_tcp_port();
    let bouncer_port = free_tcp_port();
    let ini = write_ini(&bouncer_dir, port, bouncer_port);
    let mut command = Command::new("pgbouncer");
    command
        .arg(&ini)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    pg_test_support::as_postgres_user(&mut command);
    let mut bouncer = KillOnDrop(
        command
            .spawn()
            .expect("spawning pgbouncer (Debian package pgbouncer)"),
    );
    let pid_file = bouncer_dir.join("pgbouncer.pid");
    assert!(
        wait_until(Duration::from_secs(10), || show_config(
            bouncer_port,
            "default_pool_size"
        )
        .is_some()),
        "pgbouncer did not come up"
    );
    assert_eq!(
        show_config(bouncer_port, "default_pool_size").as_deref(),
        Some("20")
    );

    let spec_path = write_sample_spec(dir.path(), port);
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&spec_path).unwrap()).unwrap();
    for setting in spec["cluster"]["settings"].as_array_mut().unwrap() {
        if setting["name"] == "listen_addresses" {
            setting["value"] = json!("127.0.0.1");
        }
    }
    spec["pgbouncer_settings"] = json!({"default_pool_size": "7", "max_client_conn": "77"});
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let pgdata = dir.path().join("pgdata");
    let http_port = free_tcp_port();
    let admin = format!("host=127.0.0.1 port={bouncer_port} dbname=pgbouncer user=cloud_admin");
    let child = compute_ctl_command(&pgdata, http_port, 0)
        .args(["-S", spec_path.to_str().unwrap()])
        .args(["--pgbouncer-config", ini.to_str().unwrap()])
        .args(["--pgbouncer-admin", &admin])
        .args(["--pgbouncer-pid-file", pid_file.to_str().unwrap()])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut compute = PostgresChild::new(child, &pgdata);
    wait_running(http_port, Duration::from_secs(90));
    assert!(
        wait_until(Duration::from_secs(20), || show_config(
            bouncer_port,
            "default_pool_size"
        )
        .as_deref()
            == Some("7")),
        "default_pool_size never became 7: {:?}",
        show_config(bouncer_port, "default_pool_size")
    );
    assert_eq!(
        show_config(bouncer_port, "max_client_conn").as_deref(),
        Some("77")
    );
    let written = std::fs::read_to_string(&ini).unwrap();
    assert!(
        written.starts_with("; written by the test\n[databases]\n"),
        "{written}"
    );
    assert!(written.contains("# the test's own port\n"), "{written}");
    assert!(
        written.contains(&format!("listen_port = {bouncer_port}\n")),
        "{written}"
    );
    // Clients route through pgbouncer to the compute.
    assert_eq!(
        via_pgbouncer(bouncer_port, "postgres", "select current_setting('port')"),
        Ok(port.to_string())
    );

    spec["pgbouncer_settings"] = json!({"default_pool_size": "9", "max_client_conn": "77"});
    let body = json!({"spec": spec, "compute_ctl_config": {}});
    let base = format!("http://127.0.0.1:{http_port}");
    let (code, answer) = post(&format!("{base}/configure"), &body.to_string());
    assert_eq!(code, 200, "{answer}");
    assert!(
        wait_until(Duration::from_secs(20), || show_config(
            bouncer_port,
            "default_pool_size"
        )
        .as_deref()
            == Some("9")),
        "default_pool_size never became 9 after /configure"
    );

    let (code, answer) = post(&format!("{base}/terminate"), "");
    assert_eq!(code, 200, "{answer}");
    let mut exit = None;
    assert!(wait_until(Duration::from_secs(20), || {
        exit = bouncer.0.try_wait().unwrap();
        exit.is_some()
    }));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        exit.unwrap().signal(),
        Some(9),
        "pgbouncer was not SIGKILLed"
    );
    assert!(wait_until(Duration::from_secs(30), || compute
        .try_wait()
        .ok()
        .flatten()
        .is_some()));
}
