//! `pg_reconcile::reconfigure` on a real Postgres: the whole `postgresql.conf` re-rendered
//! from the new spec (byte for byte what a start renders), reloaded and read back; values
//! Postgres refuses restore the previous file; the temporary override; and
//! `drop_subscriptions_before_start` against a real publication on a second server.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::common;
use crate::common::{column, empty_document, show};
use compute_spec::pgconf;
use compute_spec::section::{ReconcileSection, SettingOutcome};
use compute_spec::spec::ComputeSpec;
use compute_spec::ComputeDocument;
use pg_reconcile::{reconfigure, startup, Options};
use pg_test_support::TestPostgres;
use serde_json::{json, Value};

/// A spec with `conf` lines after the server's own, plus `extra` top-level fields.
fn spec_with(pg: &TestPostgres, conf: &str, extra: Value) -> ComputeSpec {
    let mut value = json!({
        "format_version": 1.0,
        "cluster": {
            "roles": [], "databases": [],
            "postgresql_conf": format!("{}{conf}", pg.server_conf()),
        },
    });
    if let (Some(value), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
        value.extend(extra.clone());
    }
    serde_json::from_value(value).unwrap()
}

fn document(pg: &TestPostgres, spec: &ComputeSpec) -> ComputeDocument {
    let mut doc = empty_document(pg);
    doc.spec = Some(spec.clone());
    doc
}

fn run(pg: &TestPostgres, spec: &ComputeSpec) -> ReconcileSection {
    let section = reconfigure(&document(pg, spec), &Options::default()).unwrap();
    assert!(section.failures.is_empty(), "{:#?}", section.failures);
    section
}

fn conf_text(pg: &TestPostgres) -> String {
    std::fs::read_to_string(pg.data_dir().join("postgresql.conf")).unwrap()
}

/// What a fresh start (`pg-basebackup-fetch` from an initdb source) writes for `spec`.
fn fresh_start(pg: &TestPostgres, spec: &ComputeSpec) -> String {
    let doc = document(pg, spec);
    pgconf::render(spec, &pgconf::params_for_start(&doc, spec)).unwrap()
}

/// What the real start stage writes: `pg-basebackup-fetch` (initdb source) into a scratch
/// PGDATA, for the same instance and spec.
fn fresh_start_by_the_stage(pg: &TestPostgres, spec: &ComputeSpec) -> String {
    let dir = pg_test_support::TestDir::new("fresh-");
    let mut doc = document(pg, spec);
    doc.pgdata = dir.path().join("pgdata");
    let output = pg_test_support::run_with_stdin(
        common::workspace_bin("pg-basebackup-fetch"),
        &[],
        &serde_json::to_string(&doc).unwrap(),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(doc.pgdata.join("postgresql.conf")).unwrap()
}

fn outcome<'a>(
    section: &'a ReconcileSection,
    name: &str,
) -> &'a compute_spec::section::SettingChange {
    section
        .settings
        .iter()
        .find(|change| change.name == name)
        .unwrap_or_else(|| panic!("{name} not reported: {:#?}", section.settings))
}

