//! The catalog snapshot: what exists in the running instance, as plain data.
//!
//! [`take`] reads everything the planner needs in one round trip (one multi-statement simple
//! query on the system database); the planner only ever sees the [`Snapshot`]. Every catalog
//! query is schema-qualified and compares with `OPERATOR(pg_catalog.=)`, so objects a user
//! puts on the search path cannot change its meaning.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use compute_spec::quote::Literal;
use postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

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
    /// The schema it is installed in, if it is.
    pub schema: Option<String>,
    /// `pg_extension.extrelocatable` of the installed extension.
    pub relocatable: bool,
}

/// What exists in the instance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Roles by name.
    pub roles: HashMap<String, ExistingRole>,
    /// Databases by name.
    pub databases: BTreeMap<String, ExistingDatabase>,
    /// Dependencies of the roles that `delete_role` deltas name (only those are read).
    pub role_dependencies: BTreeMap<String, RoleDependencies>,
    /// Logical-replication subscriptions: (database, subscription name).
    pub subscriptions: Vec<(String, String)>,
    /// `neon`, `pg_stat_statements`, `pgaudit` and `pgauditlogtofile`, when available.
    pub extensions: BTreeMap<String, AvailableExtension>,
    /// Whether `public.health_check` (the availability check's table) exists in the system
    /// database.
    pub health_check: bool,
    /// Whether database `postgres` has `pgaudit.log = none` as its default.
    pub postgres_audit_off: bool,
    /// `server_version_num`.
    pub server_version: u32,
    /// The bootstrap superuser (oid 10, the role `initdb` made): before PostgreSQL 15 it owns
    /// schema `public` of every database created from `template1`.
    pub bootstrap_superuser: Option<String>,
    /// Schema `public` of the spec's databases, by database name ([`crate::schema_perms`]:
    /// read through one connection per database; absent when not read).
    pub schemas: BTreeMap<String, crate::schema_perms::SchemaState>,
    /// Whether schema `neon` exists in the system database.
    pub neon_schema: bool,
    /// The running server's `shared_preload_libraries`, split.
    pub preloaded: Vec<String>,
    /// The running server's `max_connections`.
    pub max_connections: Option<u32>,
    /// Its `superuser_reserved_connections` plus `reserved_connections` (PostgreSQL 16).
    pub reserved_connections: u32,
    /// Settings in the configuration files that need a restart to apply.
    pub pending_restart: Vec<String>,
    /// Settings in the configuration files the server rejects (`name: error`).
    pub conf_errors: Vec<String>,
    /// When the server last loaded its configuration (seconds since the epoch).
    pub conf_loaded_at: Option<f64>,
}

const ROLES: &str = "SELECT rolname, rolpassword FROM pg_catalog.pg_authid";
const DATABASES: &str = "SELECT d.datname, pg_catalog.pg_get_userbyid(d.datdba), d.datallowconn, \
     d.datconnlimit OPERATOR(pg_catalog.=) -2, d.datistemplate FROM pg_catalog.pg_database d";
const SUBSCRIPTIONS: &str = "SELECT d.datname, s.subname FROM pg_catalog.pg_subscription s \
     JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.subdbid";
const EXTENSIONS: &str = "SELECT a.name, a.default_version, a.installed_version, \
     (SELECT n.nspname FROM pg_catalog.pg_extension e \
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace \
      WHERE e.extname OPERATOR(pg_catalog.=) a.name), \
     (SELECT e.extrelocatable FROM pg_catalog.pg_extension e \
      WHERE e.extname OPERATOR(pg_catalog.=) a.name) \
     FROM pg_catalog.pg_available_extensions a \
     WHERE a.name OPERATOR(pg_catalog.=) ANY (ARRAY['neon', 'pg_stat_statements', 'pgaudit', \
     'pgauditlogtofile']::pg_catalog.text[])";
const SERVER: &str = "SELECT pg_catalog.current_setting('shared_preload_libraries'), \
     pg_catalog.current_setting('max_connections'), \
     EXISTS (SELECT FROM pg_catalog.pg_namespace \
             WHERE nspname OPERATOR(pg_catalog.=) 'neon'), \
     pg_catalog.date_part('epoch', pg_catalog.pg_conf_load_time()), \
     EXISTS (SELECT FROM pg_catalog.pg_tables WHERE schemaname OPERATOR(pg_catalog.=) 'public' \
             AND tablename OPERATOR(pg_catalog.=) 'health_check'), \
     EXISTS (SELECT FROM pg_catalog.pg_db_role_setting s \
             JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.setdatabase \
             WHERE d.datname OPERATOR(pg_catalog.=) 'postgres' AND s.setrole OPERATOR(pg_catalog.=) 0 \
             AND 'pgaudit.log=none' OPERATOR(pg_catalog.=) ANY (s.setconfig)), \
     pg_catalog.current_setting('server_version_num'), \
     pg_catalog.current_setting('superuser_reserved_connections'), \
     pg_catalog.current_setting('reserved_connections', true), \
     pg_catalog.pg_get_userbyid(10)::pg_catalog.text";
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

/// Adds one row of a query's result to the snapshot.
type Decoder = fn(&mut Snapshot, &SimpleQueryRow);

