//! What a plan is made of: phases (in the order they run), steps (one object's work in one
//! database) and statements (the SQL to run and the SQL to show).

use compute_spec::section::ReconcilePhase;

/// A phase of the reconciliation, in the order they run (upstream's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Reload the configuration after the managed block of `postgresql.conf` changed.
    Settings,
    /// Drop the subscriptions of databases a `delete_db` delta drops.
    DropSubscriptions,
    /// Create the privileged role when missing (never altered).
    CreatePrivilegedRole,
    /// Drop databases an interrupted `DROP DATABASE` left invalid.
    DropInvalidDatabases,
    /// `rename_role` deltas.
    RenameRoles,
    /// Create missing roles, alter passwords that differ.
    CreateAndAlterRoles,
    /// `delete_db` and `rename_db` deltas.
    RenameAndDeleteDatabases,
    /// Create missing databases, change owners that differ.
    CreateAndAlterDatabases,
    /// `REASSIGN OWNED` + `DROP OWNED` of deleted roles in the system database, first: it
    /// also handles shared objects (databases owned, database grants), which would make the
    /// parallel per-database runs collide ("tuple concurrently updated").
    DeleteRoleSharedReferences,
    /// `REASSIGN OWNED` + `DROP OWNED` of deleted roles in the other databases, in parallel.
    DeleteRoleReferences,
    /// Schema `public` of each spec database: owner, `web_access`, default privileges
    /// (upstream's `ChangeSchemaPerms`, [`crate::schema_perms`]).
    ChangeSchemaPerms,
    /// `pg_stat_statements` when preloaded (upstream's `HandleOtherExtensions`).
    HandleOtherExtensions,
    /// `neon` where the server has it: created in schema `neon`, moved there, updated
    /// (upstream's `HandleNeonExtension`).
    HandleNeonExtension,
    /// `public.health_check` for `/check_writability` (upstream's
    /// `CreateAvailabilityCheck`).
    CreateAvailabilityCheck,
    /// `DROP ROLE` for `delete_role` deltas.
    DropRoles,
    /// Record the timeline of `drop_subscriptions_before_start` (when nothing is left).
    FinalizeDropSubscriptions,
    /// `pgaudit` (and `pgauditlogtofile`) per `audit_log_level`, and `pgaudit.log = none`
    /// for database `postgres`: last, so the apply itself is audited.
    Pgaudit,
}

impl Phase {
    /// The phase's name in the plan.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Settings => "settings",
            Phase::DropSubscriptions => "drop_subscriptions",
            Phase::CreatePrivilegedRole => "create_privileged_role",
            Phase::DropInvalidDatabases => "drop_invalid_databases",
            Phase::RenameRoles => "rename_roles",
            Phase::CreateAndAlterRoles => "create_and_alter_roles",
            Phase::RenameAndDeleteDatabases => "rename_and_delete_databases",
            Phase::CreateAndAlterDatabases => "create_and_alter_databases",
            Phase::DeleteRoleSharedReferences => "delete_role_shared_references",
            Phase::DeleteRoleReferences => "delete_role_references",
            Phase::ChangeSchemaPerms => "change_schema_perms",
            Phase::HandleOtherExtensions => "handle_other_extensions",
            Phase::HandleNeonExtension => "handle_neon_extension",
            Phase::CreateAvailabilityCheck => "create_availability_check",
            Phase::DropRoles => "drop_roles",
            Phase::FinalizeDropSubscriptions => "finalize_drop_subscriptions",
            Phase::Pgaudit => "pgaudit",
        }
    }

    /// The phase as the `reconcile` section reports it (same name as [`Phase::name`]; every
    /// phase is one of `ReconcilePhase`'s known values, never `Unknown`).
    pub fn reported(self) -> ReconcilePhase {
        match self {
            Phase::Settings => ReconcilePhase::Settings,
            Phase::DropSubscriptions => ReconcilePhase::DropSubscriptions,
            Phase::CreatePrivilegedRole => ReconcilePhase::CreatePrivilegedRole,
            Phase::DropInvalidDatabases => ReconcilePhase::DropInvalidDatabases,
            Phase::RenameRoles => ReconcilePhase::RenameRoles,
            Phase::CreateAndAlterRoles => ReconcilePhase::CreateAndAlterRoles,
            Phase::RenameAndDeleteDatabases => ReconcilePhase::RenameAndDeleteDatabases,
            Phase::CreateAndAlterDatabases => ReconcilePhase::CreateAndAlterDatabases,
            Phase::DeleteRoleSharedReferences => ReconcilePhase::DeleteRoleSharedReferences,
            Phase::DeleteRoleReferences => ReconcilePhase::DeleteRoleReferences,
            Phase::ChangeSchemaPerms => ReconcilePhase::ChangeSchemaPerms,
            Phase::HandleOtherExtensions => ReconcilePhase::HandleOtherExtensions,
            Phase::HandleNeonExtension => ReconcilePhase::HandleNeonExtension,
            Phase::CreateAvailabilityCheck => ReconcilePhase::CreateAvailabilityCheck,
            Phase::DropRoles => ReconcilePhase::DropRoles,
            Phase::FinalizeDropSubscriptions => ReconcilePhase::FinalizeDropSubscriptions,
            Phase::Pgaudit => ReconcilePhase::Pgaudit,
        }
    }

    /// Whether the phase's steps are independent and may run on several connections.
    pub fn parallel(self) -> bool {
        matches!(
            self,
            Phase::CreateAndAlterRoles
                | Phase::CreateAndAlterDatabases
                | Phase::DeleteRoleReferences
                | Phase::ChangeSchemaPerms
        )
    }
}

