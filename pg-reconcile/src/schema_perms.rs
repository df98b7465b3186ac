//! Upstream's `ChangeSchemaPerms` (§4.3) for each spec database that exists, accepts
//! connections and is valid (not the system database): schema `public` given to the
//! database's owner when the admin user (or `zenith_admin`) still owns it; `CREATE` on it for
//! `web_access` (PostgreSQL 15 and later, when that role exists); default privileges so tables
//! and sequences the admin user creates there grant ALL to the privileged role WITH GRANT
//! OPTION.
//!
//! The state is read per database before planning ([`read`], one query on one connection
//! each), so an instance already in that state plans nothing. A database the plan creates
//! is planned from the state a new database has (schema `public` owned by
//! `pg_database_owner`, nothing granted).

use compute_spec::spec::{ComputeSpec, DeltaAction};
use postgres::Client;

use crate::connections::{parallel, Connections};

use crate::sql::ident;
use crate::step::{Phase, Sql, Step};

/// Schema `public` of one database, as far as this phase cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaState {
    /// Whether schema `public` exists.
    pub public_exists: bool,
    /// Its owner (`pg_database_owner` in a new database).
    pub owner: String,
    /// `web_access` holds CREATE on it.
    pub web_access_create: bool,
    /// The admin user's default privileges there give the privileged role ALL on tables,
    /// grantable.
    pub default_tables: bool,
    /// The same for sequences.
    pub default_sequences: bool,
}

impl Default for SchemaState {
    /// A new database's `public`.
    fn default() -> SchemaState {
        SchemaState {
            public_exists: true,
            owner: "pg_database_owner".to_string(),
            web_access_create: false,
            default_tables: false,
            default_sequences: false,
        }
    }
}

/// The roles that, owning `public`, hand it to the database owner (upstream's list; the
/// admin user is added).
const ADMIN_OWNERS: [&str; 2] = ["cloud_admin", "zenith_admin"];

/// Whether the default ACL of object type `kind` (`r` tables, `S` sequences) held by role
/// `$1` in `public` gives role `$2` every privilege (`count` of them) with grant option.
fn default_acl(kind: char, count: &str) -> String {
    format!(
        "EXISTS (SELECT FROM pg_catalog.pg_default_acl d \
         WHERE d.defaclrole OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_roles \
               WHERE rolname OPERATOR(pg_catalog.=) $1::pg_catalog.name) \
         AND d.defaclnamespace OPERATOR(pg_catalog.=) n.oid \
         AND d.defaclobjtype OPERATOR(pg_catalog.=) '{kind}' \
         AND (SELECT pg_catalog.count(DISTINCT a.privilege_type) \
              FROM pg_catalog.aclexplode(d.defaclacl) a \
              WHERE a.is_grantable AND a.grantee OPERATOR(pg_catalog.=) \
                  (SELECT oid FROM pg_catalog.pg_roles \
                   WHERE rolname OPERATOR(pg_catalog.=) $2::pg_catalog.name)) \
             OPERATOR(pg_catalog.>=) {count})"
    )
}

/// Reads [`SchemaState`] through `client` (connected to the database); `admin_user` holds
/// the default privileges, `privileged_role` receives them.
pub fn read(
    client: &mut Client,
    admin_user: &str,
    privileged_role: &str,
) -> Result<SchemaState, postgres::Error> {
    // ALL on tables is 7 privileges, 8 from PostgreSQL 17 (MAINTAIN); on sequences 3.
    let tables = default_acl(
        'r',
        "CASE WHEN pg_catalog.current_setting('server_version_num')::pg_catalog.int4 \
         OPERATOR(pg_catalog.>=) 170000 THEN 8 ELSE 7 END",
    );
    let sequences = default_acl('S', "3");
    let query = format!(
        "SELECT n.nspowner::pg_catalog.regrole::pg_catalog.text, \
         EXISTS (SELECT FROM pg_catalog.aclexplode(n.nspacl) a \
                 WHERE a.privilege_type OPERATOR(pg_catalog.=) 'CREATE' \
                 AND a.grantee OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_roles \
                     WHERE rolname OPERATOR(pg_catalog.=) 'web_access')), \
         {tables}, {sequences} \
         FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) 'public'"
    );
    let row = client.query_opt(&query, &[&admin_user, &privileged_role])?;
    Ok(match row {
        None => SchemaState {
            public_exists: false,
            ..SchemaState::default()
        },
        Some(row) => SchemaState {
            public_exists: true,
            // `regrole` text is quoted when the name needs it; compare with the bare name.
            owner: unquote(&row.get::<_, String>(0)),
            web_access_create: row.get(1),
            default_tables: row.get(2),
            default_sequences: row.get(3),
        },
    })
}