#[test]
fn a_new_line_a_restart_setting_and_the_pageserver_change_live() {
    let pg = TestPostgres::start();
    let base = spec_with(&pg, "", json!({}));
    let first = run(&pg, &base);
    assert!(first.conf_changed);
    assert!(
        first
            .settings
            .iter()
            .all(|c| c.outcome != SettingOutcome::Rejected),
        "{:#?}",
        first.settings
    );
    assert_eq!(conf_text(&pg), fresh_start(&pg, &base));
    assert!(
        !run(&pg, &base).conf_changed,
        "the same spec changes nothing"
    );

    // A new postgresql_conf line: live at once, no restart.
    let timeout = spec_with(&pg, "statement_timeout = 12345\n", json!({}));
    let section = run(&pg, &timeout);
    let change = outcome(&section, "statement_timeout");
    assert_eq!(change.outcome, SettingOutcome::Applied);
    assert_eq!(change.value.as_deref(), Some("12345"));
    assert_eq!(show(&pg, "statement_timeout"), "12345ms");
    assert_eq!(conf_text(&pg), fresh_start(&pg, &timeout));
    assert_eq!(conf_text(&pg), fresh_start_by_the_stage(&pg, &timeout));

    // The pageserver connection string and the safekeepers (SIGHUP GUCs upstream).
    let storage = |connstring: &str| {
        spec_with(
            &pg,
            "statement_timeout = 12345\n",
            json!({"pageserver_connstring": connstring,
                   "safekeeper_connstrings": ["sk1:5454", "sk2:5454"]}),
        )
    };
    let one = storage("host=ps1 port=6400");
    run(&pg, &one);
    assert_eq!(
        show(&pg, "neon.pageserver_connstring"),
        "host=ps1 port=6400"
    );
    assert_eq!(show(&pg, "neon.safekeepers"), "sk1:5454,sk2:5454");
    let two = storage("host=ps2 port=6401");
    let section = run(&pg, &two);
    assert_eq!(
        outcome(&section, "neon.pageserver_connstring")
            .live
            .as_deref(),
        Some("host=ps2 port=6401")
    );
    assert_eq!(
        show(&pg, "neon.pageserver_connstring"),
        "host=ps2 port=6401"
    );
    assert_eq!(conf_text(&pg), fresh_start(&pg, &two));
    // Sharded: the stripe size comes with the second shard, live too.
    let mut sharded = storage("host=ps2 port=6401,host=ps3 port=6402");
    sharded.shard_stripe_size = Some(2048);
    let section = run(&pg, &sharded);
    assert_eq!(
        outcome(&section, "neon.stripe_size").outcome,
        SettingOutcome::Applied
    );
    assert_eq!(show(&pg, "neon.stripe_size"), "2048");
    assert_eq!(
        show(&pg, "neon.pageserver_connstring"),
        "host=ps2 port=6401,host=ps3 port=6402"
    );
    assert_eq!(conf_text(&pg), fresh_start(&pg, &sharded));

    // A restart-only setting: reported, the old value kept, the file as a start writes it.
    let more = spec_with(
        &pg,
        "statement_timeout = 12345\nmax_connections = 61\n",
        json!({}),
    );
    let section = run(&pg, &more);
    let change = outcome(&section, "max_connections");
    assert_eq!(change.outcome, SettingOutcome::PendingRestart);
    assert_eq!(show(&pg, "max_connections"), "50");
    assert_eq!(conf_text(&pg), fresh_start(&pg, &more));
    // Removing it again is applied (nothing pending any more).
    let section = run(&pg, &timeout);
    assert_eq!(
        outcome(&section, "max_connections").outcome,
        SettingOutcome::Applied
    );
}

/// A restart-only setting in effect whose line the new spec drops: Postgres names it on a
/// row without a name and applies the rest of the file, so it is pending a restart, not a
/// refused file (a promotion drops a replica's `hot_standby` this way).
#[test]
fn removing_a_restart_only_line_is_pending_restart() {
    let pg = TestPostgres::start();
    let without: String = pg
        .server_conf()
        .lines()
        .filter(|line| !line.starts_with("max_connections"))
        .map(|line| format!("{line}\n"))
        .collect();
    let spec: ComputeSpec = serde_json::from_value(json!({
        "format_version": 1.0,
        "cluster": {"roles": [], "databases": [], "postgresql_conf": without},
    }))
    .unwrap();
    let section = run(&pg, &spec);
    assert_eq!(
        outcome(&section, "max_connections").outcome,
        SettingOutcome::PendingRestart,
        "{:#?}",
        section.settings
    );
    assert_eq!(show(&pg, "max_connections"), "50");
    assert_eq!(conf_text(&pg), fresh_start(&pg, &spec));
}

