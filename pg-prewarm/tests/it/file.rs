//! A cache offloaded from one vanilla Postgres to a file prewarms another; a prewarm under
//! way is cancelled by a signal.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pg_prewarm::{CachedFork, VanillaState, VANILLA_FORMAT};
use pg_test_support::probe::eventually;
use pg_test_support::{TestDir, TestPostgres};

use super::*;

const TABLE: &str = "create table accounts (id int, pad text); \
     insert into accounts select i, repeat('x', 100) from generate_series(1, 30000) i";

/// Buffers of `accounts` (main fork) in `server`'s cache, and its size in blocks.
fn cached(server: &TestPostgres) -> (i64, i64) {
    let row = server
        .client()
        .query_one(
            "SELECT (SELECT count(*) FROM pg_buffercache \
                     WHERE relfilenode = pg_relation_filenode('accounts') \
                       AND relforknumber = 0 \
                       AND reldatabase = (SELECT oid FROM pg_database \
                                          WHERE datname = current_database())), \
                    pg_relation_size('accounts') / 8192",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

fn filenode(server: &TestPostgres) -> u32 {
    server
        .client()
        .query_one("SELECT pg_relation_filenode('accounts')", &[])
        .unwrap()
        .get(0)
}

fn read_state(path: &Path) -> VanillaState {
    let json = zstd::decode_all(std::fs::read(path).unwrap().as_slice()).unwrap();
    serde_json::from_slice(&json).unwrap()
}

#[test]
fn an_offload_to_a_file_prewarms_another_server() {
    let dir = TestDir::new("pg-prewarm");
    let file = dir.path().join("cache.zst");
    let file_arg = file.to_string_lossy().into_owned();
    let source = TestPostgres::start();
    source.psql(TABLE);
    let mut clone = TestPostgres::start();
    // The same schema made the same way: the relation files have the same numbers, as in a
    // clone.
    clone.psql(&format!("{TABLE}; create extension pg_buffercache"));
    assert_eq!(filenode(&source), filenode(&clone));

    let run = pg_prewarm(&["offload", "--file", &file_arg], &document(&source));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json["status"], "completed", "{}", run.json);
    for field in [
        "state_query_time_ms",
        "compress_time_ms",
        "state_upload_time_ms",
    ] {
        assert!(run.json[field].is_u64(), "{field}: {}", run.json);
    }
    let state = read_state(&file);
    assert_eq!(state.format, VANILLA_FORMAT);
    let (in_cache, blocks) = cached(&source);
    assert!(blocks > 100, "{blocks}");
    assert_eq!(in_cache, blocks, "the inserted table is cached");
    let fork = state
        .relations
        .iter()
        .find(|fork| {
            fork.filenode == filenode(&source) && fork.fork == 0 && fork.database == "postgres"
        })
        .unwrap();
    assert_eq!(fork.ranges, vec![(0, blocks - 1)], "one coalesced range");
    // Nothing but the state is left beside it (the temporary file was renamed).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let restarted = Restarted::new(&mut clone);
    let clone = restarted.0;
    assert_eq!(cached(clone).0, 0, "a restart empties the cache");
    let run = pg_prewarm(&["prewarm", "--file", &file_arg], &document(clone));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json["status"], "completed", "{}", run.json);
    let (total, prewarmed, skipped) = (
        run.json["total"].as_i64().unwrap(),
        run.json["prewarmed"].as_i64().unwrap(),
        run.json["skipped"].as_i64().unwrap(),
    );
    assert_eq!(total, state.blocks());
    assert_eq!(total, prewarmed + skipped);
    assert!(prewarmed >= blocks, "{prewarmed} < {blocks}");
    assert_eq!(cached(clone), (blocks, blocks), "prewarmed");
}

