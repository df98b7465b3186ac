//! The catalog snapshot: what exists in the running instance, as plain data.
//!
//! [`take`] reads it in a few queries on the system database; the planner only ever sees
//! the [`Snapshot`], never a connection.

use std::collections::BTreeMap;

use postgres::Client;

/// A role that exists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExistingRole {
    /// `pg_authid.rolpassword` (`md5…`, `SCRAM-SHA-256$…`, or none).
    pub password: Option<String>,
}

/// A database that exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingDatabase {
    /// Its owner's name.
    pub owner: String,
    /// `datallowconn`.
    pub allow_conn: bool,
    /// `datconnlimit = -2`: left behind by an interrupted `DROP DATABASE`.
    pub invalid: bool,
}

/// What exists in the instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Roles by name.
    pub roles: BTreeMap<String, ExistingRole>,
    /// Databases by name.
    pub databases: BTreeMap<String, ExistingDatabase>,
}

const ROLES: &str = "SELECT rolname::pg_catalog.text, rolpassword FROM pg_catalog.pg_authid";
const DATABASES: &str = "SELECT d.datname::pg_catalog.text, \
     (SELECT r.rolname::pg_catalog.text FROM pg_catalog.pg_roles r \
      WHERE r.oid OPERATOR(pg_catalog.=) d.datdba), \
     d.datallowconn, d.datconnlimit OPERATOR(pg_catalog.=) -2 \
     FROM pg_catalog.pg_database d";

/// Reads the snapshot through `client` (connected to the system database).
pub fn take(client: &mut Client) -> Result<Snapshot, postgres::Error> {
    let mut snapshot = Snapshot::default();
    for row in client.query(ROLES, &[])? {
        let name: String = row.try_get(0)?;
        let password: Option<String> = row.try_get(1)?;
        snapshot.roles.insert(name, ExistingRole { password });
    }
    for row in client.query(DATABASES, &[])? {
        let name: String = row.try_get(0)?;
        let owner: Option<String> = row.try_get(1)?;
        snapshot.databases.insert(
            name,
            ExistingDatabase {
                owner: owner.unwrap_or_default(),
                allow_conn: row.try_get(2)?,
                invalid: row.try_get(3)?,
            },
        );
    }
    Ok(snapshot)
}
