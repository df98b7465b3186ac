//! The planner: a pure function from (spec, snapshot) to the ordered list of steps.
//!
//! Nothing here touches a connection, so every decision is unit-tested with plain data
//! (`tests` below, one `check` helper). The planner simulates each phase on a copy of the
//! snapshot, so later phases see what earlier ones will have done (a renamed role, a dropped
//! database), and a spec that is already in effect plans nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use compute_spec::spec::{ComputeMode, ComputeSpec};
use compute_spec::sqlopt::{OptionError, OptionsOf};

use crate::snapshot::{ExistingDatabase, ExistingRole, Snapshot};
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
    deltas(spec, "delete_role").map(|(name, _)| name).collect()
}

fn deltas<'a>(
    spec: &'a ComputeSpec,
    action: &'a str,
) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
    spec.delta_operations
        .iter()
        .flatten()
        .filter(move |op| op.action == action)
        .map(|op| (op.name.as_str(), op.new_name.as_deref()))
}

fn sql(text: String) -> Sql {
    Sql {
        shown: text.clone(),
        text,
        destructive: false,
    }
}

fn destructive(text: String) -> Sql {
    Sql {
        destructive: true,
        ..sql(text)
    }
}

/// The roles as they will be after the steps so far: changes over the snapshot, so that a
/// no-op plan copies nothing.
struct Roles<'a> {
    base: &'a HashMap<String, ExistingRole>,
    /// `Some(password)`: exists with that password; `None`: dropped or renamed away.
    changed: BTreeMap<String, Option<Option<String>>>,
}

impl Roles<'_> {
    /// `Some(stored password)` when the role exists.
    fn get(&self, name: &str) -> Option<Option<&str>> {
        match self.changed.get(name) {
            Some(state) => state.as_ref().map(Option::as_deref),
            None => self.base.get(name).map(|role| role.password.as_deref()),
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn insert(&mut self, name: String, password: Option<String>) {
        self.changed.insert(name, Some(password));
    }

    /// Removes the role; its stored password when it existed.
    fn remove(&mut self, name: &str) -> Option<Option<String>> {
        let old = self.get(name).map(|password| password.map(str::to_string));
        if old.is_some() {
            self.changed.insert(name.to_string(), None);
        }
        old
    }
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
    fn push(&mut self, phase: Phase, database: &str, object: String, statements: Vec<Sql>) {
        self.push_step(phase, database, object, true, statements);
    }

    fn push_step(
        &mut self,
        phase: Phase,
        database: &str,
        object: String,
        transactional: bool,
        statements: Vec<Sql>,
    ) {
        self.steps.push(Step {
            phase,
            database: database.to_string(),
            object,
            transactional,
            statements,
            slow: false,
        });
    }

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
        roles: Roles {
            base: &snapshot.roles,
            changed: BTreeMap::new(),
        },
        databases: snapshot.databases.clone(),
        renamed_from: BTreeMap::new(),
        database_now: BTreeMap::new(),
        steps: Vec::new(),
    };
    if context.reload {
        let system = planner.system();
        let reload = sql("SELECT pg_catalog.pg_reload_conf()".to_string());
        planner.push(
            Phase::Settings,
            &system,
            "settings".to_string(),
            vec![reload],
        );
    }
    if catalog_enabled(spec) {
        drop_subscriptions(&mut planner);
        create_privileged_role(&mut planner);
        drop_invalid_databases(&mut planner);
        rename_roles(&mut planner);
        create_and_alter_roles(&mut planner)?;
        rename_and_delete_databases(&mut planner);
        create_and_alter_databases(&mut planner)?;
        delete_role_references(&mut planner);
        extensions(&mut planner);
        drop_roles(&mut planner);
    }
    Ok(planner.steps)
}

fn role_object(name: &str) -> String {
    format!("role {}", ident(name))
}

fn database_object(name: &str) -> String {
    format!("database {}", ident(name))
}

fn drop_subscriptions(planner: &mut Planner<'_>) {
    let targets: Vec<&str> = deltas(planner.spec, "delete_db")
        .map(|(name, _)| name)
        .filter(|name| *name != planner.context.system_db)
        .collect();
    for target in targets {
        let statements: Vec<Sql> = planner
            .snapshot
            .subscriptions
            .iter()
            .filter(|(database, _)| database == target)
            .flat_map(|(_, name)| {
                let name = ident(name);
                [
                    destructive(format!("ALTER SUBSCRIPTION {name} DISABLE")),
                    destructive(format!("ALTER SUBSCRIPTION {name} SET (slot_name = NONE)")),
                    destructive(format!("DROP SUBSCRIPTION {name}")),
                ]
            })
            .collect();
        if !statements.is_empty() {
            let object = database_object(target);
            planner.push(Phase::DropSubscriptions, target, object, statements);
        }
    }
}

