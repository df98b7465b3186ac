//! The safe wipe through the binary, on real clusters made by `initdb`: a directory is wiped
//! only when nothing in it is foreign and a real cluster or our marker vouches for it; every
//! refusal names the foreign entries and deletes nothing.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::util;

use std::path::{Path, PathBuf};
use std::process::Command;

use compute_spec::document::PGDATA_MARKER;
use compute_spec::exit_code;
use pg_test_support::{free_tcp_port, TestDir};

/// Every file and directory under `dir`, with the files' contents, sorted.
fn tree(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
            if kind.is_dir() {
                pending.push(path.clone());
                found.push((path, None));
            } else {
                let contents = kind.is_file().then(|| std::fs::read(&path).unwrap());
                found.push((path, contents));
            }
        }
    }
    found.sort();
    found
}

/// A real cluster made by `initdb` at `pgdata`.
fn initdb(pgdata: &Path) {
    let mut command = Command::new(pg_test_support::pg_bin("initdb"));
    command
        .arg("-D")
        .arg(pgdata)
        .args(["-U", util::ADMIN, "-A", "trust", "--no-sync"]);
    pg_test_support::as_postgres_user(&mut command);
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs the stage (initdb source) on `pgdata` and asserts it refused, naming `expected`
/// in its message, and changed nothing.
fn assert_refused(pgdata: &Path, expected: &str) {
    let before = tree(pgdata);
    let document = util::document(pgdata, free_tcp_port(), |_| {});
    let outcome = util::run_stage(&document, &[]);
    let error = outcome.failed_with(exit_code::RUNTIME, "refused");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(&pgdata.display().to_string()), "{message}");
    assert!(message.contains(expected), "{message}");
    assert!(message.contains("nothing was deleted"), "{message}");
    assert_eq!(tree(pgdata), before, "the refused directory changed");
}

fn assert_wiped_and_rebuilt(pgdata: &Path, gone: &str) {
    assert!(pgdata.join(gone).exists());
    let document = util::document(pgdata, free_tcp_port(), |_| {});
    let outcome = util::run_stage(&document, &[]);
    assert_eq!(outcome.code, i32::from(exit_code::OK), "{}", outcome.stderr);
    assert!(!pgdata.join(gone).exists(), "{gone} survived the wipe");
    assert!(pgdata.join(PGDATA_MARKER).is_file());
    assert!(pgdata.join("global/pg_control").is_file());
    // The old tree was moved aside and removed before the stage ended; the lock file stays.
    let mut siblings: Vec<_> = std::fs::read_dir(pgdata.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    siblings.sort();
    assert_eq!(siblings, ["pgdata", "pgdata.compute-tools.lock"]);
}

#[test]
fn a_junk_pg_version_next_to_a_user_file_is_refused() {
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    std::fs::create_dir(&pgdata).unwrap();
    std::fs::write(pgdata.join("PG_VERSION"), "not a version").unwrap();
    std::fs::write(pgdata.join("notes.txt"), "mine").unwrap();
    assert_refused(&pgdata, "\"notes.txt\"");
}

#[test]
fn a_junk_pg_version_alone_is_not_a_cluster() {
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    std::fs::create_dir_all(pgdata.join("base")).unwrap();
    std::fs::write(pgdata.join("PG_VERSION"), "not a version").unwrap();
    assert_refused(&pgdata, "not a major version");
}

#[test]
fn our_marker_next_to_a_user_file_is_refused() {
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    std::fs::create_dir_all(pgdata.join("photos")).unwrap();
    std::fs::write(pgdata.join("photos/cat.jpg"), "meow").unwrap();
    std::fs::write(pgdata.join(PGDATA_MARKER), "").unwrap();
    assert_refused(&pgdata, "\"photos\"");
}

#[test]
fn a_real_cluster_next_to_a_user_file_is_refused() {
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    initdb(&pgdata);
    std::fs::write(pgdata.join("dump.sql"), "COPY precious FROM stdin;").unwrap();
    assert_refused(&pgdata, "\"dump.sql\"");
}

#[test]
fn a_real_cluster_is_wiped() {
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    initdb(&pgdata);
    assert!(!pgdata.join(PGDATA_MARKER).exists());
    std::fs::write(pgdata.join("postmaster.opts"), "postgres").unwrap();
    assert_wiped_and_rebuilt(&pgdata, "postmaster.opts");
}

#[test]
fn a_cluster_with_a_crashed_backend_s_core_dumps_is_wiped() {
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    initdb(&pgdata);
    std::fs::write(pgdata.join("core"), [0u8; 64]).unwrap();
    std::fs::write(pgdata.join("core.4242"), [0u8; 64]).unwrap();
    assert_wiped_and_rebuilt(&pgdata, "core.4242");
    // A name that only starts like one is still foreign.
    std::fs::write(pgdata.join("core.dump.sql"), "COPY precious FROM stdin;").unwrap();
    assert_refused(&pgdata, "\"core.dump.sql\"");
}

#[test]
fn a_half_built_tree_of_ours_is_wiped() {
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    std::fs::create_dir_all(pgdata.join("base/5")).unwrap();
    std::fs::create_dir_all(pgdata.join("pg_wal")).unwrap();
    std::fs::write(pgdata.join("base/5/999999"), [0u8; 100]).unwrap();
    std::fs::write(pgdata.join(PGDATA_MARKER), "compute-tools: partial\n").unwrap();
    assert_wiped_and_rebuilt(&pgdata, "base/5/999999");
}
