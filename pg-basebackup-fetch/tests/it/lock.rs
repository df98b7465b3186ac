//! Data safety of the stage run by hand: one owner per PGDATA (the lock beside it), a live
//! cluster never wiped, and a build killed or starved at any moment never bricks the next
//! start.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::util;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use compute_spec::document::PGDATA_MARKER;
use compute_spec::exit_code;
use pg_test_support::crash::{count_entries, kill_tree, SmallTmpfs};
use pg_test_support::{free_tcp_port, wait_for, TestDir, TestPostgres};

/// A running Postgres (not ours, no lock held) on its data directory: the stage refuses to
/// wipe it, naming the postmaster, and the data is intact.
#[test]
fn a_live_cluster_is_never_wiped() {
    let server = TestPostgres::start();
    server.psql("CREATE TABLE precious (v int); INSERT INTO precious VALUES (42);");
    let document = util::document(server.data_dir(), free_tcp_port(), |_| {});
    let outcome = util::run_stage(&document, &["--no-template-cache"]);
    let error = outcome.failed_with(exit_code::RUNTIME, "refused");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("pid {}", server.pid())),
        "{message}"
    );
    assert!(message.contains("nothing was deleted"), "{message}");
    assert_eq!(server.psql("SELECT v FROM precious"), "42");
}

/// The lock is held by another process (here `flock(1)`, which records nothing): the stage
/// waits `--pgdata-lock-timeout`, fails naming the processes that hold it, and touches
/// nothing; once it is released the stage runs.
#[test]
fn a_held_lock_is_waited_for_then_named_and_nothing_is_touched() {
    let dir = TestDir::new("bbf-lock-");
    let pgdata = dir.path().join("pgdata");
    std::fs::create_dir(&pgdata).unwrap();
    std::fs::write(pgdata.join(PGDATA_MARKER), "partial").unwrap();
    let lock = dir.path().join("pgdata.compute-tools.lock");
    // `-o`: the lock stays with flock itself, not with the `sleep` it runs.
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(&lock)
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    let holder_pid = holder.id();
    let held = wait_for(Duration::from_secs(10), || {
        let busy = Command::new("flock")
            .args(["-n"])
            .arg(&lock)
            .arg("true")
            .status()
            .unwrap();
        (!busy.success()).then_some(())
    });
    assert!(held.is_some(), "flock never took the lock");
    let document = util::document(&pgdata, free_tcp_port(), |_| {});
    let started = Instant::now();
    let outcome = util::run_stage(
        &document,
        &["--no-template-cache", "--pgdata-lock-timeout", "1s"],
    );
    let took = started.elapsed();
    let error = outcome.failed_with(exit_code::RUNTIME, "refused");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("is in use"), "{message}");
    assert!(
        message.contains(&format!("{holder_pid} (flock)")),
        "{message}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(
        std::fs::read(pgdata.join(PGDATA_MARKER)).unwrap(),
        b"partial"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    let outcome = util::run_stage(&document, &["--no-template-cache"]);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
}

/// Starts the stage on `document` and SIGKILLs it with all its children (as a dying
/// container would) once PGDATA holds at least `entries` files and directories; returns the
/// count seen at the kill (None: the stage finished first).
fn kill_when(
    document: &compute_spec::ComputeDocument,
    args: &[&str],
    entries: usize,
) -> Option<usize> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pg-basebackup-fetch"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let text = serde_json::to_string(document).unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let count = count_entries(&document.pgdata);
        if count >= entries {
            break Some(count);
        }
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            break None;
        }
    };
    if seen.is_some() {
        kill_tree(child.id() as i32);
    }
    child.wait().unwrap();
    seen
}

/// After a crash: the next run of the stage succeeds and Postgres starts on the result.
fn next_start_runs(document: &compute_spec::ComputeDocument, args: &[&str], what: &str) {
    let outcome = util::run_stage(document, args);
    assert_eq!(outcome.code, 0, "{what}: {}", outcome.stderr);
    let postgres = util::RunningPostgres::start(document);
    let answer: i32 = postgres.client().query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(answer, 1, "{what}");
}