/// The fixed queries of the snapshot, each with the decoder of its rows, in the order they
/// are sent (the dependency query, built per run, follows them).
const QUERIES: &[(&str, Decoder)] = &[
    (ROLES, add_role),
    (DATABASES, add_database),
    (SUBSCRIPTIONS, add_subscription),
    (EXTENSIONS, add_extension),
    (SERVER, add_server),
    (FILE_SETTINGS, add_file_setting),
];

/// Reads the snapshot through `client` (connected to the system database), reading the
/// dependencies of `deleted_roles`.
pub fn take(client: &mut Client, deleted_roles: &[&str]) -> Result<Snapshot, postgres::Error> {
    let mut queries: Vec<(String, Decoder)> = QUERIES
        .iter()
        .map(|(query, decoder)| (query.to_string(), *decoder))
        .collect();
    if let Some(query) = dependencies_query(deleted_roles) {
        queries.push((query, add_dependency));
    }
    let text: Vec<&str> = queries.iter().map(|(query, _)| query.as_str()).collect();
    let mut snapshot = Snapshot::default();
    // Result set `set` answers query `set`: its rows go to that query's decoder.
    let mut set = 0;
    for message in client.simple_query(&text.join(";\n"))? {
        match message {
            SimpleQueryMessage::Row(row) => {
                if let Some((_, decode)) = queries.get(set) {
                    decode(&mut snapshot, &row);
                }
            }
            SimpleQueryMessage::CommandComplete(_) => set += 1,
            _ => {}
        }
    }
    Ok(snapshot)
}

fn text(row: &SimpleQueryRow, i: usize) -> Option<&str> {
    row.try_get(i).ok().flatten()
}

fn owned(row: &SimpleQueryRow, i: usize) -> Option<String> {
    text(row, i).map(str::to_string)
}

fn flag(row: &SimpleQueryRow, i: usize) -> bool {
    text(row, i) == Some("t")
}

/// [`ROLES`]: name, password.
fn add_role(snapshot: &mut Snapshot, row: &SimpleQueryRow) {
    if let Some(name) = owned(row, 0) {
        let password = owned(row, 1);
        snapshot.roles.insert(name, ExistingRole { password });
    }
}

/// [`DATABASES`]: name, owner, allow connections, invalid, template.
fn add_database(snapshot: &mut Snapshot, row: &SimpleQueryRow) {
    if let Some(name) = owned(row, 0) {
        let database = ExistingDatabase {
            owner: owned(row, 1).unwrap_or_default(),
            allow_conn: flag(row, 2),
            invalid: flag(row, 3),
            is_template: flag(row, 4),
        };
        snapshot.databases.insert(name, database);
    }
}

/// [`SUBSCRIPTIONS`]: database, subscription.
fn add_subscription(snapshot: &mut Snapshot, row: &SimpleQueryRow) {
    if let (Some(database), Some(name)) = (owned(row, 0), owned(row, 1)) {
        snapshot.subscriptions.push((database, name));
    }
}

/// [`EXTENSIONS`]: name, default version, installed version, schema, relocatable.
fn add_extension(snapshot: &mut Snapshot, row: &SimpleQueryRow) {
    if let Some(name) = owned(row, 0) {
        let extension = AvailableExtension {
            default_version: owned(row, 1).unwrap_or_default(),
            installed_version: owned(row, 2),
            schema: owned(row, 3),
            relocatable: flag(row, 4),
        };
        snapshot.extensions.insert(name, extension);
    }
}

/// [`SERVER`]: its one row.
fn add_server(snapshot: &mut Snapshot, row: &SimpleQueryRow) {
    snapshot.preloaded = split_list(text(row, 0).unwrap_or_default());
    snapshot.max_connections = text(row, 1).and_then(|value| value.parse().ok());
    snapshot.neon_schema = flag(row, 2);
    snapshot.conf_loaded_at = text(row, 3).and_then(|value| value.parse().ok());
    snapshot.health_check = flag(row, 4);
    snapshot.postgres_audit_off = flag(row, 5);
    snapshot.server_version = text(row, 6).and_then(|v| v.parse().ok()).unwrap_or(0);
    // `reserved_connections` exists from PostgreSQL 16 (NULL before).
    snapshot.reserved_connections = [7, 8]
        .iter()
        .filter_map(|&i| text(row, i).and_then(|v| v.parse::<u32>().ok()))
        .sum();
    snapshot.bootstrap_superuser = owned(row, 9);
}

/// [`FILE_SETTINGS`]: setting (or file), error.
fn add_file_setting(snapshot: &mut Snapshot, row: &SimpleQueryRow) {
    if let (Some(name), Some(error)) = (owned(row, 0), text(row, 1)) {
        if error == NEEDS_RESTART {
            snapshot.pending_restart.push(name);
        } else {
            snapshot.conf_errors.push(format!("{name}: {error}"));
        }
    }
}

/// [`dependencies_query`]: role, database (none for a shared object).
fn add_dependency(snapshot: &mut Snapshot, row: &SimpleQueryRow) {
    if let Some(role) = owned(row, 0) {
        let entry = snapshot.role_dependencies.entry(role).or_default();
        match owned(row, 1) {
            Some(database) => {
                entry.databases.insert(database);
            }
            None => entry.shared = true,
        }
    }
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
