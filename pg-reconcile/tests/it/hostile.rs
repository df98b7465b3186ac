//! Hostile names for roles and databases: created, renamed and dropped exactly, with deltas
//! replayed twice.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::common;
use crate::common::{apply_ok, assert_noop, sorted, spec, user_databases, user_roles};
use pg_test_support::TestPostgres;
use serde_json::{json, Value};

/// Upstream's `test_compute_catalog.py` names and then some.
fn hostile_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "with space",
        " leading space",
        "trailing space ",
        "\tleading tab",
        "trailing tab\t",
        "%20",
        "'; SELECT pg_sleep(1000);",
        "\";with ';injections $$ $x$ $ %I !/\\&#@",
        "#hash &amp=1",
        "$x$",
        "$$",
        "x$",
        "$x",
        "xx$",
        "$xx",
        "$xx$",
        "role$",
        "role$$",
        "role$x$",
        "x",
        "xx",
        "🐘 emoji 🎉",
        "\"wrapped in double quotes\"",
        "'wrapped in single quotes'",
        "back\\slash\\",
        "\\\\",
        "MixedCase",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.push("n".repeat(63));
    names
}

/// A different name of at most 63 bytes.
fn renamed(name: &str) -> String {
    if name.len() >= 60 {
        format!("{}r", &name[..62])
    } else {
        format!("{name} (renamed)")
    }
}

fn roles(names: &[String]) -> Value {
    let passwords = [
        json!(null),
        json!("6b1d16b78004bbd51fa06af9eda75972"),
        json!(common::SCRAM),
    ];
    names
        .iter()
        .enumerate()
        .map(|(i, name)| json!({"name": name, "encrypted_password": passwords[i % 3]}))
        .collect()
}

fn databases(names: &[String]) -> Value {
    names
        .iter()
        .map(|name| json!({"name": name, "owner": name}))
        .collect()
}

fn deltas(action: &str, names: &[String]) -> Vec<Value> {
    names
        .iter()
        .map(|name| match action {
            "rename_role" | "rename_db" => {
                json!({"action": action, "name": name, "new_name": renamed(name)})
            }
            _ => json!({"action": action, "name": name}),
        })
        .collect()
}

fn as_strs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

#[test]
fn hostile_names_are_created_renamed_and_dropped_exactly() {
    let pg = TestPostgres::start();
    let names = hostile_names();
    let created = spec(roles(&names), databases(&names), json!([]));
    apply_ok(&pg, &created);
    assert_eq!(user_roles(&pg), sorted(&as_strs(&names)));
    assert_eq!(user_databases(&pg), sorted(&as_strs(&names)));
    assert_noop(&pg, &created);

    // Rename every role and database; the spec now lists the new names.
    let new_names: Vec<String> = names.iter().map(|n| renamed(n)).collect();
    let mut rename = deltas("rename_role", &names);
    rename.extend(deltas("rename_db", &names));
    let renamed_spec = spec(
        roles(&new_names),
        databases(&new_names),
        Value::Array(rename),
    );
    let section = apply_ok(&pg, &renamed_spec);
    let renames = section
        .plan
        .iter()
        .filter(|p| p.sql.contains(" RENAME TO "))
        .count();
    assert_eq!(renames, 2 * names.len());
    assert_eq!(user_roles(&pg), sorted(&as_strs(&new_names)));
    assert_eq!(user_databases(&pg), sorted(&as_strs(&new_names)));
    // Owners follow the renamed roles.
    let owners = common::column(
        &pg,
        "postgres",
        "SELECT count(*)::text FROM pg_database WHERE datname::text = pg_get_userbyid(datdba)::text",
    );
    assert_eq!(owners, [names.len().to_string()]);
    assert_noop(&pg, &renamed_spec);
    assert_noop(&pg, &renamed_spec);

    // Drop them all; replaying the deltas does nothing.
    let mut drop = deltas("delete_db", &new_names);
    drop.extend(deltas("delete_role", &new_names));
    let dropped = spec(json!([]), json!([]), Value::Array(drop));
    apply_ok(&pg, &dropped);
    assert!(user_roles(&pg).is_empty(), "{:?}", user_roles(&pg));
    assert!(user_databases(&pg).is_empty(), "{:?}", user_databases(&pg));
    assert_noop(&pg, &dropped);
    assert_noop(&pg, &dropped);
}
