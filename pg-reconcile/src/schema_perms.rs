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
//! `pg_database_owner`, or by the bootstrap superuser before PostgreSQL 15; nothing granted).

use compute_spec::quote::Literal;
use compute_spec::spec::{ComputeSpec, DeltaAction};
use postgres::{Client, SimpleQueryMessage};

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

impl SchemaState {
    /// `public` of a database created from `template1` on a server of `server_version`:
    /// PostgreSQL 15 made `pg_database_owner` its owner; before, the bootstrap superuser
    /// owns it (and `PUBLIC` may create in it).
    pub fn of_new_database(server_version: u32, bootstrap_superuser: Option<&str>) -> Self {
        match bootstrap_superuser {
            Some(owner) if server_version < 150000 => SchemaState {
                owner: owner.to_string(),
                ..SchemaState::default()
            },
            _ => SchemaState::default(),
        }
    }
}

impl Default for SchemaState {
    /// A new database's `public` on PostgreSQL 15 and later.
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

/// The roles [`read`] compares with, by oid (roles are shared by all databases, so their
/// oids are read once, in the system database).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoleOids {
    /// The admin user, who holds the default privileges.
    pub admin: Option<u32>,
    /// The privileged role, who receives them.
    pub privileged: Option<u32>,
    /// `web_access`, if it exists.
    pub web_access: Option<u32>,
}

impl RoleOids {
    /// Looks the three roles up through `client`.
    pub fn read(client: &mut Client, names: &Names<'_>) -> Result<RoleOids, postgres::Error> {
        let query = format!(
            "SELECT rolname, oid FROM pg_catalog.pg_authid WHERE rolname OPERATOR(pg_catalog.=) \
             ANY (ARRAY[{}, {}, 'web_access']::pg_catalog.name[])",
            Literal(names.admin_user),
            Literal(names.privileged_role)
        );
        let mut oids = RoleOids::default();
        for message in client.simple_query(&query)? {
            if let SimpleQueryMessage::Row(row) = message {
                let (Ok(Some(name)), Ok(Some(oid))) = (row.try_get(0), row.try_get(1)) else {
                    continue;
                };
                let oid = oid.parse().ok();
                if name == names.admin_user {
                    oids.admin = oid;
                }
                if name == names.privileged_role {
                    oids.privileged = oid;
                }
                if name == "web_access" {
                    oids.web_access = oid;
                }
            }
        }
        Ok(oids)
    }
}

/// Reads [`SchemaState`] through `client` (connected to the database) in one round trip:
/// the owner of `public` (`o`), its privileges (`s`), and the admin's default privileges in
/// it (`r` tables, `S` sequences), as (kind, role, privilege type, grantable) rows, judged
/// here. Only oids go in, so the new session touches as few catalogs as it can (each
/// database is read by a new session: its cost is most of a no-op run).
pub fn read(
    client: &mut Client,
    oids: &RoleOids,
    server_version: u32,
) -> Result<SchemaState, postgres::Error> {
    // A role that does not exist matches no grant: oid 0 is no role's.
    let admin = oids.admin.unwrap_or(0);
    let query = format!(
        "SELECT 'o', pg_catalog.pg_get_userbyid(n.nspowner)::pg_catalog.text, NULL, NULL \
           FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) 'public' \
         UNION ALL SELECT 's', a.grantee::pg_catalog.text, a.privilege_type, \
           a.is_grantable::pg_catalog.text \
           FROM pg_catalog.pg_namespace n CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) a \
           WHERE n.nspname OPERATOR(pg_catalog.=) 'public' \
         UNION ALL SELECT d.defaclobjtype::pg_catalog.text, a.grantee::pg_catalog.text, \
           a.privilege_type, a.is_grantable::pg_catalog.text \
           FROM pg_catalog.pg_default_acl d \
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) d.defaclnamespace \
           CROSS JOIN LATERAL pg_catalog.aclexplode(d.defaclacl) a \
           WHERE n.nspname OPERATOR(pg_catalog.=) 'public' \
           AND d.defaclrole OPERATOR(pg_catalog.=) {admin}::pg_catalog.oid"
    );
    let mut rows = Vec::new();
    for message in client.simple_query(&query)? {
        if let SimpleQueryMessage::Row(row) = message {
            let text = |i: usize| row.try_get(i).ok().flatten().map(str::to_string);
            rows.push([text(0), text(1), text(2), text(3)]);
        }
    }
    Ok(judge(&rows, oids, server_version))
}

