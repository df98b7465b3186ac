//! The `reconcile` section, written by `pg-reconcile`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One statement of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlannedStatement {
    /// The SQL, with secrets shown as `'********'`.
    pub sql: String,
    /// The phase it belongs to.
    pub phase: String,
    /// The database it runs in.
    pub database: String,
    /// True for drops and owned-object reassignment.
    pub destructive: bool,
}

/// A statement that failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StatementFailure {
    /// The SQL, redacted.
    pub sql: String,
    /// The database it ran in.
    pub database: String,
    /// The server's message.
    pub error: String,
}
