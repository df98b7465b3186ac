//! The planner: a pure function from (spec, snapshot) to the ordered list of steps.
//!
//! Nothing here touches a connection, so every decision is unit-tested with plain data
//! (`tests` below, one `check` helper). The planner simulates each phase on a copy of the
//! snapshot, so later phases see what earlier ones will have done (a renamed role, a dropped
//! database), and a spec that is already in effect plans nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use compute_spec::spec::{ComputeMode, ComputeSpec, DeltaAction};
use compute_spec::sqlopt::{OptionError, OptionsOf};

use crate::roles::{RoleState, Roles};
use crate::snapshot::{ExistingDatabase, Snapshot};
use crate::sql::{ident, options, password_clause, password_matches, password_value};
pub use crate::step::{Phase, Sql, Step};

/// What the planner needs besides the spec and the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanContext {
    /// The privileged role (`neon_superuser`).
    pub privileged_role: String,
    /// The user the tools connect as (`cloud_admin`).
    pub admin_user: String,
    /// The system database (the admin connection's).
    pub system_db: String,
    /// `postgresql.conf` changed since the server last loaded it: reload.
    pub reload: bool,
    /// The timeline whose `drop_subscriptions_before_start` is due (not yet recorded):
    /// drop every spec database's subscriptions, then record it.
    pub drop_subscriptions_for: Option<String>,
}

/// A spec the planner cannot turn into SQL (an option outside the keyword tables): it plans
/// nothing rather than send part of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError {
    /// JSON path of the field, e.g. `cluster.roles[0].options[1].name`.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for PlanError {}

fn option_error(object: &str, field: String, error: OptionError) -> PlanError {
    PlanError {
        field: format!("{field}.options[{}].{}", error.index, error.part),
        message: format!("{object}: {}", error.message),
    }
}

/// Checks every role and database option of the spec (as [`plan`] would render them), so a
/// bad one is refused before anything changes.
pub fn check_options(spec: &ComputeSpec) -> Result<(), PlanError> {
    for (index, role) in spec.cluster.roles.iter().enumerate() {
        options(role.options.as_deref(), OptionsOf::Role, false).map_err(|error| {
            option_error(
                &role_object(&role.name),
                format!("cluster.roles[{index}]"),
                error,
            )
        })?;
    }
    for (index, db) in spec.cluster.databases.iter().enumerate() {
        options(db.options.as_deref(), OptionsOf::Database, false).map_err(|error| {
            option_error(
                &database_object(&db.name),
                format!("cluster.databases[{index}]"),
                error,
            )
        })?;
    }
    Ok(())
}

/// Whether the spec asks for catalog work at all.
pub fn catalog_enabled(spec: &ComputeSpec) -> bool {
    !spec.skip_pg_catalog_updates && matches!(spec.mode, ComputeMode::Primary)
}

/// The names `delete_role` deltas name (their dependencies go into the snapshot).
pub fn deleted_roles(spec: &ComputeSpec) -> Vec<&str> {
    deltas(spec, DeltaAction::DeleteRole)
        .map(|(name, _)| name)
        .collect()
}

fn deltas<'a>(
    spec: &'a ComputeSpec,
    action: DeltaAction,
) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
    spec.delta_operations
        .iter()
        .flatten()
        .filter(move |op| op.action == action)
        .map(|op| (op.name.as_str(), op.new_name.as_deref()))
}

/// The planner's working state: the snapshot as it will be after the steps so far.
struct Planner<'a> {
    spec: &'a ComputeSpec,
    context: &'a PlanContext,
    snapshot: &'a Snapshot,
    roles: Roles<'a>,
    databases: BTreeMap<String, ExistingDatabase>,
    /// Current name → name in the snapshot, for renamed roles.
    renamed_from: BTreeMap<String, String>,
    /// Name in the snapshot → current name, for renamed databases.
    database_now: BTreeMap<String, String>,
    steps: Vec<Step>,
}

impl Planner<'_> {
    fn system(&self) -> String {
        self.context.system_db.clone()
    }
}