fn create_privileged_role(planner: &mut Planner<'_>) {
    let name = planner.context.privileged_role.clone();
    if planner.roles.contains(&name) {
        return;
    }
    let statement = sql(format!(
        "CREATE ROLE {} CREATEDB CREATEROLE NOLOGIN REPLICATION BYPASSRLS \
         IN ROLE pg_read_all_data, pg_write_all_data",
        ident(&name)
    ));
    let system = planner.system();
    planner.push(
        Phase::CreatePrivilegedRole,
        &system,
        role_object(&name),
        vec![statement],
    );
    planner.roles.insert(name, None);
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
        let statement = destructive(format!("DROP DATABASE IF EXISTS {}", ident(&name)));
        planner.push_step(
            Phase::DropInvalidDatabases,
            &system,
            database_object(&name),
            false,
            vec![statement],
        );
        planner.databases.remove(&name);
    }
}

fn rename_roles(planner: &mut Planner<'_>) {
    let system = planner.system();
    let renames: Vec<(String, String)> = deltas(planner.spec, "rename_role")
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
        let statement = sql(format!(
            "ALTER ROLE {} RENAME TO {}",
            ident(&old),
            ident(&new)
        ));
        planner.push(
            Phase::RenameRoles,
            &system,
            role_object(&old),
            vec![statement],
        );
        let password = planner.roles.remove(&old).flatten();
        // The md5 salt is the role name: Postgres clears an md5 password on rename.
        let kept = password.filter(|hash| !hash.starts_with("md5"));
        planner.roles.insert(new.clone(), kept);
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
        if existing.is_some_and(|stored| password_matches(stored, role)) {
            continue;
        }
        let opts = options(role.options.as_deref(), OptionsOf::Role, existing.is_some()).map_err(
            |error| {
                option_error(
                    &role_object(&role.name),
                    format!("cluster.roles[{index}]"),
                    error,
                )
            },
        )?;
        let name = ident(&role.name);
        let head = match existing {
            Some(_) => format!("ALTER ROLE {name}{opts} LOGIN"),
            None if jwks_roles.contains(role.name.as_str()) => {
                format!("CREATE ROLE {name}{opts} LOGIN")
            }
            None => format!(
                "CREATE ROLE {name} INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION \
                 IN ROLE {privileged}{opts} LOGIN"
            ),
        };
        let statement = Sql {
            text: format!("{head}{}", password_clause(role, false)),
            shown: format!("{head}{}", password_clause(role, true)),
            destructive: false,
        };
        planner.push(
            Phase::CreateAndAlterRoles,
            &system,
            role_object(&role.name),
            vec![statement],
        );
        if let Some(step) = planner.steps.last_mut() {
            step.slow = password_value(role).is_some_and(|hash| hash.starts_with("SCRAM"));
        }
        planner
            .roles
            .insert(role.name.clone(), password_value(role));
    }
    Ok(())
}

