//! File-cache sizing against a real (vanilla) Postgres 15: without the neon
//! extension `neon.file_cache_size_limit` is absent, which must be skipped and
//! not be an error; once the setting exists (here as a custom placeholder) the
//! ALTER SYSTEM path is exercised for real.
//!
//! Needs root (to run Postgres as the `postgres` OS user via `runuser`) and
//! `/usr/lib/postgresql/15/bin`; otherwise the test prints why and passes.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Agent, GIB, MIB};
use serde_json::json;
use vm_monitor::filecache::{self, PgSettings, ResizeOutcome, SettingsBackend};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A throw-away Postgres under /dev/shm, stopped on drop.
struct TestPg {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl TestPg {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn connstr(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.path().display(),
            self.port
        )
    }

    fn start() -> Result<TestPg, String> {
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if !is_root || !Path::new(PG_BIN).join("initdb").exists() {
            return Err("not root or no Postgres 15 binaries".into());
        }
        let shm = if Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        let dir = tempfile::Builder::new()
            .prefix("vm-monitor-pg")
            .tempdir_in(shm)
            .map_err(|e| e.to_string())?;
        let ok = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status()
            .map_err(|e| e.to_string())?
            .success();
        if !ok {
            return Err("chown failed".into());
        }
        let port = 20000 + (std::process::id() % 20000) as u16;
        let mut pg = TestPg {
            dir,
            port,
            child: None,
        };
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(pg.data())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let child = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/postgres"))
            .arg("-D")
            .arg(pg.data())
            .arg("-k")
            .arg(pg.dir.path())
            .args(["-c", "listen_addresses=", "-c", "fsync=off", "-p"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        pg.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if postgres::Client::connect(&pg.connstr(), postgres::NoTls).is_ok() {
                return Ok(pg);
            }
            if Instant::now() > end {
                return Err("Postgres did not accept connections in 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{PG_BIN}/pg_ctl"))
            .args(["-m", "immediate", "-w", "-D"])
            .arg(self.data())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn settings(pg: &TestPg) -> PgSettings {
    PgSettings::new(pg.connstr().parse().unwrap())
}

#[test]
fn file_cache_against_real_postgres() {
    let pg = match TestPg::start() {
        Ok(pg) => pg,
        Err(why) => {
            eprintln!("skipping real-Postgres file-cache test: {why}");
            return;
        }
    };

    // The query itself works on a real server.
    let mut s = settings(&pg);
    let sb = s.setting_bytes("shared_buffers").unwrap();
    assert!(sb.is_some_and(|b| b > 0), "{sb:?}");

    // Absent setting → skipped, not an error.
    assert_eq!(s.setting_bytes(filecache::LIMIT_SETTING).unwrap(), None);
    assert_eq!(
        filecache::resize(&mut s, 4 * GIB).unwrap(),
        ResizeOutcome::Skipped
    );

    // Through the monitor: upscale and downscale both succeed.
    let h = common::start(None, Some(pg.connstr()));
    let mut a = Agent::connect_v1(h.local_addr());
    a.send(
        "UpscaleNotification",
        json!({"granted": {"cpu": 1.0, "mem": 4 * GIB}}),
        2,
    );
    assert_eq!(
        a.recv_reply(),
        json!({"type": "UpscaleConfirmation", "id": 2})
    );
    a.send(
        "DownscaleRequest",
        json!({"target": {"cpu": 0.5, "mem": GIB}}),
        4,
    );
    let r = a.recv_reply();
    assert_eq!(r["type"], "DownscaleResult", "{r}");
    assert_eq!(r["Ok"], true, "{r}");
    h.shutdown();

    // Make the setting exist as a custom placeholder (a per-database default
    // is visible to new sessions at once) and size the cache for real.
    let mut admin = postgres::Client::connect(&pg.connstr(), postgres::NoTls).unwrap();
    admin
        .batch_execute("ALTER DATABASE postgres SET neon.file_cache_size_limit = '0'")
        .unwrap();
    let mut s = settings(&pg);
    assert_eq!(s.setting_bytes(filecache::LIMIT_SETTING).unwrap(), Some(0));
    assert_eq!(
        filecache::resize(&mut s, GIB).unwrap(),
        ResizeOutcome::Set { mib: 698 }
    );
    let auto = std::fs::read_to_string(pg.data().join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains("neon.file_cache_size_limit = '698'"),
        "{auto}"
    );
    assert_eq!(filecache::file_cache_size(GIB), 698 * MIB);
}