#[test]
fn a_failed_write_leaves_the_target_as_it_was() {
    let server = TestPostgres::start();
    let dir = TestDir::new("pg-prewarm");
    // A directory where the file should go: the rename over it fails.
    let target = dir.path().join("cache.zst");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("kept"), b"x").unwrap();
    let run = pg_prewarm(
        &["offload", "--file", &target.to_string_lossy()],
        &document(&server),
    );
    let error = failed(&run, 1, "io");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("writing the state file {}: ", target.display())),
        "{message}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec!["cache.zst"],
        "the temporary file was not removed"
    );
    assert_eq!(std::fs::read(target.join("kept")).unwrap(), b"x");
    // A directory that is not there.
    let missing = dir.path().join("no/such/dir/cache.zst");
    let run = pg_prewarm(
        &["offload", "--file", &missing.to_string_lossy()],
        &document(&server),
    );
    let error = failed(&run, 1, "io");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains(&missing.display().to_string()),
        "{error}"
    );
}

/// Kills the child on drop (a failing test leaves no pg-prewarm behind).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sessions of pg-prewarm (`compute_ctl:lfc`) waiting for a lock.
fn waiting(server: &TestPostgres) -> i64 {
    server
        .client()
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = 'compute_ctl:lfc' AND wait_event_type = 'Lock'",
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn sigint_cancels_a_prewarm_under_way() {
    let dir = TestDir::new("pg-prewarm");
    let file = dir.path().join("cache.zst");
    let server = TestPostgres::start();
    server.psql(TABLE);
    let run = pg_prewarm(
        &["offload", "--file", &file.to_string_lossy()],
        &document(&server),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The table locked: the prewarm waits on it until it is cancelled.
    let mut locker = server.client();
    locker
        .batch_execute("BEGIN; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let mut child = Command::new(PG_PREWARM)
        .args(["prewarm", "--file", &file.to_string_lossy()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(document(&server).as_bytes()).unwrap();
    }
    let mut running = Running(child);
    eventually(
        Duration::from_secs(30),
        "the prewarm waiting on the lock",
        || waiting(&server) == 1,
    );
    let pid = nix::unistd::Pid::from_raw(i32::try_from(running.0.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let exited =
        pg_test_support::wait_for(Duration::from_secs(30), || running.0.try_wait().unwrap())
            .expect("pg-prewarm still runs 30 s after SIGINT");
    let mut stdout = String::new();
    running
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(exited.code(), Some(1), "{stdout}");
    assert_eq!(stdout.trim(), r#"{"status":"cancelled"}"#);
    // The server was told: its session does not wait for the lock any more (still held).
    eventually(Duration::from_secs(30), "the cancelled query gone", || {
        waiting(&server) == 0
    });
    locker.batch_execute("ROLLBACK").unwrap();
}

#[test]
fn a_large_state_is_loaded_as_it_is_read_not_held() {
    // One million single-block ranges of a relation that does not exist (18 MB of JSON):
    // all counted, all skipped, loaded in batches while the JSON is read.
    let ranges: Vec<(i64, i64)> = (0..1_000_000)
        .map(|i| (1_000_000 + 2 * i, 1_000_000 + 2 * i))
        .collect();
    let state = VanillaState {
        format: VANILLA_FORMAT.into(),
        relations: vec![CachedFork {
            database: "postgres".into(),
            tablespace: 1663,
            filenode: 4_000_000_000,
            fork: 0,
            ranges,
        }],
    };
    let json = serde_json::to_vec(&state).unwrap();
    drop(state);
    let dir = TestDir::new("pg-prewarm");
    let file = dir.path().join("large.zst");
    std::fs::write(&file, zstd::encode_all(json.as_slice(), 1).unwrap()).unwrap();
    let server = TestPostgres::start();
    let (run, took, peak_kib) = pg_test_support::run_stage_measured(
        PG_PREWARM,
        &["prewarm", "--file", &file.to_string_lossy()],
        &document(&server),
        Duration::from_secs(120),
    );
    eprintln!(
        "{} bytes of JSON: peak RSS {peak_kib} KiB, {took:?}",
        json.len()
    );
    let run = run.expect_json();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json["status"], "completed", "{}", run.json);
    assert_eq!(run.json["total"], 1_000_000);
    assert_eq!(run.json["skipped"], 1_000_000);
    // The JSON itself (18 MB) and one batch; holding the list as ranges and then as
    // statement parameters took several times the JSON.
    assert!(peak_kib < 48 << 10, "peak RSS {peak_kib} KiB");
}
