//! The catalog snapshot: what exists in the running instance, as plain data.
//!
//! [`take`] reads everything the planner needs in one round trip (one multi-statement simple
//! query on the system database); the planner only ever sees the [`Snapshot`]. Every catalog
//! query is schema-qualified and compares with `OPERATOR(pg_catalog.=)`, so objects a user
//! puts on the search path cannot change its meaning.

use std::collections::{BTreeMap, BTreeSet};

use compute_spec::quote::Literal;
use postgres::{Client, SimpleQueryMessage};

/// A role that exists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExistingRole {
    /// `pg_authid.rolpassword` (`md5…`, `SCRAM-SHA-256$…`, or none).
    pub password: Option<String>,
}

/// A database that exists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExistingDatabase {
    /// Its owner's name.
    pub owner: String,
    /// `datallowconn`.
    pub allow_conn: bool,
    /// `datconnlimit = -2`: left behind by an interrupted `DROP DATABASE`.
    pub invalid: bool,
    /// `datistemplate`.
    pub is_template: bool,
}

/// Where a role owns objects or holds privileges (from `pg_shdepend`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleDependencies {
    /// Databases holding objects the role owns or is granted something on.
    pub databases: BTreeSet<String>,
    /// True when it owns or is granted a shared object (a database, a tablespace).
    pub shared: bool,
}

/// An extension the server can install.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AvailableExtension {
    /// The version `CREATE EXTENSION` installs.
    pub default_version: String,
    /// The version installed in the system database, if any.
    pub installed_version: Option<String>,
}

/// What exists in the instance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Roles by name.
    pub roles: BTreeMap<String, ExistingRole>,
    /// Databases by name.
    pub databases: BTreeMap<String, ExistingDatabase>,
    /// Dependencies of the roles that `delete_role` deltas name (only those are read).
    pub role_dependencies: BTreeMap<String, RoleDependencies>,
    /// Logical-replication subscriptions: (database, subscription name).
    pub subscriptions: Vec<(String, String)>,
    /// `neon` and `pg_stat_statements`, when available.
    pub extensions: BTreeMap<String, AvailableExtension>,
    /// Whether schema `neon` exists in the system database.
    pub neon_schema: bool,
    /// The running server's `shared_preload_libraries`, split.
    pub preloaded: Vec<String>,
    /// The running server's `max_connections`.
    pub max_connections: Option<u32>,
    /// Settings in the configuration files that need a restart to apply.
    pub pending_restart: Vec<String>,
    /// Settings in the configuration files the server rejects (`name: error`).
    pub conf_errors: Vec<String>,
    /// When the server last loaded its configuration (seconds since the epoch).
    pub conf_loaded_at: Option<f64>,
}

const ROLES: &str = "SELECT rolname, rolpassword FROM pg_catalog.pg_authid";
const DATABASES: &str = "SELECT d.datname, r.rolname, d.datallowconn, \
     d.datconnlimit OPERATOR(pg_catalog.=) -2, d.datistemplate \
     FROM pg_catalog.pg_database d LEFT JOIN pg_catalog.pg_authid r \
     ON r.oid OPERATOR(pg_catalog.=) d.datdba";
const SUBSCRIPTIONS: &str = "SELECT d.datname, s.subname FROM pg_catalog.pg_subscription s \
     JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.subdbid";
const EXTENSIONS: &str = "SELECT name, default_version, installed_version \
     FROM pg_catalog.pg_available_extensions \
     WHERE name OPERATOR(pg_catalog.=) ANY (ARRAY['neon', 'pg_stat_statements']::pg_catalog.text[])";
const SERVER: &str = "SELECT pg_catalog.current_setting('shared_preload_libraries'), \
     pg_catalog.current_setting('max_connections'), \
     EXISTS (SELECT FROM pg_catalog.pg_namespace \
             WHERE nspname OPERATOR(pg_catalog.=) 'neon'), \
     pg_catalog.date_part('epoch', pg_catalog.pg_conf_load_time())";
const FILE_SETTINGS: &str = "SELECT DISTINCT coalesce(name, sourcefile), error \
     FROM pg_catalog.pg_file_settings WHERE error IS NOT NULL ORDER BY 1, 2";
/// `pg_file_settings.error` of a setting that only a restart applies.
const NEEDS_RESTART: &str = "setting could not be applied";

