//! The executor: runs a plan's steps and records what ran and what failed.
//!
//! Consecutive steps of one phase form a group. Transactional steps on one connection are
//! sent together, many statements per round trip in one implicit transaction; if that
//! batch fails, its steps are rerun one by one so that exactly the failing objects are
//! reported and the others still apply. Steps that cannot run in a transaction block
//! (`CREATE/DROP DATABASE`) run statement by statement. Parallel phases (roles, databases,
//! per-database work) spread their work over up to [`Connections::limit`] connections, all
//! taken from the run's one [`Connections`]: a database's connection is reused from phase
//! to phase, and no phase opens more than the limit.

use std::collections::{HashMap, HashSet};

use compute_spec::section::StatementFailure;
use postgres::Client;

use crate::connections::{parallel, Connections};
use crate::plan::{Phase, Sql, Step};

/// Statements sent in one round trip at most.
const BATCH: usize = 500;
/// Slow steps (SCRAM roles) per extra connection.
const SLOW_PER_CONNECTION: usize = 10;

/// Slow steps of `phase` per extra connection: a `CREATE DATABASE` (tens of milliseconds: it
/// copies its template through the WAL) is worth a connection of its own (a few
/// milliseconds to open), so two new databases are made side by side; other slow steps
/// (SCRAM roles) go [`SLOW_PER_CONNECTION`] to a connection.
fn slow_per_connection(phase: Phase) -> usize {
    match phase {
        Phase::CreateAndAlterDatabases => 1,
        _ => SLOW_PER_CONNECTION,
    }
}

/// What applying a plan did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Statements that ran.
    pub applied: usize,
    /// Statements that failed (one per failed step).
    pub failures: Vec<StatementFailure>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.applied += other.applied;
        self.failures.extend(other.failures);
    }

    fn fail(&mut self, step: &Step, sql: &Sql, error: String) {
        self.failures.push(StatementFailure {
            object: step.object.clone(),
            phase: step.phase.reported(),
            sql: sql.shown.clone(),
            database: step.database.clone(),
            error,
        });
    }
}

/// One unit of work: steps that run on one connection to `database`, in order.
struct Job<'s> {
    database: String,
    steps: Vec<&'s Step>,
}

/// Runs `steps` in order, on connections from `pool` (`system_db`: the system database).
pub fn apply(steps: &[Step], pool: &Connections<'_>, system_db: &str) -> Outcome {
    let concurrency = pool.limit();
    let mut outcome = Outcome::default();
    // Databases whose `CREATE DATABASE` failed.
    let mut uncreated: HashSet<String> = HashSet::new();
    let mut start = 0;
    while start < steps.len() {
        let phase = steps[start].phase;
        let end = start
            + steps[start..]
                .iter()
                .take_while(|s| s.phase == phase)
                .count();
        let all = &steps[start..end];
        let kept: Vec<Step> = if uncreated.is_empty() {
            Vec::new()
        } else {
            all.iter()
            .filter(|step| {
                let lost = uncreated.contains(&step.database);
                if lost {
                    tracing::warn!(database = %step.database, object = %step.object, "left out: the database could not be created");
                }
                !lost
            })
            .cloned()
            .collect()
        };
        let group = if uncreated.is_empty() {
            all
        } else {
            kept.as_slice()
        };
        let jobs = jobs(group, phase, concurrency);
        let began = std::time::Instant::now();
        // One span per phase, named as the plan names it.
        let mut span = stage_kit::stage::span(phase.name());
        span.set("steps", group.len());
        span.set("jobs", jobs.len());
        let failed_before = outcome.failures.len();
        if matches!(
            phase,
            Phase::DropInvalidDatabases
                | Phase::RenameAndDeleteDatabases
                | Phase::CreateAndAlterDatabases
        ) {
            pool.close_idle_except(system_db);
        }
        if phase == Phase::Settings {
            if let Ok(mut client) = pool.take(system_db) {
                reload(&mut client, group, &mut outcome);
            }
        } else if phase.parallel() && concurrency > 1 && jobs.len() > 1 {
            for done in parallel(&jobs, concurrency, |job| run_job(pool, job)) {
                outcome.merge(done);
            }
        } else {
            for job in &jobs {
                outcome.merge(run_job(pool, job));
            }
        }
        span.set("failures", outcome.failures.len() - failed_before);
        drop(span);
        tracing::debug!(
            phase = phase.name(),
            steps = group.len(),
            jobs = jobs.len(),
            ms = began.elapsed().as_millis() as u64,
            "phase applied"
        );
        for step in group {
            let failed = outcome
                .failures
                .iter()
                .any(|f| f.object == step.object && f.phase == step.phase.reported());
            if let (Some(database), true) = (&step.creates, failed) {
                uncreated.insert(database.clone());
            }
        }
        start = end;
    }
    outcome
}

const LOAD_TIME: &str = "SELECT pg_catalog.pg_conf_load_time()::pg_catalog.text";