#[test]
fn a_refused_value_restores_the_previous_file() {
    let pg = TestPostgres::start();
    let good = spec_with(&pg, "statement_timeout = 2000\n", json!({}));
    run(&pg, &good);
    let before = conf_text(&pg);
    for (line, message) in [
        (
            "statement_timeout = 'abc'\nwork_mem = '7MB'\n",
            "invalid value for parameter \"statement_timeout\": \"abc\"",
        ),
        (
            "no_such_setting = 1\n",
            "unrecognized configuration parameter \"no_such_setting\"",
        ),
    ] {
        let bad = spec_with(&pg, line, json!({}));
        let error = reconfigure(&document(&pg, &bad), &Options::default()).unwrap_err();
        assert_eq!(error.kind, compute_spec::error::ErrorKind::InvalidSpec);
        assert!(error.message.contains(message), "{}", error.message);
        assert!(
            error.message.contains("the previous file was restored"),
            "{}",
            error.message
        );
        assert_eq!(conf_text(&pg), before, "the previous file is back");
        assert_eq!(show(&pg, "statement_timeout"), "2s");
        assert_eq!(
            show(&pg, "work_mem"),
            "4MB",
            "nothing of the bad file stays live"
        );
    }
}

#[test]
fn a_file_postgres_ignores_whole_is_not_written_over() {
    let pg = TestPostgres::start();
    let good = spec_with(&pg, "statement_timeout = 2000\n", json!({}));
    run(&pg, &good);
    let before = conf_text(&pg);
    // A line this spec does not own makes Postgres ignore every file on reload.
    let auto = pg.data_dir().join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&auto).unwrap();
    text.push_str("stray_setting = 1\n");
    std::fs::write(&auto, text).unwrap();
    let next = spec_with(&pg, "statement_timeout = 3000\n", json!({}));
    let error = reconfigure(&document(&pg, &next), &Options::default()).unwrap_err();
    assert!(error.message.contains("stray_setting"), "{}", error.message);
    assert_eq!(conf_text(&pg), before);
    assert_eq!(show(&pg, "statement_timeout"), "2s");
}

