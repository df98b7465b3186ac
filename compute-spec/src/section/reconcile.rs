//! The `reconcile` section, written by `pg-reconcile`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::open_enum::open_enum;

/// What the reconciler planned, what it ran, and what failed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct ReconcileSection {
    /// True when the plan was only printed.
    #[serde(default)]
    pub dry_run: bool,
    /// The ordered plan (passwords redacted).
    #[serde(default)]
    pub plan: Vec<PlannedStatement>,
    /// Statements that ran successfully.
    #[serde(default)]
    pub applied: usize,
    /// Statements that failed.
    #[serde(default)]
    pub failures: Vec<StatementFailure>,
    /// Time from start to done.
    #[serde(default)]
    pub config_ms: u64,
    /// True when catalog work was skipped (`skip_pg_catalog_updates`, or not a primary).
    #[serde(default)]
    pub catalog_skipped: bool,
    /// True when `postgresql.conf` was (or, dry, would be) rewritten: its managed block at
    /// start-up, the whole file on a reconfiguration.
    #[serde(default)]
    pub conf_changed: bool,
    /// Settings in `postgresql.conf` that only take effect after a restart.
    #[serde(default)]
    pub pending_restart: Vec<String>,
    /// Settings the server rejects (`name: error`, from `pg_file_settings`); while any
    /// remain, Postgres ignores the whole file on reload.
    #[serde(default)]
    pub conf_errors: Vec<String>,
    /// On a reconfiguration, each setting whose line in `postgresql.conf` changed (added,
    /// changed or removed), read back from the server after the reload.
    #[serde(default)]
    pub settings: Vec<SettingChange>,
    /// Spec fields that changed but take effect only at the next start (set by compute-ctl
    /// on `/configure` and `/refresh_configuration`), as JSON paths.
    #[serde(default)]
    pub restart_required: Vec<String>,
    /// Time to connect to the instance.
    #[serde(default)]
    pub connect_ms: u64,
    /// Time to read the catalog snapshot.
    #[serde(default)]
    pub snapshot_ms: u64,
    /// Time to compute the plan.
    #[serde(default)]
    pub plan_ms: u64,
    /// Time to apply the plan.
    #[serde(default)]
    pub apply_ms: u64,
    /// What `pg-reconcile --migrate` (or a start-up `--dry-run`) did with the catalog
    /// migrations; absent from other runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<MigrationReport>,
    /// The spans the stage recorded (compute-ctl exports and removes them); absent when it
    /// recorded none (no trace context given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<crate::trace::SpanRecord>,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What a migration run did (or, dry, would do): `reconcile.migrations`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MigrationReport {
    /// `migration_id.id` before the run (0 when the bookkeeping table does not exist yet).
    #[serde(default)]
    pub from: i64,
    /// `migration_id.id` after the run (unchanged by a dry run).
    #[serde(default)]
    pub to: i64,
    /// The migrations still to apply after the run (a dry run: all it would apply), by file
    /// name.
    #[serde(default)]
    pub pending: Vec<String>,
    /// The migrations applied by this run, by file name.
    #[serde(default)]
    pub applied: Vec<String>,
    /// The migration that failed (rolled back), if one did: it and the later ones are
    /// retried at the next run. Written as `null` when none did.
    #[serde(default)]
    pub failed: Option<FailedMigration>,
}

/// A migration that failed and was rolled back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FailedMigration {
    /// Its id: the value of `migration_id.id` once it is applied.
    pub id: i64,
    /// Its file name without `.sql`.
    #[serde(default)]
    pub name: String,
    /// Postgres's message.
    #[serde(default)]
    pub error: String,
}

/// One statement of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlannedStatement {
    /// The SQL, with secrets shown as `'********'`.
    pub sql: String,
    /// The phase it belongs to.
    pub phase: ReconcilePhase,
    /// The database it runs in.
    pub database: String,
    /// True for drops and owned-object reassignment.
    pub destructive: bool,
}