/// One statement of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sql {
    /// The SQL to run.
    pub text: String,
    /// The SQL with secrets replaced by `'********'`.
    pub shown: String,
    /// True for drops and owned-object reassignment.
    pub destructive: bool,
}

impl Sql {
    /// A statement shown as it runs.
    pub fn new(text: String) -> Sql {
        Sql {
            shown: text.clone(),
            text,
            destructive: false,
        }
    }

    /// A destructive statement (a drop, a reassignment of owned objects) shown as it runs.
    pub fn destructive(text: String) -> Sql {
        Sql {
            destructive: true,
            ..Sql::new(text)
        }
    }
}

/// The work for one object in one database: its statements run in order, and stop at the
/// first failure; other steps go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Its phase.
    pub phase: Phase,
    /// The database it runs in.
    pub database: String,
    /// What it is about (`role "x"`, `database "y"`), for failure reports.
    pub object: String,
    /// False when a statement cannot run in a transaction block (`CREATE/DROP DATABASE`).
    pub transactional: bool,
    /// Its statements.
    pub statements: Vec<Sql>,
    /// Costly on the server (a SCRAM verifier is checked at ~4 ms, `CREATE DATABASE` copies
    /// its template): such steps are spread over several connections.
    pub slow: bool,
    /// The database this step creates: when it fails, the later steps in that database
    /// are left out (they could only fail for the same reason).
    pub creates: Option<String>,
}

impl Step {
    /// A transactional, fast step of `phase` in `database` (the common kind); the others are
    /// built as `Step { transactional: false, ..Step::new(…) }`.
    pub fn new(phase: Phase, database: &str, object: String, statements: Vec<Sql>) -> Step {
        Step {
            phase,
            database: database.to_string(),
            object,
            transactional: true,
            statements,
            slow: false,
            creates: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Phase; 17] = [
        Phase::Settings,
        Phase::DropSubscriptions,
        Phase::CreatePrivilegedRole,
        Phase::DropInvalidDatabases,
        Phase::RenameRoles,
        Phase::CreateAndAlterRoles,
        Phase::RenameAndDeleteDatabases,
        Phase::CreateAndAlterDatabases,
        Phase::DeleteRoleSharedReferences,
        Phase::DeleteRoleReferences,
        Phase::ChangeSchemaPerms,
        Phase::HandleOtherExtensions,
        Phase::HandleNeonExtension,
        Phase::CreateAvailabilityCheck,
        Phase::DropRoles,
        Phase::FinalizeDropSubscriptions,
        Phase::Pgaudit,
    ];

    #[test]
    fn every_phase_is_reported_under_its_name() {
        for phase in ALL {
            assert_eq!(phase.reported().as_str(), phase.name());
            assert_eq!(ReconcilePhase::from(phase.name()), phase.reported());
            assert!(
                phase.reported().is_known(),
                "{} is not a known value",
                phase.name()
            );
        }
        let known: Vec<ReconcilePhase> = ALL.iter().map(|phase| phase.reported()).collect();
        assert_eq!(known, ReconcilePhase::KNOWN, "same phases, same order");
        let mut sorted = ALL;
        sorted.sort();
        assert_eq!(sorted, ALL, "declared in the order they run");
    }
}
