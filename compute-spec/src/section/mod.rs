//! One section per stage: what it decided, what it did, and its timings (named as in
//! Neon's `/metrics.json`). Each stage owns its file here.

mod basebackup;
mod extensions;
mod reconcile;
mod spec_load;
mod sync_safekeepers;

pub use basebackup::{BasebackupSection, BasebackupSource, TemplateOutcome};
pub use extensions::ExtensionsSection;
pub use reconcile::{
    FailedMigration, MigrationReport, PlannedStatement, ReconcilePhase, ReconcileSection,
    SettingChange, SettingOutcome, StatementFailure,
};
pub use spec_load::{SpecLoadSection, SpecLoadSource};
pub use sync_safekeepers::{SyncMethod, SyncSafekeepersSection};
