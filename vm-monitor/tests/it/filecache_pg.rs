//! File-cache sizing against a real (vanilla) Postgres: without the neon
//! extension `neon.file_cache_size_limit` is absent, which must be skipped and
//! not be an error; once the setting exists (here as a custom placeholder) the
//! ALTER SYSTEM path is exercised for real.
//!
//! The server is a private one from the test kit (`pg_test_support::TestPostgres`,
//! superuser `postgres`), so the test runs wherever the other real-Postgres tests run.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::common;

use crate::common::{Agent, GIB, MIB};
use pg_test_support::TestPostgres;
use serde_json::json;
use vm_monitor::filecache::{self, PgSettings, ResizeOutcome, SettingsBackend};

fn settings(pg: &TestPostgres) -> PgSettings {
    PgSettings::new(pg.connstr("postgres").parse().unwrap())
}

#[test]
fn file_cache_against_real_postgres() {
    let pg = TestPostgres::builder().superuser("postgres").start();

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
    let h = common::start(None, Some(pg.connstr("postgres")));
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
    let mut admin = pg.client();
    admin
        .batch_execute("ALTER DATABASE postgres SET neon.file_cache_size_limit = '0'")
        .unwrap();
    let mut s = settings(&pg);
    assert_eq!(s.setting_bytes(filecache::LIMIT_SETTING).unwrap(), Some(0));
    assert_eq!(
        filecache::resize(&mut s, GIB).unwrap(),
        ResizeOutcome::Set { mib: 698 }
    );
    let auto = std::fs::read_to_string(pg.data_dir().join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains("neon.file_cache_size_limit = '698'"),
        "{auto}"
    );
    assert_eq!(filecache::file_cache_size(GIB), 698 * MIB);
}
