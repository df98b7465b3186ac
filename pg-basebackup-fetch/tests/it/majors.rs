//! A primary of another major version than the compute's Postgres: refused at once, naming
//! both versions, before anything is copied (a data directory is readable only by the major
//! that wrote it). The same-major clones of every major are `upstream::`'s tests, run with
//! `PG_TEST_MAJOR` by `scripts/test-majors.sh`.

use std::time::Duration;

use compute_spec::exit_code;
use pg_test_support::{free_tcp_port, require_major, TestDir, TestPostgres};
use serde_json::json;

use crate::util;

/// Clones a `primary_major` primary with a `compute_major` compute in `mode`: refused within
/// seconds, naming both versions, PGDATA left without data.
fn refused_across_majors(primary_major: u32, compute_major: u32, mode: &str) {
    let test = format!("majors::refused_across_majors({primary_major}, {compute_major}, {mode})");
    let (Some(_), Some(compute_bin)) = (
        require_major(&test, primary_major),
        require_major(&test, compute_major),
    ) else {
        return;
    };
    let primary = TestPostgres::builder()
        .major(primary_major)
        .setting("wal_level", "replica")
        .setting("max_wal_senders", "4")
        .hba_line("local replication all trust")
        .start();
    primary.psql("CREATE TABLE cloned AS SELECT generate_series(1, 100000) AS v");
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    let connstr = format!(
        "host={} port={} user={}",
        primary.socket_dir().display(),
        primary.port(),
        primary.superuser()
    );
    let mut document = util::document(&pgdata, free_tcp_port(), |spec| {
        spec["upstream_connstring"] = json!(connstr);
        spec["mode"] = json!(mode);
    });
    document.pgbin = compute_bin.join("postgres");
    let (outcome, took) = util::run_stage_within(&document, &[], Duration::from_secs(60));
    let error = outcome.failed_with(exit_code::USAGE, "invalid_spec");
    let message = error["message"].as_str().unwrap();
    for version in [primary_major, compute_major] {
        assert!(
            message.contains(&format!("PostgreSQL {version}.")),
            "{version}: {message}"
        );
    }
    assert!(
        message.contains(&primary.socket_dir().display().to_string()),
        "{message}"
    );
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}: {}",
        outcome.stderr
    );
    // Nothing was copied: no cluster file in PGDATA, no attempt retried.
    for entry in ["PG_VERSION", "base", "global"] {
        assert!(!pgdata.join(entry).exists(), "{entry} was copied");
    }
    assert!(!outcome.stderr.contains("retrying"), "{}", outcome.stderr);
}

#[test]
fn a_primary_of_an_older_major_is_refused_before_any_copy() {
    refused_across_majors(15, 17, "Primary");
}

#[test]
fn a_replica_of_a_newer_major_is_refused_before_any_copy() {
    refused_across_majors(17, 15, "Replica");
}

#[test]
fn a_pg14_primary_is_refused_by_a_pg15_compute() {
    refused_across_majors(14, 15, "Primary");
}

/// A primary with a tablespace: refused naming it, whatever the major's stream looks like
/// (15+: a second `n` archive; 14: a second row in the tablespace list, sent first).
fn a_tablespace_is_refused_on(major: u32) {
    let test = format!("majors::a_tablespace_is_refused_on({major})");
    let Some(bin) = require_major(&test, major) else {
        return;
    };
    let primary = TestPostgres::builder()
        .major(major)
        .setting("wal_level", "replica")
        .setting("max_wal_senders", "4")
        .hba_line("local replication all trust")
        .start();
    let location = primary.dir().join("space");
    std::fs::create_dir(&location).unwrap();
    pg_test_support::chown_to_postgres(&location);
    primary.psql(&format!(
        "CREATE TABLESPACE elsewhere LOCATION '{}'",
        location.display()
    ));
    primary.psql("CREATE TABLE far (v int) TABLESPACE elsewhere; INSERT INTO far VALUES (1)");
    let dir = TestDir::new("bbf-");
    let pgdata = dir.path().join("pgdata");
    let connstr = format!(
        "host={} port={} user={}",
        primary.socket_dir().display(),
        primary.port(),
        primary.superuser()
    );
    let mut document = util::document(&pgdata, free_tcp_port(), |spec| {
        spec["upstream_connstring"] = json!(connstr);
    });
    document.pgbin = bin.join("postgres");
    let outcome = util::run_stage(&document, &[]);
    let error = outcome.failed_with(exit_code::RUNTIME, "server");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("tablespaces are not supported"),
        "{message}"
    );
    assert!(
        message.contains(&format!("PostgreSQL {major}.")),
        "{message}"
    );
    // Nothing of the tablespace's tree (PG_<major>_<catalog version>/…) landed in PGDATA.
    let stray = std::fs::read_dir(&pgdata)
        .map(|entries| {
            entries
                .flatten()
                .any(|entry| entry.file_name().to_string_lossy().starts_with("PG_"))
        })
        .unwrap_or(false);
    assert!(!stray, "a tablespace directory was unpacked into PGDATA");
}

#[test]
fn a_pg14_primary_with_a_tablespace_is_refused_before_its_archive() {
    a_tablespace_is_refused_on(14);
}

#[test]
fn a_primary_with_a_tablespace_is_refused() {
    a_tablespace_is_refused_on(pg_test_support::pg_major());
}
