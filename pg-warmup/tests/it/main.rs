//! pg-warmup on a real PostgreSQL: the throwaway cluster is made, started, stopped and gone;
//! a `<pgdata>.warmup` that is not ours is refused and left as it was; a server that never
//! becomes ready is killed at the deadline, with nothing left behind.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use pg_test_support::{pg_bin_dir, StageRun, TestDir};
use serde_json::json;

/// The binary under test.
const PG_WARMUP: &str = env!("CARGO_BIN_EXE_pg-warmup");

/// A compute document naming `pgdata` and `bin_dir`'s postgres.
fn document(pgdata: &Path, bin_dir: &Path) -> String {
    json!({
        "document_version": 1,
        "spec": null,
        "pgdata": pgdata,
        "pgbin": bin_dir.join("postgres"),
        "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": 5432, "socket_dir": "/nonexistent"},
    })
    .to_string()
}

fn warm_up(args: &[&str], document: &str) -> StageRun {
    pg_test_support::run_stage_within(PG_WARMUP, args, document, Duration::from_secs(120)).0
}

/// Processes whose command line names `needle` (a throwaway server left behind).
fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) && !text.contains("pg-warmup") {
                found.push(text);
            }
        }
    }
    found
}

#[test]
fn a_throwaway_cluster_is_started_with_large_buffers_and_removed() {
    let dir = TestDir::new("warm");
    let pgdata = dir.path().join("pgdata");
    let run = warm_up(&[], &document(&pgdata, &pg_bin_dir()));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let warmup = format!("{}.warmup", pgdata.display());
    assert_eq!(run.json["dir"], warmup.as_str());
    assert_eq!(run.json["shared_buffers_pages"], 65536);
    assert_eq!(run.json["neon_preloaded"], false);
    assert!(run.json["start_ms"].as_u64().unwrap() > 0, "{}", run.json);
    assert!(!Path::new(&warmup).exists());
    assert!(!pgdata.exists(), "PGDATA itself is not touched");
    assert!(processes_naming(&warmup).is_empty());
}

#[test]
fn a_warmup_directory_that_is_not_ours_is_refused_and_kept() {
    let dir = TestDir::new("warm");
    let pgdata = dir.path().join("pgdata");
    let foreign = dir.path().join("pgdata.warmup");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("precious"), b"someone's data").unwrap();
    let run = warm_up(&[], &document(&pgdata, &pg_bin_dir()));
    let error = run.failed_with(1, "refused");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("pgdata.warmup exists"), "{message}");
    assert_eq!(
        std::fs::read(foreign.join("precious")).unwrap(),
        b"someone's data"
    );
    // A symlink in its place is not ours either (and its target is not followed).
    std::fs::remove_dir_all(&foreign).unwrap();
    let target = dir.path().join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("compute-tools.warmup"), b"").unwrap();
    std::os::unix::fs::symlink(&target, &foreign).unwrap();
    warm_up(&[], &document(&pgdata, &pg_bin_dir())).failed_with(1, "refused");
    assert!(target.join("compute-tools.warmup").exists());
}

#[test]
fn a_leftover_of_ours_is_replaced() {
    let dir = TestDir::new("warm");
    let pgdata = dir.path().join("pgdata");
    let leftover = dir.path().join("pgdata.warmup");
    std::fs::create_dir(&leftover).unwrap();
    std::fs::write(leftover.join("compute-tools.warmup"), b"").unwrap();
    std::fs::write(leftover.join("half-made"), b"").unwrap();
    let run = warm_up(&[], &document(&pgdata, &pg_bin_dir()));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!leftover.exists());
}

/// A `postgres` that never says ready (a stand-in, beside a stand-in initdb): killed with its
/// group at the deadline, the directory removed, exit 1 naming the deadline.
#[test]
fn a_server_that_is_never_ready_is_killed_at_the_deadline() {
    let dir = TestDir::new("warm");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // A stand-in initdb (the real one may take longer than the deadline on a loaded machine):
    // the data directory with an empty configuration, as initdb leaves it.
    let initdb = bin.join("initdb");
    std::fs::write(
        &initdb,
        "#!/bin/sh\nmkdir -p \"$2\" && chmod 700 \"$2\" && : > \"$2/postgresql.conf\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&initdb, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The stand-in postgres and a child of its group sleep until killed.
    let stand_in = bin.join("postgres");
    let pids = dir.path().join("pids");
    std::fs::write(
        &stand_in,
        format!(
            "#!/bin/sh\necho $$ > {pids}\nsleep 600 &\necho $! >> {pids}\nwhile :; do sleep 1; done\n",
            pids = pids.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pgdata = dir.path().join("pgdata");
    let started = Instant::now();
    let run = warm_up(&["--step-timeout", "2s"], &document(&pgdata, &bin));
    let took = started.elapsed();
    let error = run.failed_with(1, "child");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("was not ready within 2 s"),
        "{}",
        run.json
    );
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert!(!dir.path().join("pgdata.warmup").exists());
    let pids: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|line| line.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{pids:?}");
    let alive = |pid: &i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!pids.iter().any(alive), "left behind: {pids:?}");
}