/// A `regrole` output (`"we""ird"` or `plain`) as the name.
fn unquote(text: &str) -> String {
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => text.to_string(),
    }
}

/// Reads schema `public` of each spec database (and each a `rename_db` delta renames) that
/// exists, accepts connections and is valid, for the `change_schema_perms` phase: side by
/// side, on connections from `pool` (each database is read, none skipped). A database that
/// cannot be read is planned as a new one (its statements then report the failure).
pub fn read_all(
    pool: &Connections<'_>,
    names: &Names<'_>,
    spec: &ComputeSpec,
    snapshot: &mut crate::snapshot::Snapshot,
) {
    let renamed = spec
        .delta_operations
        .iter()
        .flatten()
        .filter_map(|op| (op.action == DeltaAction::RenameDb).then_some(op.name.as_str()));
    let wanted: std::collections::BTreeSet<&str> = spec
        .cluster
        .databases
        .iter()
        .map(|db| db.name.as_str())
        .chain(renamed)
        .collect();
    let databases: Vec<&str> = wanted
        .into_iter()
        .filter(|name| {
            let usable = snapshot
                .databases
                .get(*name)
                .is_some_and(|db| db.allow_conn && !db.invalid);
            *name != names.system_db && usable
        })
        .collect();
    let states = parallel(&databases, pool.limit(), |name| {
        let mut client = pool.take(name)?;
        read(&mut client, names.admin_user, names.privileged_role)
            .map_err(|error| format!("reading schema public: {}", crate::apply::message(&error)))
    });
    for (name, state) in databases.into_iter().zip(states) {
        match state {
            Ok(state) => {
                snapshot.schemas.insert(name.to_string(), state);
            }
            Err(error) => {
                tracing::warn!(database = %name, %error, "cannot read schema public; planning it as a new database's");
            }
        }
    }
}

/// The names [`read_all`] needs.
pub struct Names<'a> {
    /// The system database (not read: upstream leaves its `public` alone).
    pub system_db: &'a str,
    /// The admin user, who holds the default privileges.
    pub admin_user: &'a str,
    /// The privileged role, who receives them.
    pub privileged_role: &'a str,
}

/// What the planner passes to [`step`].
pub struct Target<'a> {
    /// The database.
    pub database: &'a str,
    /// Its owner in the spec.
    pub owner: &'a str,
    /// Its schema state ([`SchemaState::default`] for a database the plan creates).
    pub state: &'a SchemaState,
    /// The admin user (`cloud_admin`).
    pub admin_user: &'a str,
    /// The privileged role.
    pub privileged_role: &'a str,
    /// Whether role `web_access` exists.
    pub web_access: bool,
    /// `server_version_num`.
    pub server_version: u32,
}

/// The `change_schema_perms` step for one database, if it has anything to do.
pub fn step(target: &Target<'_>) -> Option<Step> {
    let state = target.state;
    if !state.public_exists {
        return None;
    }
    let mut statements = Vec::new();
    let owned_by_admin =
        ADMIN_OWNERS.contains(&state.owner.as_str()) || state.owner == target.admin_user;
    if owned_by_admin && state.owner != target.owner {
        statements.push(Sql::new(format!(
            "ALTER SCHEMA public OWNER TO {}",
            ident(target.owner)
        )));
    }
    if target.server_version >= 150000 && target.web_access && !state.web_access_create {
        statements.push(Sql::new(
            "GRANT CREATE ON SCHEMA public TO web_access".to_string(),
        ));
    }
    for (done, kind) in [
        (state.default_tables, "TABLES"),
        (state.default_sequences, "SEQUENCES"),
    ] {
        if !done {
            statements.push(Sql::new(format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT ALL ON {kind} TO {} \
                 WITH GRANT OPTION",
                ident(target.admin_user),
                ident(target.privileged_role)
            )));
        }
    }
    (!statements.is_empty()).then(|| {
        Step::new(
            Phase::ChangeSchemaPerms,
            target.database,
            format!("schema public of database {}", ident(target.database)),
            statements,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regrole_text_is_unquoted() {
        assert_eq!(unquote("cloud_admin"), "cloud_admin");
        assert_eq!(unquote("\"we\"\"ird\""), "we\"ird");
    }
}