/// The ordered plan that makes the instance described by `snapshot` match `spec`; an error
/// when a role or database option is not one Postgres defines.
pub fn plan(
    spec: &ComputeSpec,
    context: &PlanContext,
    snapshot: &Snapshot,
) -> Result<Vec<Step>, PlanError> {
    let mut planner = Planner {
        spec,
        context,
        snapshot,
        roles: Roles::new(&snapshot.roles),
        databases: snapshot.databases.clone(),
        renamed_from: BTreeMap::new(),
        database_now: BTreeMap::new(),
        steps: Vec::new(),
    };
    if context.reload {
        let system = planner.system();
        let reload = Sql::new("SELECT pg_catalog.pg_reload_conf()".to_string());
        planner.steps.push(Step::new(
            Phase::Settings,
            &system,
            "settings".to_string(),
            vec![reload],
        ));
    }
    if catalog_enabled(spec) {
        let drops = crate::subscriptions::drop_steps(spec, context, snapshot);
        planner.steps.extend(drops);
        create_privileged_role(&mut planner);
        drop_invalid_databases(&mut planner);
        rename_roles(&mut planner);
        create_and_alter_roles(&mut planner)?;
        rename_and_delete_databases(&mut planner);
        create_and_alter_databases(&mut planner)?;
        delete_role_references(&mut planner);
        phases::change_schema_perms(&mut planner);
        phases::handle_other_extensions(&mut planner);
        phases::handle_neon_extension(&mut planner);
        phases::create_availability_check(&mut planner);
        drop_roles(&mut planner);
        let finalize = crate::subscriptions::finalize_step(spec, context, snapshot);
        planner.steps.extend(finalize);
        phases::pgaudit(&mut planner);
    }
    Ok(planner.steps)
}

fn role_object(name: &str) -> String {
    format!("role {}", ident(name))
}

fn database_object(name: &str) -> String {
    format!("database {}", ident(name))
}

fn create_privileged_role(planner: &mut Planner<'_>) {
    let name = planner.context.privileged_role.clone();
    if planner.roles.contains(&name) {
        return;
    }
    let statement = Sql::new(format!(
        "CREATE ROLE {} CREATEDB CREATEROLE NOLOGIN REPLICATION BYPASSRLS \
         IN ROLE pg_read_all_data, pg_write_all_data",
        ident(&name)
    ));
    let system = planner.system();
    planner.steps.push(Step::new(
        Phase::CreatePrivilegedRole,
        &system,
        role_object(&name),
        vec![statement],
    ));
    planner.roles.set(name, RoleState::NoPassword);
}

fn drop_invalid_databases(planner: &mut Planner<'_>) {
    let invalid: Vec<String> = planner
        .databases
        .iter()
        .filter(|(_, database)| database.invalid)
        .map(|(name, _)| name.clone())
        .collect();
    let system = planner.system();
    for name in invalid {
        let statement = Sql::destructive(format!("DROP DATABASE IF EXISTS {}", ident(&name)));
        planner.steps.push(Step {
            transactional: false,
            ..Step::new(
                Phase::DropInvalidDatabases,
                &system,
                database_object(&name),
                vec![statement],
            )
        });
        planner.databases.remove(&name);
    }
}

fn rename_roles(planner: &mut Planner<'_>) {
    let system = planner.system();
    let renames: Vec<(String, String)> = deltas(planner.spec, DeltaAction::RenameRole)
        .filter_map(|(old, new)| Some((old.to_string(), new?.to_string())))
        .collect();
    for (old, new) in renames {
        // Rename iff the old role exists and the new one does not (upstream inverted this).
        if old == planner.context.privileged_role
            || !planner.roles.contains(&old)
            || planner.roles.contains(&new)
        {
            continue;
        }
        let statement = Sql::new(format!(
            "ALTER ROLE {} RENAME TO {}",
            ident(&old),
            ident(&new)
        ));
        planner.steps.push(Step::new(
            Phase::RenameRoles,
            &system,
            role_object(&old),
            vec![statement],
        ));
        let renamed = match planner.roles.remove(&old) {
            // The md5 salt is the role name: Postgres clears an md5 password on rename.
            RoleState::Password(hash) if !hash.starts_with("md5") => RoleState::Password(hash),
            _ => RoleState::NoPassword,
        };
        planner.roles.set(new.clone(), renamed);
        let origin = planner.renamed_from.remove(&old).unwrap_or(old);
        planner.renamed_from.insert(new, origin);
    }
}