fn killed_at_moments(args: &[&str], prepare: impl Fn(&compute_spec::ComputeDocument)) {
    let dir = TestDir::new("bbf-kill-");
    let pgdata = dir.path().join("pgdata");
    let document = util::document(&pgdata, free_tcp_port(), |_| {});
    let mut killed = 0;
    for entries in [1, 60, 400, 900] {
        // Each run starts from nothing (the previous run's PGDATA would be counted at once).
        let _ = std::fs::remove_dir_all(&pgdata);
        prepare(&document);
        let what = format!("{args:?}, killed at {entries} entries");
        match kill_when(&document, args, entries) {
            Some(seen) => {
                killed += 1;
                eprintln!("{what}: killed with {seen} entries in PGDATA");
            }
            None => eprintln!("{what}: the stage finished first"),
        }
        next_start_runs(&document, args, &what);
    }
    assert!(
        killed >= 2,
        "{args:?}: fewer than two runs were killed mid-build"
    );
}

/// `initdb` (no template cache) killed at several moments.
#[test]
fn killed_during_initdb_the_next_start_runs() {
    killed_at_moments(&["--no-template-cache"], |_| {});
}

/// The template copy (a cache hit) killed at several moments.
#[test]
fn killed_during_the_template_copy_the_next_start_runs() {
    let cache = TestDir::new("bbf-kill-cache-");
    let cache_dir = cache.path().to_str().unwrap().to_string();
    let args = ["--template-cache-dir", cache_dir.as_str()];
    // Fill the cache once, on a PGDATA of its own.
    let warm = util::document(&cache.path().join("warm"), free_tcp_port(), |_| {});
    assert_eq!(util::run_stage(&warm, &args).code, 0);
    killed_at_moments(&args, |_| {});
}

/// A cache miss (the template built, then copied) killed at several moments.
#[test]
fn killed_during_a_template_build_the_next_start_runs() {
    let cache = TestDir::new("bbf-kill-miss-");
    let cache_dir = cache.path().join("cache");
    let cache_arg = cache_dir.to_str().unwrap().to_string();
    let args = ["--template-cache-dir", cache_arg.as_str()];
    killed_at_moments(&args, |_| {
        let _ = std::fs::remove_dir_all(&cache_dir);
    });
}

/// PGDATA on a full file system: the start fails (no space), the file system is grown, and
/// the next start runs — with the cache (a half-made copy) and without (a half-made initdb).
fn full_disk_then_grown(args: &[&str]) {
    let dir = TestDir::new("bbf-full-");
    let Some(fs) = SmallTmpfs::mount(&dir.path().join("fs"), "12m") else {
        return;
    };
    let pgdata = fs.path().join("pgdata");
    let document = util::document(&pgdata, free_tcp_port(), |_| {});
    let outcome = util::run_stage(&document, args);
    assert_ne!(
        outcome.code, 0,
        "the stage fitted in 12 MB: {}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("No space left on device"),
        "{}",
        outcome.stderr
    );
    fs.resize("256m");
    next_start_runs(&document, args, &format!("{args:?} after the disk grew"));
}

/// With the template cache (a half-made copy, then the fallback `initdb`), and without (a
/// half-made `initdb`).
#[test]
fn a_full_disk_then_grown_the_next_start_runs() {
    let cache = util::test_cache_dir();
    let warm_dir = TestDir::new("bbf-full-warm-");
    let warm = util::document(&warm_dir.path().join("pgdata"), free_tcp_port(), |_| {});
    assert_eq!(util::run_stage(&warm, &[]).code, 0);
    full_disk_then_grown(&["--template-cache-dir", &cache]);
    full_disk_then_grown(&["--no-template-cache"]);
}

/// The marker is in PGDATA from the first instant of a build, whatever is killed when.
#[test]
fn the_marker_comes_first() {
    let dir = TestDir::new("bbf-first-");
    let pgdata = dir.path().join("pgdata");
    let document = util::document(&pgdata, free_tcp_port(), |_| {});
    let seen = kill_when(&document, &["--no-template-cache"], 1);
    assert!(seen.is_some());
    let names: Vec<String> = std::fs::read_dir(&pgdata)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|name| name == PGDATA_MARKER),
        "no marker in {names:?}"
    );
    assert!(Path::new(&pgdata).is_dir());
}
