//! Logical-replication subscriptions: the drop before a `delete_db` delta, and upstream's
//! `drop_subscriptions_before_start` — once per timeline, every subscription of every spec
//! database that exists, accepts connections and is valid (not the system database) is
//! disabled, detached from its slot (`slot_name = NONE`: the publisher's slot is left alone)
//! and dropped, under an exclusive lock of `pg_subscription` (as upstream); then the timeline
//! is recorded in `neon.drop_subscriptions_done`.
//!
//! The record is written only when no subscription is left in those databases (the
//! statement checks), so a failed drop is retried by the next run instead of being
//! recorded as done. Until the timeline is recorded, `postgresql.conf` keeps
//! `neon.disable_logical_replication_subscribers=true`; afterwards every run writes `false`
//! (see `compute_spec::pgconf::render_with`), so subscribers are never left disabled.

use std::collections::BTreeSet;

use compute_spec::quote::quote_literal;
use compute_spec::spec::{ComputeSpec, DeltaAction};
use postgres::Client;

use crate::plan::{Phase, PlanContext, Sql, Step};
use crate::snapshot::Snapshot;
use crate::sql::ident;

/// The table that records the timelines whose subscriptions were dropped.
pub const DONE_TABLE: &str = "neon.drop_subscriptions_done";

/// Taken first in each database's drop transaction.
pub const LOCK: &str = "LOCK TABLE pg_catalog.pg_subscription IN ACCESS EXCLUSIVE MODE";

/// The timeline `drop_subscriptions_before_start` is about: the spec's `timeline_id`, else
/// its `neon.timeline_id` setting.
pub fn timeline_of(spec: &ComputeSpec) -> Option<String> {
    spec.timeline_id
        .map(|id| id.to_string())
        .or_else(|| spec.setting("neon.timeline_id").map(str::to_string))
}

/// Whether `timeline` is recorded in [`DONE_TABLE`] (a missing schema or table: no).
pub fn done_for(client: &mut Client, timeline: &str) -> Result<bool, postgres::Error> {
    let exists: bool = client
        .query_one(
            "SELECT pg_catalog.to_regclass('neon.drop_subscriptions_done') IS NOT NULL",
            &[],
        )?
        .try_get(0)?;
    if !exists {
        return Ok(false);
    }
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {DONE_TABLE} \
         WHERE timeline_id OPERATOR(pg_catalog.=) $1::pg_catalog.text)"
    );
    client.query_one(sql.as_str(), &[&timeline])?.try_get(0)
}

/// The spec databases whose subscriptions `drop_subscriptions_before_start` drops.
fn before_start_targets(
    spec: &ComputeSpec,
    context: &PlanContext,
    snapshot: &Snapshot,
) -> Vec<String> {
    spec.cluster
        .databases
        .iter()
        .map(|db| db.name.clone())
        .filter(|name| *name != context.system_db)
        .filter(|name| {
            snapshot
                .databases
                .get(name)
                .is_some_and(|db| db.allow_conn && !db.invalid)
        })
        .collect()
}

/// The drop steps (phase `drop_subscriptions`): the databases `delete_db` deltas drop, then,
/// when `context.drop_subscriptions_for` is set, every target of the drop before start.
pub fn drop_steps(spec: &ComputeSpec, context: &PlanContext, snapshot: &Snapshot) -> Vec<Step> {
    let mut targets: Vec<String> = spec
        .delta_operations
        .iter()
        .flatten()
        .filter(|op| op.action == DeltaAction::DeleteDb)
        .map(|op| op.name.clone())
        .filter(|name| *name != context.system_db)
        .collect();
    if context.drop_subscriptions_for.is_some() {
        targets.extend(before_start_targets(spec, context, snapshot));
    }
    let mut seen = BTreeSet::new();
    let mut steps = Vec::new();
    for target in targets {
        if !seen.insert(target.clone()) {
            continue;
        }
        let mut statements: Vec<Sql> = snapshot
            .subscriptions
            .iter()
            .filter(|(database, _)| *database == target)
            .flat_map(|(_, name)| {
                let name = ident(name);
                [
                    Sql::destructive(format!("ALTER SUBSCRIPTION {name} DISABLE")),
                    Sql::destructive(format!("ALTER SUBSCRIPTION {name} SET (slot_name = NONE)")),
                    Sql::destructive(format!("DROP SUBSCRIPTION {name}")),
                ]
            })
            .collect();
        if !statements.is_empty() {
            // As upstream: no subscription may appear or change while the drop runs.
            statements.insert(0, Sql::new(LOCK.to_string()));
            steps.push(Step::new(
                Phase::DropSubscriptions,
                &target,
                format!("database {}", ident(&target)),
                statements,
            ));
        }
    }
    steps
}