fn create_and_alter_roles(planner: &mut Planner<'_>) -> Result<(), PlanError> {
    let system = planner.system();
    let spec = planner.spec;
    let deleted: BTreeSet<&str> = deleted_roles(spec).into_iter().collect();
    let jwks_roles: BTreeSet<&str> = spec
        .local_proxy_config
        .iter()
        .flat_map(|config| config.jwks.iter().flatten())
        .flat_map(|jwks| jwks.role_names.iter().map(String::as_str))
        .collect();
    let privileged = ident(&planner.context.privileged_role);
    for (index, role) in spec.cluster.roles.iter().enumerate() {
        if role.name == planner.context.privileged_role || deleted.contains(role.name.as_str()) {
            continue;
        }
        let existing = planner.roles.get(&role.name);
        let exists = existing.exists();
        if exists && password_matches(existing.password(), role) {
            continue;
        }
        let opts = options(role.options.as_deref(), OptionsOf::Role, exists).map_err(|error| {
            option_error(
                &role_object(&role.name),
                format!("cluster.roles[{index}]"),
                error,
            )
        })?;
        let name = ident(&role.name);
        let head = match exists {
            true => format!("ALTER ROLE {name}{opts} LOGIN"),
            false if jwks_roles.contains(role.name.as_str()) => {
                format!("CREATE ROLE {name}{opts} LOGIN")
            }
            false => format!(
                "CREATE ROLE {name} INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION \
                 IN ROLE {privileged}{opts} LOGIN"
            ),
        };
        let statement = Sql {
            text: format!("{head}{}", password_clause(role, false)),
            shown: format!("{head}{}", password_clause(role, true)),
            destructive: false,
        };
        let password = password_value(role);
        planner.steps.push(Step {
            // The server checks a SCRAM verifier (~4 ms each).
            slow: password
                .as_ref()
                .is_some_and(|hash| hash.starts_with("SCRAM")),
            ..Step::new(
                Phase::CreateAndAlterRoles,
                &system,
                role_object(&role.name),
                vec![statement],
            )
        });
        planner
            .roles
            .set(role.name.clone(), RoleState::with_password(password));
    }
    Ok(())
}

fn rename_and_delete_databases(planner: &mut Planner<'_>) {
    let system = planner.system();
    let ops: Vec<(DeltaAction, String, Option<String>)> = planner
        .spec
        .delta_operations
        .iter()
        .flatten()
        .filter(|op| matches!(op.action, DeltaAction::DeleteDb | DeltaAction::RenameDb))
        .map(|op| (op.action.clone(), op.name.clone(), op.new_name.clone()))
        .collect();
    for (action, name, new_name) in ops {
        if name == system || !planner.databases.contains_key(&name) {
            continue;
        }
        if action == DeltaAction::DeleteDb {
            let mut statements = Vec::new();
            if planner
                .databases
                .get(&name)
                .is_some_and(|db| db.is_template)
            {
                statements.push(Sql::new(format!(
                    "ALTER DATABASE {} IS_TEMPLATE false",
                    ident(&name)
                )));
            }
            statements.push(Sql::destructive(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                ident(&name)
            )));
            let object = database_object(&name);
            planner.steps.push(Step {
                transactional: false,
                ..Step::new(Phase::RenameAndDeleteDatabases, &system, object, statements)
            });
            planner.databases.remove(&name);
        } else if let Some(new) = new_name.filter(|new| !planner.databases.contains_key(new)) {
            let statement = Sql::new(format!(
                "ALTER DATABASE {} RENAME TO {}",
                ident(&name),
                ident(&new)
            ));
            let object = database_object(&name);
            planner.steps.push(Step::new(
                Phase::RenameAndDeleteDatabases,
                &system,
                object,
                vec![statement],
            ));
            if let Some(database) = planner.databases.remove(&name) {
                planner.databases.insert(new.clone(), database);
            }
            let origin = planner
                .database_now
                .iter()
                .find(|(_, now)| **now == name)
                .map_or(name, |(origin, _)| origin.clone());
            planner.database_now.insert(origin, new);
        }
    }
}

