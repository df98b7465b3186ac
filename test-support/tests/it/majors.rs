//! Every supported PostgreSQL major starts from the kit, as the run's server or on demand.

use pg_test_support::{majors, require_major, TestPostgres};

/// The majors the workspace supports (Debian's 15 and the cache's others).
const SUPPORTED: [u32; 5] = [14, 15, 16, 17, 18];

#[test]
fn every_supported_major_starts_and_answers_with_its_version() {
    for major in SUPPORTED {
        let test =
            format!("majors::every_supported_major_starts_and_answers_with_its_version ({major})");
        let Some(dir) = require_major(&test, major) else {
            continue;
        };
        let pg = TestPostgres::builder().major(major).start();
        assert_eq!(pg.bin_dir(), dir);
        assert_eq!(pg.major(), major);
        let number: u32 = pg.psql("SHOW server_version_num").parse().unwrap();
        assert_eq!(number / 10_000, major, "{number}");
        // The client library and psql (Debian's where the build has none) both talk to it.
        let version: String = pg
            .client()
            .query_one("SELECT version()", &[])
            .unwrap()
            .get(0);
        assert!(
            version.starts_with(&format!("PostgreSQL {major}.")),
            "{version}"
        );
    }
}

#[test]
fn the_run_s_major_is_the_one_pg_test_major_names() {
    let server = TestPostgres::start();
    assert_eq!(server.major(), pg_test_support::pg_major());
    if let Some(asked) = majors::test_major() {
        assert_eq!(server.major(), asked);
    }
}

#[test]
fn a_standby_of_every_supported_major_streams_from_its_primary() {
    for major in SUPPORTED {
        let test = format!("majors::a_standby_of_every_supported_major_streams ({major})");
        if require_major(&test, major).is_none() {
            continue;
        }
        let primary = TestPostgres::builder().major(major).start();
        primary.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS v");
        let standby = TestPostgres::builder().standby_of(&primary).start();
        assert_eq!(standby.major(), major);
        assert_eq!(standby.psql("SELECT pg_is_in_recovery()"), "t");
        assert_eq!(standby.psql("SELECT count(*) FROM t"), "1000");
        primary.psql("INSERT INTO t VALUES (1001)");
        assert!(
            pg_test_support::wait_until(std::time::Duration::from_secs(15), || {
                standby.psql("SELECT count(*) FROM t") == "1001"
            }),
            "the PostgreSQL {major} standby did not stream the new row"
        );
        // The backup's temporary slot is gone with its session.
        assert_eq!(
            primary.psql("SELECT count(*) FROM pg_replication_slots WHERE temporary"),
            "0"
        );
    }
}
