//! The roles and databases as upstream's catalog snapshot (`GET /dbs_and_roles`), written
//! from typed rows (the spec's [`Role`], a database row with both flags always present).

use compute_spec::secret::Secret;
use compute_spec::spec::{GenericOption, Role};
use compute_spec::ComputeDocument;
use serde::Serialize;
use stage_kit::local::Limits;

use crate::{connect, CatalogError};

/// The binary's `application_name` (compute-ctl reads through its own `compute_ctl:http`
/// connection).
pub const APPLICATION_NAME: &str = "pg-catalog:dbs_and_roles";

/// The binary's snapshot: 10 s per statement, 5 s per lock wait, a cancel request after 15 s.
pub const LIMITS: Limits = Limits::seconds(10, 5, 15);

/// Upstream's catalog snapshot: every role and every database.
#[derive(Debug, Serialize)]
pub struct DbsAndRoles {
    /// The roles, by name (`options` always null; the password hash as stored).
    pub roles: Vec<Role>,
    /// The databases, by name.
    pub databases: Vec<CatalogDatabase>,
}

/// A database as the snapshot lists it: upstream's `Database` with both flags always
/// written (the spec's [`compute_spec::spec::Database`] leaves them out when false, so it
/// cannot stand in here) and `options` always null.
#[derive(Debug, Serialize)]
pub struct CatalogDatabase {
    /// `datname`.
    pub name: String,
    /// The owner's name.
    pub owner: Option<String>,
    /// Always `None`.
    pub options: Option<Vec<GenericOption>>,
    /// `NOT datallowconn`.
    pub restrict_conn: bool,
    /// `datconnlimit = -2` (an interrupted `DROP DATABASE`).
    pub invalid: bool,
}

/// Reads the snapshot on `client`.
pub fn read_dbs_and_roles(client: &mut postgres::Client) -> Result<DbsAndRoles, postgres::Error> {
    let roles = client
        .query(
            "SELECT rolname::text, rolpassword FROM pg_catalog.pg_authid ORDER BY rolname",
            &[],
        )?
        .iter()
        .map(|row| Role {
            name: row.get(0),
            encrypted_password: row.get::<_, Option<String>>(1).map(Secret::new),
            options: None,
            extra: Default::default(),
        })
        .collect();
    let databases = client
        .query(
            "SELECT datname::text, \
             (SELECT rolname::text FROM pg_catalog.pg_roles WHERE oid = datdba), \
             NOT datallowconn, datconnlimit = -2 \
             FROM pg_catalog.pg_database ORDER BY datname",
            &[],
        )?
        .iter()
        .map(|row| CatalogDatabase {
            name: row.get(0),
            owner: row.get(1),
            options: None,
            restrict_conn: row.get(2),
            invalid: row.get(3),
        })
        .collect();
    Ok(DbsAndRoles { roles, databases })
}

/// Connects to the document's own database and reads the snapshot.
pub fn dbs_and_roles(document: &ComputeDocument) -> Result<DbsAndRoles, CatalogError> {
    let mut session = connect(document, APPLICATION_NAME, None, LIMITS)?;
    read_dbs_and_roles(&mut session).map_err(|error| CatalogError::Read {
        what: "reading roles and databases".into(),
        message: session.describe(&error),
    })
}