/// The dependency query for `roles` (none when the list is empty).
fn dependencies_query(roles: &[&str]) -> Option<String> {
    if roles.is_empty() {
        return None;
    }
    let list: Vec<String> = roles.iter().map(|role| Literal(role).to_string()).collect();
    Some(format!(
        "SELECT DISTINCT a.rolname, d.datname FROM pg_catalog.pg_shdepend s \
         JOIN pg_catalog.pg_authid a ON a.oid OPERATOR(pg_catalog.=) s.refobjid \
         LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.dbid \
         WHERE s.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass \
         AND a.rolname OPERATOR(pg_catalog.=) ANY (ARRAY[{}]::pg_catalog.name[])",
        list.join(", ")
    ))
}

type Rows = Vec<Vec<Option<String>>>;

/// Reads the snapshot through `client` (connected to the system database), reading the
/// dependencies of `deleted_roles`.
pub fn take(client: &mut Client, deleted_roles: &[&str]) -> Result<Snapshot, postgres::Error> {
    let mut queries = vec![
        ROLES.to_string(),
        DATABASES.to_string(),
        SUBSCRIPTIONS.to_string(),
        EXTENSIONS.to_string(),
        SERVER.to_string(),
        FILE_SETTINGS.to_string(),
    ];
    queries.extend(dependencies_query(deleted_roles));
    let sets = result_sets(client.simple_query(&queries.join(";\n"))?);
    Ok(from_rows(&sets))
}

/// Splits a simple-query answer into one row list per statement.
fn result_sets(messages: Vec<SimpleQueryMessage>) -> Vec<Rows> {
    let mut sets = Vec::new();
    let mut current: Rows = Vec::new();
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => {
                let values = (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect();
                current.push(values);
            }
            SimpleQueryMessage::CommandComplete(_) => sets.push(std::mem::take(&mut current)),
            _ => {}
        }
    }
    sets
}

fn text(row: &[Option<String>], i: usize) -> Option<String> {
    row.get(i).cloned().flatten()
}

fn flag(row: &[Option<String>], i: usize) -> bool {
    text(row, i).as_deref() == Some("t")
}

/// Builds the snapshot from the result sets, in the order [`take`] sends the queries.
fn from_rows(sets: &[Rows]) -> Snapshot {
    let set = |i: usize| sets.get(i).map(Vec::as_slice).unwrap_or_default();
    let mut snapshot = Snapshot::default();
    for row in set(0) {
        if let Some(name) = text(row, 0) {
            let password = text(row, 1);
            snapshot.roles.insert(name, ExistingRole { password });
        }
    }
    for row in set(1) {
        if let Some(name) = text(row, 0) {
            let database = ExistingDatabase {
                owner: text(row, 1).unwrap_or_default(),
                allow_conn: flag(row, 2),
                invalid: flag(row, 3),
                is_template: flag(row, 4),
            };
            snapshot.databases.insert(name, database);
        }
    }
    for row in set(2) {
        if let (Some(database), Some(name)) = (text(row, 0), text(row, 1)) {
            snapshot.subscriptions.push((database, name));
        }
    }
    for row in set(3) {
        if let Some(name) = text(row, 0) {
            let extension = AvailableExtension {
                default_version: text(row, 1).unwrap_or_default(),
                installed_version: text(row, 2),
            };
            snapshot.extensions.insert(name, extension);
        }
    }
    if let Some(row) = set(4).first() {
        snapshot.preloaded = split_list(&text(row, 0).unwrap_or_default());
        snapshot.max_connections = text(row, 1).and_then(|value| value.parse().ok());
        snapshot.neon_schema = flag(row, 2);
        snapshot.conf_loaded_at = text(row, 3).and_then(|value| value.parse().ok());
    }
    for row in set(5) {
        let (Some(name), Some(error)) = (text(row, 0), text(row, 1)) else {
            continue;
        };
        if error == NEEDS_RESTART {
            snapshot.pending_restart.push(name);
        } else {
            snapshot.conf_errors.push(format!("{name}: {error}"));
        }
    }
    for row in set(6) {
        if let Some(role) = text(row, 0) {
            let entry = snapshot.role_dependencies.entry(role).or_default();
            match text(row, 1) {
                Some(database) => {
                    entry.databases.insert(database);
                }
                None => entry.shared = true,
            }
        }
    }
    snapshot
}

/// `a, "b", c` → `[a, b, c]` (a GUC list value).
pub fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|item| item.trim().trim_matches('"').to_string())
        .filter(|item| !item.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_like_gucs() {
        assert_eq!(
            split_list("neon, \"pg_stat_statements\",,"),
            ["neon", "pg_stat_statements"]
        );
        assert!(split_list("").is_empty());
    }

    #[test]
    fn dependency_query_quotes_names() {
        assert_eq!(dependencies_query(&[]), None);
        let query = dependencies_query(&["a'b"]).unwrap();
        assert!(query.contains("ARRAY['a''b']"), "{query}");
    }
}