fn create_and_alter_databases(planner: &mut Planner<'_>) -> Result<(), PlanError> {
    let system = planner.system();
    let privileged = ident(&planner.context.privileged_role);
    let spec = planner.spec;
    for (index, db) in spec.cluster.databases.iter().enumerate() {
        let existing = planner.databases.get(&db.name);
        if existing.is_some_and(|existing| existing.owner == db.owner) {
            continue;
        }
        let name = ident(&db.name);
        let owner = ident(&db.owner);
        let object = database_object(&db.name);
        match existing {
            Some(_) => {
                let statement = Sql::new(format!("ALTER DATABASE {name} OWNER TO {owner}"));
                planner.steps.push(Step::new(
                    Phase::CreateAndAlterDatabases,
                    &system,
                    object,
                    vec![statement],
                ));
            }
            None => {
                let opts = options(db.options.as_deref(), OptionsOf::Database, false).map_err(
                    |error| {
                        option_error(
                            &database_object(&db.name),
                            format!("cluster.databases[{index}]"),
                            error,
                        )
                    },
                )?;
                let statements = vec![
                    Sql::new(format!("CREATE DATABASE {name}{opts} OWNER {owner}")),
                    Sql::new(format!(
                        "GRANT ALL PRIVILEGES ON DATABASE {name} TO {privileged}"
                    )),
                ];
                // `CREATE DATABASE` copies its template: slow.
                planner.steps.push(Step {
                    transactional: false,
                    slow: true,
                    creates: Some(db.name.clone()),
                    ..Step::new(Phase::CreateAndAlterDatabases, &system, object, statements)
                });
            }
        }
        let state = ExistingDatabase {
            owner: db.owner.clone(),
            allow_conn: true,
            ..Default::default()
        };
        planner
            .databases
            .entry(db.name.clone())
            .or_insert(state)
            .owner = db.owner.clone();
    }
    Ok(())
}

/// `REASSIGN OWNED` + `DROP OWNED` of deleted roles: the system database's steps (shared
/// objects) first, in their own sequential phase; the other databases' after, in parallel.
fn delete_role_references(planner: &mut Planner<'_>) {
    let (shared, other): (Vec<Step>, Vec<Step>) = delete_role_steps(planner)
        .into_iter()
        .partition(|step| step.phase == Phase::DeleteRoleSharedReferences);
    planner.steps.extend(shared);
    planner.steps.extend(other);
}

fn delete_role_steps(planner: &Planner<'_>) -> Vec<Step> {
    let system = planner.system();
    let admin = planner.context.admin_user.as_str();
    let snapshot = planner.snapshot;
    let mut steps = Vec::new();
    for role in deleted_roles(planner.spec) {
        if !planner.roles.contains(role) || role == planner.context.privileged_role {
            continue;
        }
        let origin = planner.renamed_from.get(role).map_or(role, String::as_str);
        let dependencies = snapshot.role_dependencies.get(origin);
        let owns_database = planner.databases.values().any(|db| db.owner == role);
        let mut targets: BTreeSet<String> = dependencies
            .iter()
            .flat_map(|deps| deps.databases.iter())
            .map(|name| planner.database_now.get(name).unwrap_or(name).clone())
            .collect();
        if owns_database || dependencies.is_some_and(|deps| deps.shared) {
            targets.insert(system.clone());
        }
        for database in targets {
            let Some(state) = planner.databases.get(&database) else {
                continue;
            };
            if !state.allow_conn || state.invalid {
                continue;
            }
            let new_owner = if database == system || state.owner == role {
                admin
            } else {
                state.owner.as_str()
            };
            // Upstream's order: reassign, revoke what other grantors gave, drop the rest.
            let mut statements = vec![Sql::destructive(format!(
                "REASSIGN OWNED BY {} TO {}",
                ident(role),
                ident(new_owner)
            ))];
            statements.extend(crate::revoke::statements(role, database == system));
            statements.push(Sql::destructive(format!("DROP OWNED BY {}", ident(role))));
            let phase = if database == system {
                Phase::DeleteRoleSharedReferences
            } else {
                Phase::DeleteRoleReferences
            };
            steps.push(Step::new(phase, &database, role_object(role), statements));
        }
    }
    steps
}

fn drop_roles(planner: &mut Planner<'_>) {
    let system = planner.system();
    for role in deleted_roles(planner.spec) {
        if role == planner.context.privileged_role || !planner.roles.remove(role).exists() {
            continue;
        }
        let statement = Sql::destructive(format!("DROP ROLE IF EXISTS {}", ident(role)));
        planner.steps.push(Step::new(
            Phase::DropRoles,
            &system,
            role_object(role),
            vec![statement],
        ));
    }
}

#[path = "phases.rs"]
pub mod phases;

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