/// The step recording the drop for the timeline (phase `finalize_drop_subscriptions`, in
/// the system database), when one is due. It writes the row only if no subscription is
/// left in the target databases.
pub fn finalize_step(
    spec: &ComputeSpec,
    context: &PlanContext,
    snapshot: &Snapshot,
) -> Option<Step> {
    let timeline = context.drop_subscriptions_for.as_deref()?;
    let targets: Vec<String> = before_start_targets(spec, context, snapshot)
        .iter()
        .map(|name| quote_literal(name))
        .collect();
    let left = if targets.is_empty() {
        String::new()
    } else {
        format!(
            " WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_subscription s \
             JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.subdbid \
             WHERE d.datname::pg_catalog.text OPERATOR(pg_catalog.=) \
             ANY (ARRAY[{}]::pg_catalog.text[]))",
            targets.join(", ")
        )
    };
    let statements = vec![
        Sql::new("CREATE SCHEMA IF NOT EXISTS neon".to_string()),
        Sql::new(format!(
            "CREATE TABLE IF NOT EXISTS {DONE_TABLE} (id pg_catalog.int4 GENERATED BY DEFAULT \
             AS IDENTITY PRIMARY KEY, timeline_id pg_catalog.text)"
        )),
        Sql::new(format!(
            "INSERT INTO {DONE_TABLE} (id, timeline_id) SELECT 1, {}{left} \
             ON CONFLICT (id) DO UPDATE SET timeline_id = EXCLUDED.timeline_id",
            quote_literal(timeline)
        )),
    ];
    Some(Step::new(
        Phase::FinalizeDropSubscriptions,
        &context.system_db,
        "drop_subscriptions_before_start".to_string(),
        statements,
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::snapshot::ExistingDatabase;

    fn context(due: Option<&str>) -> PlanContext {
        PlanContext {
            privileged_role: "neon_superuser".into(),
            admin_user: "cloud_admin".into(),
            system_db: "postgres".into(),
            reload: false,
            drop_subscriptions_for: due.map(str::to_string),
        }
    }

    fn shown(steps: &[Step]) -> Vec<(&str, &str, &str)> {
        steps
            .iter()
            .flat_map(|step| {
                step.statements.iter().map(|sql| {
                    (
                        step.phase.name(),
                        step.database.as_str(),
                        sql.shown.as_str(),
                    )
                })
            })
            .collect()
    }

    #[test]
    fn before_start_targets_connectable_spec_databases_then_records() {
        let spec: ComputeSpec = serde_json::from_value(json!({
            "format_version": 1.0,
            "cluster": {"roles": [], "databases": [
                {"name": "app", "owner": "x"}, {"name": "closed", "owner": "x"},
                {"name": "postgres", "owner": "cloud_admin"}]},
        }))
        .unwrap();
        let mut snapshot = Snapshot::default();
        for name in ["app", "closed", "other", "postgres"] {
            let database = ExistingDatabase {
                allow_conn: name != "closed",
                ..Default::default()
            };
            snapshot.databases.insert(name.into(), database);
        }
        for (database, name) in [
            ("app", "s1"),
            ("closed", "s2"),
            ("other", "s3"),
            ("postgres", "s4"),
        ] {
            snapshot.subscriptions.push((database.into(), name.into()));
        }
        let due = context(Some("tl1"));
        assert_eq!(
            shown(&drop_steps(&spec, &due, &snapshot)),
            [
                ("drop_subscriptions", "app", LOCK),
                (
                    "drop_subscriptions",
                    "app",
                    "ALTER SUBSCRIPTION \"s1\" DISABLE"
                ),
                (
                    "drop_subscriptions",
                    "app",
                    "ALTER SUBSCRIPTION \"s1\" SET (slot_name = NONE)"
                ),
                ("drop_subscriptions", "app", "DROP SUBSCRIPTION \"s1\""),
            ]
        );
        let finalize = finalize_step(&spec, &due, &snapshot).unwrap();
        assert_eq!(finalize.phase, Phase::FinalizeDropSubscriptions);
        assert_eq!(finalize.database, "postgres");
        let insert = &finalize.statements[2].shown;
        assert!(
            insert.contains("SELECT 1, 'tl1' WHERE NOT EXISTS"),
            "{insert}"
        );
        assert!(insert.contains("ARRAY['app']"), "{insert}");
        // Not due (recorded already, or not asked for): no drop, no record.
        let not_due = context(None);
        assert!(drop_steps(&spec, &not_due, &snapshot).is_empty());
        assert!(finalize_step(&spec, &not_due, &snapshot).is_none());
    }
}