/// A statement that failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StatementFailure {
    /// The object whose work failed (`role "x"`, `database "y"`, `settings`).
    #[serde(default)]
    pub object: String,
    /// The phase it belongs to (an empty string when a writer left it out).
    #[serde(default)]
    pub phase: ReconcilePhase,
    /// The SQL, redacted.
    pub sql: String,
    /// The database it ran in.
    pub database: String,
    /// The server's message.
    pub error: String,
}

/// A setting of `postgresql.conf` a reconfiguration changed, and what Postgres made of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SettingChange {
    /// The setting's name (lower case, as Postgres matches it).
    pub name: String,
    /// The value written in the file (unquoted); absent when the line was removed.
    #[serde(default)]
    pub value: Option<String>,
    /// The value the server uses after the reload (`current_setting`); absent when it has
    /// none (an unknown custom setting that was removed).
    #[serde(default)]
    pub live: Option<String>,
    /// What became of it.
    pub outcome: SettingOutcome,
    /// Postgres's message for a rejected value.
    #[serde(default)]
    pub message: Option<String>,
}

open_enum! {
    /// What the server made of a changed setting after the reload.
    pub enum SettingOutcome {
        /// In effect now.
        Applied = "applied",
        /// Valid, but takes effect only after a restart; the old value stays in effect.
        PendingRestart = "pending_restart",
        /// Refused by Postgres (see `message`).
        Rejected = "rejected",
    }
}

open_enum! {
    /// A phase of the reconciliation, in the order `pg-reconcile` runs them.
    pub enum ReconcilePhase {
        /// Reload the configuration after the managed block of `postgresql.conf` changed.
        Settings = "settings",
        /// Drop the subscriptions of databases a `delete_db` delta drops, and (with
        /// `drop_subscriptions_before_start`, once per timeline) of every spec database.
        DropSubscriptions = "drop_subscriptions",
        /// Create the privileged role when missing.
        CreatePrivilegedRole = "create_privileged_role",
        /// Drop databases an interrupted `DROP DATABASE` left invalid.
        DropInvalidDatabases = "drop_invalid_databases",
        /// `rename_role` deltas.
        RenameRoles = "rename_roles",
        /// Create missing roles, alter passwords that differ.
        CreateAndAlterRoles = "create_and_alter_roles",
        /// `delete_db` and `rename_db` deltas.
        RenameAndDeleteDatabases = "rename_and_delete_databases",
        /// Create missing databases, change owners that differ.
        CreateAndAlterDatabases = "create_and_alter_databases",
        /// Deleted roles' objects in the system database (shared objects too).
        DeleteRoleSharedReferences = "delete_role_shared_references",
        /// Deleted roles' objects in the other databases.
        DeleteRoleReferences = "delete_role_references",
        /// Schema `public` of each spec database: owner, `web_access`'s CREATE, default
        /// privileges (upstream's `ChangeSchemaPerms`).
        ChangeSchemaPerms = "change_schema_perms",
        /// `pg_stat_statements` when preloaded (upstream's `HandleOtherExtensions`).
        HandleOtherExtensions = "handle_other_extensions",
        /// `neon` where the server has it (upstream's `HandleNeonExtension`).
        HandleNeonExtension = "handle_neon_extension",
        /// `public.health_check` for `/check_writability` (upstream's
        /// `CreateAvailabilityCheck`).
        CreateAvailabilityCheck = "create_availability_check",
        /// `DROP ROLE` for `delete_role` deltas.
        DropRoles = "drop_roles",
        /// Record in `neon.drop_subscriptions_done` that `drop_subscriptions_before_start`
        /// was carried out for the timeline (only when no subscription is left).
        FinalizeDropSubscriptions = "finalize_drop_subscriptions",
        /// `pgaudit` (and `pgauditlogtofile`) per `audit_log_level`, and `pgaudit.log = none`
        /// for database `postgres` (last, so the apply itself is audited).
        Pgaudit = "pgaudit",
    }
}

/// A failure whose writer left out its phase: the empty string, as before phases were typed.
impl Default for ReconcilePhase {
    fn default() -> ReconcilePhase {
        ReconcilePhase::Unknown(String::new())
    }
}
