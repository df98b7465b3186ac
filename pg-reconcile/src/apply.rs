//! The executor: runs a plan and records what ran and what failed.

use postgres::Client;

use crate::plan::Statement;
use compute_spec::section::StatementFailure;

/// What applying a plan did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Statements that ran.
    pub applied: usize,
    /// Statements that failed.
    pub failures: Vec<StatementFailure>,
}

/// Runs every statement on `client`, in order; a failure is recorded and the rest go on.
pub fn apply(client: &mut Client, plan: &[Statement]) -> Outcome {
    let mut outcome = Outcome::default();
    for statement in plan {
        match client.batch_execute(&statement.sql) {
            Ok(()) => outcome.applied += 1,
            Err(error) => outcome.failures.push(StatementFailure {
                sql: statement.shown.clone(),
                database: statement.database.clone(),
                error: error
                    .as_db_error()
                    .map_or_else(|| error.to_string(), |db| db.message().to_string()),
            }),
        }
    }
    outcome
}