/// Runs the reload step, then waits (up to a second) until the server has loaded the file,
/// so the catalog work that follows, and the next run, see the new settings.
fn reload(client: &mut Client, steps: &[Step], outcome: &mut Outcome) {
    let loaded = |client: &mut Client| -> Option<String> {
        client.query_one(LOAD_TIME, &[]).ok()?.try_get(0).ok()
    };
    let before = loaded(client);
    let failures = outcome.failures.len();
    for step in steps {
        run_in_transaction(client, step, outcome);
    }
    if outcome.failures.len() > failures {
        return;
    }
    for _ in 0..200 {
        if loaded(client) != before {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    tracing::warn!("the server has not reloaded postgresql.conf within a second");
}

/// Groups a phase's steps into jobs: one per database; when a parallel phase has only one
/// database and slow steps, its steps are split over several connections.
fn jobs(group: &[Step], phase: Phase, concurrency: usize) -> Vec<Job<'_>> {
    let mut jobs: Vec<Job<'_>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for step in group {
        match index.get(step.database.as_str()) {
            Some(&i) => jobs[i].steps.push(step),
            None => {
                index.insert(&step.database, jobs.len());
                jobs.push(Job {
                    database: step.database.clone(),
                    steps: vec![step],
                });
            }
        }
    }
    if !phase.parallel() || jobs.len() != 1 {
        return jobs;
    }
    let slow = group.iter().filter(|step| step.slow).count();
    let lanes = match phase {
        Phase::CreateAndAlterDatabases => crate::concurrency::copy_lanes(concurrency),
        _ => concurrency,
    };
    let split = lanes.min(slow.div_ceil(slow_per_connection(phase))).max(1);
    if split == 1 {
        return jobs;
    }
    let Some(job) = jobs.pop() else {
        return jobs;
    };
    let size = job.steps.len().div_ceil(split);
    job.steps
        .chunks(size.max(1))
        .map(|chunk| Job {
            database: job.database.clone(),
            steps: chunk.to_vec(),
        })
        .collect()
}

/// A job on a connection to its database from `pool` (while the job runs, no other job
/// has that connection: jobs of one database side by side get one each).
fn run_job(pool: &Connections<'_>, job: &Job<'_>) -> Outcome {
    let mut outcome = Outcome::default();
    match pool.take(&job.database) {
        Ok(mut client) => run_steps(&mut client, &job.steps, &mut outcome),
        Err(error) => {
            for step in &job.steps {
                if let Some(sql) = step.statements.first() {
                    outcome.fail(step, sql, error.clone());
                }
            }
        }
    }
    outcome
}

/// Runs steps on one connection: transactional runs batched, the rest one by one.
fn run_steps(client: &mut Client, steps: &[&Step], outcome: &mut Outcome) {
    let mut start = 0;
    while start < steps.len() {
        if !steps[start].transactional {
            run_each(client, steps[start], outcome);
            start += 1;
            continue;
        }
        let mut end = start;
        let mut count = 0;
        while end < steps.len() && steps[end].transactional && count < BATCH {
            count += steps[end].statements.len();
            end += 1;
        }
        let chunk = &steps[start..end];
        if chunk.len() == 1 {
            run_in_transaction(client, chunk[0], outcome);
        } else {
            let text = chunk
                .iter()
                .flat_map(|step| step.statements.iter().map(|sql| sql.text.as_str()))
                .collect::<Vec<_>>()
                .join(";\n");
            match client.batch_execute(&text) {
                Ok(()) => outcome.applied += count,
                Err(_) => {
                    for step in chunk {
                        run_in_transaction(client, step, outcome);
                    }
                }
            }
        }
        start = end;
    }
}

/// One step in its own transaction; on failure, the failing statement is reported.
fn run_in_transaction(client: &mut Client, step: &Step, outcome: &mut Outcome) {
    if let [sql] = step.statements.as_slice() {
        match client.batch_execute(&sql.text) {
            Ok(()) => outcome.applied += 1,
            Err(error) => outcome.fail(step, sql, message(&error)),
        }
        return;
    }
    let mut transaction = match client.transaction() {
        Ok(transaction) => transaction,
        Err(error) => {
            if let Some(sql) = step.statements.first() {
                outcome.fail(step, sql, message(&error));
            }
            return;
        }
    };
    for sql in &step.statements {
        if let Err(error) = transaction.batch_execute(&sql.text) {
            outcome.fail(step, sql, message(&error));
            return;
        }
    }
    match transaction.commit() {
        Ok(()) => outcome.applied += step.statements.len(),
        Err(error) => {
            if let Some(sql) = step.statements.last() {
                outcome.fail(step, sql, message(&error));
            }
        }
    }
}

/// A non-transactional step: statement by statement, stopping at the first failure.
fn run_each(client: &mut Client, step: &Step, outcome: &mut Outcome) {
    for sql in &step.statements {
        match client.batch_execute(&sql.text) {
            Ok(()) => outcome.applied += 1,
            Err(error) => {
                outcome.fail(step, sql, message(&error));
                return;
            }
        }
    }
}

/// The server's message (and detail), or the client error.
pub fn message(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(phase: Phase, object: &str, slow: bool) -> Step {
        Step {
            slow,
            ..Step::new(phase, "postgres", object.to_string(), vec![])
        }
    }

    fn split(steps: &[Step], phase: Phase, concurrency: usize) -> Vec<usize> {
        jobs(steps, phase, concurrency)
            .iter()
            .map(|job| job.steps.len())
            .collect()
    }

    #[test]
    fn new_databases_get_a_connection_each_up_to_the_concurrency() {
        let phase = Phase::CreateAndAlterDatabases;
        let two = [step(phase, "a", true), step(phase, "b", true)];
        assert_eq!(split(&two, phase, 10), [1, 1]);
        assert_eq!(split(&two, phase, 1), [2]);
        let five: Vec<Step> = (0..5).map(|i| step(phase, &i.to_string(), true)).collect();
        assert_eq!(split(&five, phase, 2), [3, 2]);
        // Only alterations (nothing slow): one connection.
        let alters = [step(phase, "a", false), step(phase, "b", false)];
        assert_eq!(split(&alters, phase, 10), [2]);
    }

    #[test]
    fn scram_roles_go_ten_to_a_connection() {
        let phase = Phase::CreateAndAlterRoles;
        let roles: Vec<Step> = (0..25).map(|i| step(phase, &i.to_string(), true)).collect();
        assert_eq!(split(&roles, phase, 10), [9, 9, 7]);
        assert_eq!(split(&roles[..2], phase, 10), [2]);
    }
}
