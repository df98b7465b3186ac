//! Grants a role the schema privileges it lacks, in one statement (upstream's
//! `set_role_grants`, behind `POST /grants`).

use std::collections::BTreeSet;

use compute_spec::quote::Ident;
use compute_spec::ComputeDocument;
use serde::{Deserialize, Serialize};
use stage_kit::local::Limits;

use crate::{connect, execute, CatalogError};

/// The connections' `application_name` (as upstream).
pub const APPLICATION_NAME: &str = "compute_ctl:set_role_grants";

/// `POST /grants`: 30 s per statement, 5 s per lock wait (a session holding the schema's
/// row), a cancel request after 35 s.
pub const LIMITS: Limits = Limits::seconds(30, 5, 35);

/// Upstream's closed set of schema/database/function privileges (`compute_api::privilege`),
/// written in upper case on the wire; anything else is a decoding error naming the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Privilege {
    /// `SELECT`.
    Select,
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `TRUNCATE`.
    Truncate,
    /// `REFERENCES`.
    References,
    /// `TRIGGER`.
    Trigger,
    /// `USAGE`.
    Usage,
    /// `CREATE`.
    Create,
    /// `CONNECT`.
    Connect,
    /// `TEMPORARY`.
    Temporary,
    /// `EXECUTE`.
    Execute,
}

impl Privilege {
    /// The SQL keyword, which is also its wire name and its `aclexplode` `privilege_type`.
    pub fn keyword(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Truncate => "TRUNCATE",
            Privilege::References => "REFERENCES",
            Privilege::Trigger => "TRIGGER",
            Privilege::Usage => "USAGE",
            Privilege::Create => "CREATE",
            Privilege::Connect => "CONNECT",
            Privilege::Temporary => "TEMPORARY",
            Privilege::Execute => "EXECUTE",
        }
    }
}

/// A grants request (the `POST /grants` body, echoed as its 201 body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantsRequest {
    /// The database to connect to.
    pub database: String,
    /// The schema the privileges are on.
    pub schema: String,
    /// The privileges, as given (repeats included).
    pub privileges: Vec<Privilege>,
    /// The role that receives them.
    pub role: String,
}

/// Grants what `grants.role` lacks of `grants.privileges` on the schema; returns the
/// statement it ran, if any.
pub fn set_role_grants(
    document: &ComputeDocument,
    grants: &GrantsRequest,
) -> Result<Option<String>, CatalogError> {
    let mut session = connect(document, APPLICATION_NAME, Some(&grants.database), LIMITS)?;
    // As upstream: the ACL joined to pg_user, so a NOLOGIN role looks ungranted.
    let held: BTreeSet<String> = session
        .query(
            "SELECT acl.privilege_type::text \
             FROM pg_catalog.pg_namespace AS n, pg_catalog.aclexplode(n.nspacl) AS acl \
             JOIN pg_catalog.pg_user AS u ON u.usesysid = acl.grantee \
             WHERE n.nspname = $1 AND u.usename = $2",
            &[&grants.schema, &grants.role],
        )
        .map_err(|error| CatalogError::Read {
            what: format!("reading the privileges of role {:?}", grants.role),
            message: session.describe(&error),
        })?
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect();
    let mut missing: Vec<&str> = Vec::new();
    for privilege in grants
        .privileges
        .iter()
        .map(|privilege| privilege.keyword())
    {
        if !held.contains(privilege) && !missing.contains(&privilege) {
            missing.push(privilege);
        }
    }
    if missing.is_empty() {
        return Ok(None);
    }
    // The privileges are keywords of the closed set.
    let statement = format!(
        "GRANT {} ON SCHEMA {} TO {}",
        missing.join(", "),
        Ident(&grants.schema),
        Ident(&grants.role)
    );
    execute(&mut session, statement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keywords_are_the_wire_names() {
        for privilege in [
            Privilege::Select,
            Privilege::Insert,
            Privilege::Update,
            Privilege::Delete,
            Privilege::Truncate,
            Privilege::References,
            Privilege::Trigger,
            Privilege::Usage,
            Privilege::Create,
            Privilege::Connect,
            Privilege::Temporary,
            Privilege::Execute,
        ] {
            assert_eq!(
                serde_json::to_value(privilege).unwrap(),
                json!(privilege.keyword())
            );
        }
    }
}
