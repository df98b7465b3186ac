//! The planner: a pure function from (spec, snapshot) to the ordered list of statements.
//!
//! Nothing here touches a connection, so every decision is unit-tested with plain data.

use compute_spec::spec::ComputeSpec;

use crate::snapshot::Snapshot;
use crate::sql::{ident, options, password_clause, password_matches};

/// A phase of the reconciliation, in upstream's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Create the privileged role when missing.
    CreatePrivilegedRole,
    /// Create missing roles, alter passwords that differ.
    CreateAndAlterRoles,
    /// Create missing databases, change owners that differ.
    CreateAndAlterDatabases,
}

impl Phase {
    /// The phase's name in the plan.
    pub fn name(self) -> &'static str {
        match self {
            Phase::CreatePrivilegedRole => "create_privileged_role",
            Phase::CreateAndAlterRoles => "create_and_alter_roles",
            Phase::CreateAndAlterDatabases => "create_and_alter_databases",
        }
    }
}

/// One planned statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The SQL to run.
    pub sql: String,
    /// The SQL with secrets replaced by `'********'`.
    pub shown: String,
    /// Its phase.
    pub phase: Phase,
    /// The database it runs in.
    pub database: String,
    /// True for drops and owned-object reassignment.
    pub destructive: bool,
}

/// What the planner needs besides the spec and the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanContext {
    /// The privileged role (`neon_superuser`).
    pub privileged_role: String,
    /// The system database (the admin connection's).
    pub system_db: String,
}

struct Builder<'a> {
    context: &'a PlanContext,
    statements: Vec<Statement>,
}

impl Builder<'_> {
    fn push(&mut self, phase: Phase, sql: String, shown: Option<String>) {
        self.statements.push(Statement {
            shown: shown.unwrap_or_else(|| sql.clone()),
            sql,
            phase,
            database: self.context.system_db.clone(),
            destructive: false,
        });
    }
}

/// The ordered plan that makes the instance described by `snapshot` match `spec`.
pub fn plan(spec: &ComputeSpec, context: &PlanContext, snapshot: &Snapshot) -> Vec<Statement> {
    let mut builder = Builder {
        context,
        statements: Vec::new(),
    };
    let privileged = &context.privileged_role;
    if !snapshot.roles.contains_key(privileged) {
        builder.push(
            Phase::CreatePrivilegedRole,
            format!(
                "CREATE ROLE {} CREATEDB CREATEROLE NOLOGIN REPLICATION BYPASSRLS \
                 IN ROLE pg_read_all_data, pg_write_all_data",
                ident(privileged)
            ),
            None,
        );
    }
    for role in &spec.cluster.roles {
        let opts = options(role.options.as_deref());
        let head = match snapshot.roles.get(&role.name) {
            Some(existing) if password_matches(existing.password.as_deref(), role) => continue,
            Some(_) => format!("ALTER ROLE {}{opts} LOGIN", ident(&role.name)),
            None => format!(
                "CREATE ROLE {} INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION IN ROLE {}{opts} LOGIN",
                ident(&role.name),
                ident(privileged)
            ),
        };
        let sql = format!("{head}{}", password_clause(role, false));
        let shown = format!("{head}{}", password_clause(role, true));
        builder.push(Phase::CreateAndAlterRoles, sql, Some(shown));
    }
    for db in &spec.cluster.databases {
        match snapshot.databases.get(&db.name) {
            Some(existing) if existing.owner == db.owner => {}
            Some(_) => builder.push(
                Phase::CreateAndAlterDatabases,
                format!(
                    "ALTER DATABASE {} OWNER TO {}",
                    ident(&db.name),
                    ident(&db.owner)
                ),
                None,
            ),
            None => {
                let opts = options(db.options.as_deref());
                builder.push(
                    Phase::CreateAndAlterDatabases,
                    format!(
                        "CREATE DATABASE {}{opts} OWNER {}",
                        ident(&db.name),
                        ident(&db.owner)
                    ),
                    None,
                );
                builder.push(
                    Phase::CreateAndAlterDatabases,
                    format!(
                        "GRANT ALL PRIVILEGES ON DATABASE {} TO {}",
                        ident(&db.name),
                        ident(privileged)
                    ),
                    None,
                );
            }
        }
    }
    builder.statements
}
