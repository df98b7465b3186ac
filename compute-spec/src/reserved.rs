//! The cluster's own objects, which no spec may take over: the role names PostgreSQL or the
//! tools own, and the databases every cluster needs.
//!
//! A spec or delta operation that would drop, rename, demote or create one of them is refused
//! at validation, naming its JSON path, before anything is applied:
//!
//! * role names PostgreSQL reserves (`pg_*`, `public`, `none`) or that SQL reads as a role
//!   keyword (`current_user`, `session_user`, `current_role`), compared exactly as PostgreSQL
//!   compares them (spec names are quoted identifiers, so `PUBLIC` is an ordinary role);
//! * the admin role the tools connect as and the privileged role ([`Reserved`]): neither may
//!   be a delta's object or a rename's target; the privileged role is no spec role (the tools
//!   create it), and the admin role may be one only to set its password (no options: a
//!   `NOSUPERUSER` or `NOLOGIN` would lock the tools out);
//! * the databases `template0`, `template1` (every `CREATE DATABASE` copies one) and
//!   `postgres` (the tools' own connection): no `delete_db` or `rename_db` of them or to them,
//!   and no spec database named `template0` or `template1`.
//!
//! A spec database may be owned by the admin or the privileged role, not by a name
//! PostgreSQL reserves.

use crate::document::DEFAULT_PRIVILEGED_ROLE;
use crate::spec::{ComputeSpec, DeltaAction};

/// The user the tools connect as when the connection string names none.
pub const DEFAULT_ADMIN_ROLE: &str = "cloud_admin";

/// The databases no delta operation may drop or rename, nor rename another to.
pub const PROTECTED_DATABASES: [&str; 3] = ["template0", "template1", "postgres"];

/// The role names a compute's configuration reserves, beside PostgreSQL's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reserved<'a> {
    /// The role the tools connect as: the user of the document's `connstr` (`-C`).
    pub admin: &'a str,
    /// The privileged role (`--privileged-role-name`, the document's `privileged_role_name`).
    pub privileged: &'a str,
}

impl Default for Reserved<'static> {
    fn default() -> Self {
        Reserved {
            admin: DEFAULT_ADMIN_ROLE,
            privileged: DEFAULT_PRIVILEGED_ROLE,
        }
    }
}

/// Why PostgreSQL itself reserves `name` as a role name, if it does.
pub fn builtin_role_reason(name: &str) -> Option<&'static str> {
    if name.starts_with("pg_") {
        return Some("role names beginning with pg_ are reserved for PostgreSQL's own roles");
    }
    match name {
        "public" => Some("public is PostgreSQL's pseudo-role that stands for every role"),
        "none" => Some("none is a role name PostgreSQL reserves"),
        "current_user" | "session_user" | "current_role" => {
            Some("SQL reads this name as a keyword standing for another role")
        }
        _ => None,
    }
}

/// Why `name` is reserved as a role name (PostgreSQL's or this compute's), if it is.
pub fn role_reason(name: &str, reserved: Option<&Reserved<'_>>) -> Option<&'static str> {
    if let Some(reason) = builtin_role_reason(name) {
        return Some(reason);
    }
    let reserved = reserved?;
    if name == reserved.admin {
        Some(
            "it is the admin role the tools connect as (the user of -C/--connstr); \
             changing it locks the tools out of their own compute",
        )
    } else if name == reserved.privileged {
        Some("it is the privileged role (--privileged-role-name) the tools create and manage")
    } else {
        None
    }
}

/// Why the database `name` is protected from drops and renames, if it is.
pub fn database_reason(name: &str) -> Option<&'static str> {
    match name {
        "template0" | "template1" => {
            Some("every CREATE DATABASE copies a template database; without it none can be created")
        }
        "postgres" => Some("it is the system database the tools connect to"),
        _ => None,
    }
}

/// Checks every role name, database and delta operation of `spec` against the reserved
/// names; with `reserved` None only against PostgreSQL's own names and databases.
pub(crate) fn check(
    spec: &ComputeSpec,
    reserved: Option<&Reserved<'_>>,
    error: &mut impl FnMut(&str, String),
) {
    for (index, role) in spec.cluster.roles.iter().enumerate() {
        let field = format!("cluster.roles[{index}]");
        let has_options = role
            .options
            .as_ref()
            .is_some_and(|options| !options.is_empty());
        match reserved {
            Some(reserved) if role.name == reserved.admin => {
                if has_options {
                    error(
                        &format!("{field}.options"),
                        format!(
                            "role {:?} is the admin role the tools connect as (the user of \
                             -C/--connstr): the spec may set its password but not its options \
                             (NOSUPERUSER or NOLOGIN would lock the tools out); remove the \
                             options",
                            role.name
                        ),
                    );
                }
            }
            _ => {
                if let Some(reason) = role_reason(&role.name, reserved) {
                    error(
                        &format!("{field}.name"),
                        format!(
                            "role name {:?} is reserved: {reason}; give the role another name",
                            role.name
                        ),
                    );
                }
            }
        }
    }
    for (index, database) in spec.cluster.databases.iter().enumerate() {
        let field = format!("cluster.databases[{index}]");
        if database.name == "template0" || database.name == "template1" {
            error(
                &format!("{field}.name"),
                format!(
                    "database {:?} is PostgreSQL's template database, not one a spec manages; \
                     remove it from cluster.databases",
                    database.name
                ),
            );
        }
        if let Some(reason) = builtin_role_reason(&database.owner) {
            error(
                &format!("{field}.owner"),
                format!(
                    "database {:?} cannot be owned by {:?}: {reason}; name a role of \
                     cluster.roles as its owner",
                    database.name, database.owner
                ),
            );
        }
    }
    for (index, delta) in spec.delta_operations.iter().flatten().enumerate() {
        let field = format!("delta_operations[{index}]");
        let is_database = match delta.action {
            DeltaAction::DeleteDb | DeltaAction::RenameDb => true,
            DeltaAction::DeleteRole | DeltaAction::RenameRole => false,
            _ => continue,
        };
        let object = if is_database { "database" } else { "role" };
        let reason_of = |name: &str| match is_database {
            true => database_reason(name),
            false => role_reason(name, reserved),
        };
        if let Some(why) = reason_of(&delta.name) {
            error(
                &format!("{field}.name"),
                format!(
                    "{} of {object} {:?} refused: {why}; remove this delta operation",
                    delta.action, delta.name
                ),
            );
        }
        let is_rename = matches!(
            delta.action,
            DeltaAction::RenameDb | DeltaAction::RenameRole
        );
        if let Some(new_name) = delta.new_name.as_deref().filter(|_| is_rename) {
            if let Some(why) = reason_of(new_name) {
                error(
                    &format!("{field}.new_name"),
                    format!(
                        "{} of {object} {:?} to {new_name:?} refused: {why}; choose another \
                         new_name",
                        delta.action, delta.name
                    ),
                );
            }
        }
    }
}