/// One row of [`read`]'s query: kind, role (owner name or grantee oid), privilege type,
/// grantable.
type AclRow = [Option<String>; 4];

/// Column `i` of `row`.
fn field(row: &AclRow, i: usize) -> Option<&str> {
    row[i].as_deref()
}

/// The [`SchemaState`] the rows of [`read`] describe.
fn judge(rows: &[AclRow], oids: &RoleOids, server_version: u32) -> SchemaState {
    let Some(owner) = rows
        .iter()
        .find(|row| field(row, 0) == Some("o"))
        .and_then(|row| row[1].clone())
    else {
        return SchemaState {
            public_exists: false,
            ..SchemaState::default()
        };
    };
    let is = |row: &AclRow, oid: Option<u32>| {
        oid.is_some_and(|oid| field(row, 1) == Some(oid.to_string().as_str()))
    };
    let web_access_create = rows.iter().any(|row| {
        field(row, 0) == Some("s") && is(row, oids.web_access) && field(row, 2) == Some("CREATE")
    });
    // Every privilege of the kind, grantable, for the privileged role.
    let complete = |kind: &str, count: usize| {
        let granted: std::collections::BTreeSet<&str> = rows
            .iter()
            .filter(|row| {
                field(row, 0) == Some(kind)
                    && is(row, oids.privileged)
                    && field(row, 3) == Some("true")
            })
            .filter_map(|row| field(row, 2))
            .collect();
        granted.len() >= count
    };
    // ALL on tables is 7 privileges, 8 from PostgreSQL 17 (MAINTAIN); on sequences 3.
    let tables = if server_version >= 170000 { 8 } else { 7 };
    SchemaState {
        public_exists: true,
        owner,
        web_access_create,
        default_tables: complete("r", tables),
        default_sequences: complete("S", 3),
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
    let oids = pool
        .take(names.system_db)
        .and_then(|mut client| {
            RoleOids::read(&mut client, names).map_err(|error| crate::apply::message(&error))
        })
        .unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot read the roles' oids; schema public is compared with no role");
            RoleOids::default()
        });
    let version = snapshot.server_version;
    let states = parallel(
        &databases,
        crate::concurrency::read_lanes(pool.limit()),
        |name| {
            let mut client = pool.take(name)?;
            read(&mut client, &oids, version).map_err(|error| {
                format!("reading schema public: {}", crate::apply::message(&error))
            })
        },
    );
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
    /// Its schema state ([`SchemaState::of_new_database`] for a database the plan creates).
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

    fn row(kind: &str, role: &str, privilege: Option<&str>, grantable: bool) -> AclRow {
        [
            Some(kind.to_string()),
            Some(role.to_string()),
            privilege.map(str::to_string),
            Some(grantable.to_string()),
        ]
    }

    #[test]
    fn rows_are_judged_by_oid_and_grant_option() {
        let oids = RoleOids {
            admin: Some(10),
            privileged: Some(20),
            web_access: Some(30),
        };
        assert!(!judge(&[], &oids, 150000).public_exists);
        let tables = [
            "INSERT",
            "SELECT",
            "UPDATE",
            "DELETE",
            "TRUNCATE",
            "REFERENCES",
        ];
        let mut rows = vec![
            row("o", "we\"ird", None, false),
            row("s", "30", Some("CREATE"), false),
            row("S", "20", Some("USAGE"), true),
            row("S", "20", Some("SELECT"), true),
            row("S", "20", Some("UPDATE"), false),
        ];
        rows.extend(tables.iter().map(|p| row("r", "20", Some(p), true)));
        let state = judge(&rows, &oids, 150000);
        assert_eq!(state.owner, "we\"ird");
        assert!(state.web_access_create);
        // Six of seven table privileges; a sequence privilege without grant option.
        assert!(!state.default_tables && !state.default_sequences);
        rows.push(row("r", "21", Some("TRIGGER"), true));
        assert!(!judge(&rows, &oids, 150000).default_tables);
        rows.push(row("r", "20", Some("TRIGGER"), true));
        assert!(judge(&rows, &oids, 150000).default_tables);
        assert!(
            !judge(&rows, &oids, 170000).default_tables,
            "MAINTAIN missing"
        );
        let nobody = RoleOids::default();
        assert!(!judge(&rows, &nobody, 150000).web_access_create);
    }
}
