//! The wire client against a real Postgres: a physical replication connection over the Unix
//! socket, `IDENTIFY_SYSTEM`, and a server error on that connection.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::time::Duration;

use compute_spec::Lsn;
use pg_test_support::TestPostgres;
use pg_wire::{Connection, WireError};

#[test]
fn identify_system_over_a_replication_connection() {
    let postgres = TestPostgres::builder()
        .setting("wal_level", "replica")
        .setting("max_wal_senders", "5")
        .hba_line("local replication all trust")
        .start();
    let connstr = format!(
        "host={} port={} user={} application_name=wire-test",
        postgres.socket_dir().display(),
        postgres.port(),
        postgres.superuser()
    );
    let config: postgres::Config = connstr.parse().unwrap();
    let mut connection =
        Connection::from_config(&config, &[("replication", "true")], Duration::from_secs(10))
            .unwrap();
    assert!(connection
        .endpoint()
        .ends_with(&format!(".s.PGSQL.{}", postgres.port())));
    let rows = connection.simple_query("IDENTIFY_SYSTEM").unwrap();
    let row = &rows[0];
    let xlogpos: Lsn = row.get("xlogpos").unwrap().parse().unwrap();
    assert!(xlogpos.0 > 0, "{xlogpos}");
    assert_eq!(row.get("timeline"), Some("1"));
    assert!(row.get("systemid").unwrap().parse::<u64>().is_ok());
    let walsenders = postgres
        .psql("SELECT count(*) FROM pg_stat_replication WHERE application_name = 'wire-test'");
    assert_eq!(walsenders.trim(), "1");
    // A physical walsender refuses SQL: the error comes back and the connection stays usable.
    let error = connection.simple_query("SELECT 1").unwrap_err();
    assert!(
        matches!(&error, WireError::Server { code, .. } if code == "0A000"),
        "{error:?}"
    );
    let rows = connection.simple_query("IDENTIFY_SYSTEM").unwrap();
    assert_eq!(rows.len(), 1);
    connection.close();
}
