//! Shared helpers for the real-Postgres tests: a document pointing at a test server.
#![allow(dead_code)]

use compute_spec::begin::{start_document, DocumentParams};
use compute_spec::load::parse_bare;
use compute_spec::ComputeDocument;
use pg_test_support::TestPostgres;

/// A fixture file's text.
pub fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../../shared/fixtures/neon/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A document for `spec_json` whose instance is `pg` (validation skipped).
pub fn document(pg: &TestPostgres, spec_json: &str) -> ComputeDocument {
    let loaded = parse_bare(spec_json, "test").unwrap();
    let params = DocumentParams {
        pgdata: pg.data_dir().to_path_buf(),
        pgbin: pg.bin_dir().join("postgres"),
        connstr: "postgresql://cloud_admin@localhost/postgres".to_string(),
        compute_id: None,
        privileged_role_name: "neon_superuser".to_string(),
        socket_dir: Some(pg.socket_dir().to_path_buf()),
    };
    let empty = parse_bare(
        r#"{"format_version":1.0,"cluster":{"roles":[],"databases":[]}}"#,
        "t",
    )
    .unwrap();
    let mut doc = start_document("test", &params, empty, "test", 0).unwrap();
    doc.spec = loaded.spec;
    doc.instance.socket_dir = pg.socket_dir().to_path_buf();
    doc.instance.port = pg.port();
    doc
}

/// The names returned by a one-column text query.
pub fn names(pg: &TestPostgres, sql: &str) -> Vec<String> {
    pg.client()
        .query(sql, &[])
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect()
}