fn rename_and_delete_databases(planner: &mut Planner<'_>) {
    let system = planner.system();
    let ops: Vec<(String, String, Option<String>)> = planner
        .spec
        .delta_operations
        .iter()
        .flatten()
        .filter(|op| op.action == "delete_db" || op.action == "rename_db")
        .map(|op| (op.action.clone(), op.name.clone(), op.new_name.clone()))
        .collect();
    for (action, name, new_name) in ops {
        if name == system || !planner.databases.contains_key(&name) {
            continue;
        }
        if action == "delete_db" {
            let mut statements = Vec::new();
            if planner
                .databases
                .get(&name)
                .is_some_and(|db| db.is_template)
            {
                statements.push(sql(format!(
                    "ALTER DATABASE {} IS_TEMPLATE false",
                    ident(&name)
                )));
            }
            statements.push(destructive(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                ident(&name)
            )));
            let object = database_object(&name);
            planner.push_step(
                Phase::RenameAndDeleteDatabases,
                &system,
                object,
                false,
                statements,
            );
            planner.databases.remove(&name);
        } else if let Some(new) = new_name.filter(|new| !planner.databases.contains_key(new)) {
            let statement = sql(format!(
                "ALTER DATABASE {} RENAME TO {}",
                ident(&name),
                ident(&new)
            ));
            let object = database_object(&name);
            planner.push(
                Phase::RenameAndDeleteDatabases,
                &system,
                object,
                vec![statement],
            );
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
                let statement = sql(format!("ALTER DATABASE {name} OWNER TO {owner}"));
                planner.push(
                    Phase::CreateAndAlterDatabases,
                    &system,
                    object,
                    vec![statement],
                );
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
                    sql(format!("CREATE DATABASE {name}{opts} OWNER {owner}")),
                    sql(format!(
                        "GRANT ALL PRIVILEGES ON DATABASE {name} TO {privileged}"
                    )),
                ];
                planner.push_step(
                    Phase::CreateAndAlterDatabases,
                    &system,
                    object,
                    false,
                    statements,
                );
                if let Some(step) = planner.steps.last_mut() {
                    step.slow = true;
                }
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

fn delete_role_references(planner: &mut Planner<'_>) {
    let first = planner.steps.len();
    delete_role_steps(planner);
    // The system database's steps (shared objects) first, sequentially; the rest after.
    let system = planner.system();
    planner.steps[first..].sort_by_key(|step| step.database != system);
    for step in &mut planner.steps[first..] {
        if step.database == system {
            step.phase = Phase::DeleteRoleSharedReferences;
        }
    }
}

fn delete_role_steps(planner: &mut Planner<'_>) {
    let system = planner.system();
    let admin = planner.context.admin_user.clone();
    let snapshot = planner.snapshot;
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
                admin.as_str()
            } else {
                state.owner.as_str()
            };
            let statements = vec![
                destructive(format!(
                    "REASSIGN OWNED BY {} TO {}",
                    ident(role),
                    ident(new_owner)
                )),
                destructive(format!("DROP OWNED BY {}", ident(role))),
            ];
            planner.push(
                Phase::DeleteRoleReferences,
                &database,
                role_object(role),
                statements,
            );
        }
    }
}

fn extensions(planner: &mut Planner<'_>) {
    let system = planner.system();
    let snapshot = planner.snapshot;
    let preloaded = snapshot
        .preloaded
        .iter()
        .any(|lib| lib == "pg_stat_statements");
    if let Some(ext) = snapshot.extensions.get("pg_stat_statements") {
        if preloaded && ext.installed_version.is_none() {
            let statement = sql(
                "CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public".to_string(),
            );
            let object = "extension \"pg_stat_statements\"".to_string();
            planner.push(Phase::Extensions, &system, object, vec![statement]);
        }
    }
    if let Some(ext) = snapshot.extensions.get("neon") {
        let mut statements = Vec::new();
        if !snapshot.neon_schema {
            statements.push(sql("CREATE SCHEMA IF NOT EXISTS neon".to_string()));
        }
        match &ext.installed_version {
            None => statements.push(sql(
                "CREATE EXTENSION IF NOT EXISTS neon WITH SCHEMA neon".to_string()
            )),
            Some(version) if *version != ext.default_version => {
                statements.push(sql("ALTER EXTENSION neon UPDATE".to_string()));
            }
            Some(_) => {}
        }
        if !statements.is_empty() {
            let object = "extension \"neon\"".to_string();
            planner.push(Phase::Extensions, &system, object, statements);
        }
    }
}

fn drop_roles(planner: &mut Planner<'_>) {
    let system = planner.system();
    for role in deleted_roles(planner.spec) {
        if role == planner.context.privileged_role || planner.roles.remove(role).is_none() {
            continue;
        }
        let statement = destructive(format!("DROP ROLE IF EXISTS {}", ident(role)));
        planner.push(
            Phase::DropRoles,
            &system,
            role_object(role),
            vec![statement],
        );
    }
}

/// The per-database concurrency at start-up, from `max_connections` (upstream's rule):
/// below 10 as is, 10–29 → 10, 30–299 → a third, 300 and more → 100, unknown → 10.
pub fn startup_concurrency(max_connections: Option<u32>) -> usize {
    match max_connections {
        None => 10,
        Some(n @ 0..=9) => (n as usize).max(1),
        Some(10..=29) => 10,
        Some(n @ 30..=299) => n as usize / 3,
        Some(_) => 100,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
