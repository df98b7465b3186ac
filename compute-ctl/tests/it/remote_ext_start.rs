//! compute-ctl with the real stages, a real archive server and PostgreSQL from a private
//! installation: `pg-extensions-fetch` runs between `pg-basebackup-fetch` and
//! `pg-supervise`, so a remote preload library is in place when Postgres starts;
//! `/metrics.json` reports the download; `neon.extension_server_port` is the internal port;
//! a preload library the spec does not allow fails start-up, naming it and its spec field.
#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::farm;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{compute_spec_bin, workspace_bin, Compute};
use farm::{archive, ArchiveServer, Farm};
use nix::sys::signal::Signal;
use pg_test_support::{free_tcp_port, TestDir};
use serde_json::{json, Value};

fn spec(port: u16, preload: &str) -> Value {
    let data = json!({"control_data": {}, "archive_path": "x"});
    json!({
        "format_version": 1.0,
        "suspend_timeout_seconds": 0,
        "cluster": {"roles": [], "databases": [], "settings": [
            {"name": "port", "value": port.to_string(), "vartype": "integer"},
            {"name": "shared_preload_libraries", "value": preload, "vartype": "string"}
        ]},
        "remote_extensions": {
            "public_extensions": ["auto_explain"],
            "custom_extensions": null,
            "library_index": {"auto_explain": "auto_explain", "pg_prewarm": "pg_prewarm"},
            "extension_data": {"auto_explain": data, "pg_prewarm": data}
        }
    })
}

fn start(farm: &Farm, dir: &Path, base_url: &str, spec: &Value) -> (Compute, u16) {
    let port = free_tcp_port();
    let internal_port = free_tcp_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_compute-ctl"));
    command
        .arg("-D")
        .arg(dir.join("pgdata"))
        .arg("-b")
        .arg(farm.postgres())
        .args(["-C", "postgresql://cloud_admin@localhost/postgres"])
        .args(["-s", &spec.to_string()])
        .args(["-r", base_url])
        .args(["--external-http-port", &port.to_string()])
        .args(["--internal-http-port", &internal_port.to_string()])
        .args(["--terminated-grace", "0s"])
        .env("COMPUTE_CTL_STAGE_COMPUTE_SPEC", compute_spec_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for stage in [
        "pg-sync-safekeepers",
        "pg-basebackup-fetch",
        "pg-extensions-fetch",
        "pg-supervise",
        "pg-reconcile",
    ] {
        command.env(
            format!(
                "COMPUTE_CTL_STAGE_{}",
                stage.to_ascii_uppercase().replace('-', "_")
            ),
            workspace_bin(stage),
        );
    }
    let compute = Compute {
        child: command.spawn().unwrap(),
        port,
    };
    compute.wait_for_http();
    (compute, internal_port)
}

#[test]
fn a_remote_preload_library_is_downloaded_before_postgres_starts() {
    let dir = TestDir::new("rxs");
    let farm = Farm::new(&dir.path().join("farm"), &["auto_explain"]);
    let pg_major = pg_extensions_fetch::Installation::discover(&farm.postgres())
        .unwrap()
        .pg_major;
    let real_lib = farm::real_bin_dir().parent().unwrap().join("lib");
    let server = ArchiveServer::start();
    server.serve(
        &pg_major,
        "auto_explain",
        farm::Answer::ok(archive(&[(
            "lib/auto_explain.so",
            &std::fs::read(real_lib.join("auto_explain.so")).unwrap(),
        )])),
    );

    let pg_port = free_tcp_port();
    let run = dir.path().join("run1");
    std::fs::create_dir(&run).unwrap();
    let (mut compute, internal_port) = start(
        &farm,
        &run,
        &server.base_url,
        &spec(pg_port, "auto_explain"),
    );
    let status = compute.wait_status("running");
    assert_eq!(status["error"], Value::Null, "{status}");
    let metrics = compute.get("/metrics.json").json();
    assert_eq!(metrics["num_ext_downloaded"], 1, "{metrics}");
    assert!(
        metrics["total_ext_download_size"].as_u64().unwrap() > 1000,
        "{metrics}"
    );
    assert_eq!(
        metrics["largest_ext_size"],
        metrics["total_ext_download_size"]
    );
    assert_eq!(server.requests(&pg_major, "auto_explain"), 1);

    let pgdata = run.join("pgdata");
    let socket_dir = compute_spec::document::default_socket_dir(&pgdata, pg_port);
    let mut client = postgres::Config::new()
        .host_path(&socket_dir)
        .port(pg_port)
        .user("cloud_admin")
        .dbname("postgres")
        .connect(postgres::NoTls)
        .unwrap();
    let preload: String = client
        .query_one("SHOW shared_preload_libraries", &[])
        .unwrap()
        .get(0);
    assert_eq!(preload, "auto_explain");
    let loaded: String = client
        .query_one("SHOW auto_explain.log_min_duration", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        loaded, "-1",
        "auto_explain's settings exist: the library is loaded"
    );
    let conf = std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap();
    assert!(
        conf.contains(&format!("neon.extension_server_port={internal_port}")),
        "{conf}"
    );
    drop(client);
    compute.signal(Signal::SIGTERM);
    assert_eq!(compute.wait_exit(Duration::from_secs(30)), 0);

    // A preload library whose extension the spec does not list: start-up fails, naming it.
    let run = dir.path().join("run2");
    std::fs::create_dir(&run).unwrap();
    let (mut compute, _) = start(
        &farm,
        &run,
        &server.base_url,
        &spec(free_tcp_port(), "pg_prewarm"),
    );
    let status = compute.wait_status("failed");
    let error = status["error"].as_str().unwrap();
    assert!(error.contains("\"pg_prewarm\""), "{error}");
    assert!(error.contains("cluster.settings"), "{error}");
    assert!(
        error.contains("extension pg_prewarm is not found"),
        "{error}"
    );
    compute.signal(Signal::SIGTERM);
    compute.wait_exit(Duration::from_secs(30));
    assert_eq!(server.requests(&pg_major, "pg_prewarm"), 0);
}