#[test]
fn roles_and_settings_together_and_the_override_is_emptied_after() {
    let pg = TestPostgres::start();
    let mut wanted = spec_with(&pg, "", json!({}));
    wanted.cluster.roles = serde_json::from_value(json!([
        {"name": "alice", "encrypted_password": common::SCRAM}
    ]))
    .unwrap();
    wanted.cluster.settings = Some(
        serde_json::from_value(json!([{"name": "work_mem", "value": "6MB", "vartype": "string"}]))
            .unwrap(),
    );
    let section = run(&pg, &wanted);
    assert_eq!(
        outcome(&section, "work_mem").outcome,
        SettingOutcome::Applied
    );
    assert_eq!(show(&pg, "work_mem"), "6MB");
    assert_eq!(
        column(
            &pg,
            "postgres",
            "SELECT rolname::text FROM pg_roles WHERE rolname = 'alice'"
        ),
        ["alice"]
    );
    assert_eq!(conf_text(&pg), fresh_start(&pg, &wanted));
    let override_file = pg.data_dir().join(pgconf::TEMP_OVERRIDE_FILE);
    assert_eq!(std::fs::read_to_string(&override_file).unwrap(), "");

    // A failing apply empties the override and reloads too: -1 is not left live.
    let mut failing = wanted.clone();
    failing.cluster.databases =
        serde_json::from_value(json!([{"name": "orphan", "owner": "nobody_here"}])).unwrap();
    let section = reconfigure(&document(&pg, &failing), &Options::default()).unwrap();
    assert_eq!(section.failures.len(), 1, "{:#?}", section.failures);
    assert_eq!(std::fs::read_to_string(&override_file).unwrap(), "");
    let live: Option<String> = pg
        .client()
        .query_one(
            "SELECT pg_catalog.current_setting('neon.max_cluster_size', true)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_ne!(live.as_deref(), Some("-1"));
}

const TIMELINE: &str = "de200bd42b49cc1814412c7e592dd6e9";
const OTHER_TIMELINE: &str = "0123456789abcdef0123456789abcdef";

fn subscriptions(pg: &TestPostgres) -> Vec<String> {
    column(
        pg,
        "postgres",
        "SELECT subname::text FROM pg_catalog.pg_subscription ORDER BY 1",
    )
}

fn subscribe(compute: &TestPostgres, publisher: &TestPostgres, name: &str) {
    let connection = format!(
        "host={} port={} dbname=postgres user={}",
        publisher.socket_dir().display(),
        publisher.port(),
        publisher.superuser()
    );
    compute
        .client_for("app")
        .batch_execute(&format!(
            "CREATE SUBSCRIPTION {name} CONNECTION '{connection}' PUBLICATION pub"
        ))
        .unwrap();
}

#[test]
fn drop_subscriptions_before_start_once_per_timeline() {
    let publisher = TestPostgres::builder()
        .setting("wal_level", "logical")
        .start();
    publisher
        .client()
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION pub FOR TABLE t")
        .unwrap();
    let compute = TestPostgres::start();
    compute
        .client()
        .batch_execute("CREATE DATABASE app")
        .unwrap();
    compute
        .client_for("app")
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .unwrap();
    subscribe(&compute, &publisher, "sub");
    assert_eq!(subscriptions(&compute), ["sub"]);

    let spec_for = |timeline: &str| {
        spec_with(
            &compute,
            "",
            json!({"drop_subscriptions_before_start": true, "timeline_id": timeline}),
        )
    };
    let mut wanted = spec_for(TIMELINE);
    wanted.cluster.databases =
        serde_json::from_value(json!([{"name": "app", "owner": "cloud_admin"}])).unwrap();
    // A start: the file as pg-basebackup-fetch writes it (subscribers disabled), then the
    // start-up reconcile drops, records and enables the subscribers again.
    let conf = compute.data_dir().join("postgresql.conf");
    std::fs::write(&conf, fresh_start(&compute, &wanted)).unwrap();
    assert!(conf_text(&compute).contains(&pgconf::subscribers_line(true)));
    let section = startup(&document(&compute, &wanted), &Options::default()).unwrap();
    assert!(section.failures.is_empty(), "{:#?}", section.failures);
    assert!(
        section
            .plan
            .iter()
            .any(|p| p.sql == "DROP SUBSCRIPTION \"sub\"" && p.database == "app"),
        "{:#?}",
        section.plan
    );
    assert!(subscriptions(&compute).is_empty());
    assert_eq!(
        column(
            &compute,
            "postgres",
            "SELECT timeline_id FROM neon.drop_subscriptions_done"
        ),
        [TIMELINE]
    );
    // The publisher's slot is left alone (slot_name = NONE before the drop).
    assert_eq!(
        column(
            &publisher,
            "postgres",
            "SELECT slot_name::text FROM pg_replication_slots"
        ),
        ["sub"]
    );
    let doc = document(&compute, &wanted);
    let enabled =
        pgconf::render_with(&wanted, &pgconf::params_for_start(&doc, &wanted), true).unwrap();
    assert_eq!(conf_text(&compute), enabled, "subscribers enabled again");
    assert_eq!(show(&compute, pgconf::SUBSCRIBERS_SETTING), "false");

    // Once per timeline: a subscription made afterwards survives a reconfiguration, and
    // the file keeps the subscribers enabled.
    subscribe(&compute, &publisher, "later");
    let section = run(&compute, &wanted);
    assert!(section
        .plan
        .iter()
        .all(|p| p.phase.as_str() != "drop_subscriptions"));
    assert_eq!(subscriptions(&compute), ["later"]);
    assert_eq!(conf_text(&compute), enabled);

    // A new timeline drops again, on reconfiguration too, and ends enabled.
    let mut next = spec_for(OTHER_TIMELINE);
    next.cluster.databases = wanted.cluster.databases.clone();
    run(&compute, &next);
    assert!(subscriptions(&compute).is_empty());
    assert_eq!(
        column(
            &compute,
            "postgres",
            "SELECT timeline_id FROM neon.drop_subscriptions_done"
        ),
        [OTHER_TIMELINE]
    );
    assert!(conf_text(&compute).contains(&pgconf::subscribers_line(false)));
    assert_eq!(show(&compute, pgconf::SUBSCRIBERS_SETTING), "false");
}
