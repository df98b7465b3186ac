//! The committed JSON Schemas under `docs/schema/` match the types. Regenerate with
//! `UPDATE_SCHEMAS=1 cargo test -p compute-spec --test it schema::`.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::path::PathBuf;

fn check(file: &str, generated: String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/schema")
        .join(file);
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: run UPDATE_SCHEMAS=1 cargo test -p compute-spec --test it schema::",
        path.display()
    );
}

#[test]
fn document_schema_is_current() {
    check(
        "compute-document.schema.json",
        compute_spec::schema::document_schema(),
    );
}

#[test]
fn error_schema_is_current() {
    check(
        "error-envelope.schema.json",
        compute_spec::schema::error_schema(),
    );
}

#[test]
fn supervise_event_schema_is_current() {
    check(
        "supervise-event.schema.json",
        compute_spec::schema::supervise_event_schema(),
    );
}
