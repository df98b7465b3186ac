//! Catalog migrations (upstream's `neon_migration`): numbered SQL files in
//! `pg-reconcile/migrations/`, embedded at build time, applied in order once per database
//! cluster.
//!
//! Bookkeeping as upstream: schema `neon_migration` (owned by the admin user, nothing granted
//! to PUBLIC) holding `migration_id (key int4 primary key, id int8 not null default 0)` with
//! the one row `(0, n)`: `n` migrations have been applied. Migration `i` (1-based) runs in one
//! transaction with the update of `id` to `i`: a failure rolls both back, stops the run (the
//! later ones are not tried) and is retried at the next run. A file starting with `-- SKIP`
//! is a no-op that still advances the id, so a database migrated upstream and one migrated
//! here carry the same id and the same grants.
//!
//! In the files, `{privileged_role}` stands for the privileged role as a quoted identifier;
//! PL/pgSQL blocks read the name from the transaction-local setting
//! `neon_migration.privileged_role` instead, so no name is ever pasted into a block body.

use compute_spec::quote::{Ident, Literal};
pub use compute_spec::section::{FailedMigration, MigrationReport};
use postgres::Client;

/// One migration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migration {
    /// Its number: the value of `migration_id.id` once it is applied.
    pub id: i64,
    /// Its file name without `.sql` (`0001-add_bypass_rls_to_privileged_role`).
    pub name: &'static str,
    /// Its text.
    pub sql: &'static str,
}

impl Migration {
    /// Whether it is one of upstream's retired migrations (the id still advances).
    pub fn skipped(&self) -> bool {
        self.sql.starts_with("-- SKIP")
    }

    /// The text to run, with `{privileged_role}` replaced by the quoted identifier.
    pub fn render(&self, privileged_role: &str) -> String {
        self.sql
            .replace("{privileged_role}", &Ident(privileged_role).to_string())
    }
}

/// Declares the embedded migrations: `NNNN-name` per line, in order.
macro_rules! migrations {
    ($($id:literal $name:literal),* $(,)?) => {
        /// Every migration, in order (`MIGRATIONS[i].id == i + 1`).
        pub const MIGRATIONS: &[Migration] = &[$(Migration {
            id: $id,
            name: $name,
            sql: include_str!(concat!("../migrations/", $name, ".sql")),
        }),*];
    };
}

migrations! {
    1 "0001-add_bypass_rls_to_privileged_role",
    2 "0002-alter_roles",
    3 "0003-grant_pg_create_subscription_to_privileged_role",
    4 "0004-grant_pg_monitor_to_privileged_role",
    5 "0005-grant_all_on_tables_to_privileged_role",
    6 "0006-grant_all_on_sequences_to_privileged_role",
    7 "0007-grant_all_on_tables_with_grant_option_to_privileged_role",
    8 "0008-grant_all_on_sequences_with_grant_option_to_privileged_role",
    9 "0009-revoke_replication_for_previously_allowed_roles",
    10 "0010-grant_snapshot_synchronization_funcs_to_privileged_role",
    11 "0011-grant_pg_show_replication_origin_status_to_privileged_role",
    12 "0012-grant_pg_signal_backend_to_privileged_role",
}

/// The migrations after `current` (the value of `migration_id.id`).
pub fn pending(current: i64) -> &'static [Migration] {
    let done = usize::try_from(current.max(0)).unwrap_or(usize::MAX);
    MIGRATIONS.get(done..).unwrap_or_default()
}

const READ_ID: &str = "SELECT id FROM neon_migration.migration_id \
     WHERE key OPERATOR(pg_catalog.=) 0";

/// `migration_id.id`, 0 when the table (or its row) does not exist yet.
pub fn current_id(client: &mut Client) -> Result<i64, postgres::Error> {
    let exists = client.query_one(
        "SELECT pg_catalog.to_regclass('neon_migration.migration_id') IS NOT NULL",
        &[],
    )?;
    if !exists.get::<_, bool>(0) {
        return Ok(0);
    }
    Ok(client
        .query_opt(READ_ID, &[])?
        .map_or(0, |row| row.get::<_, i64>(0)))
}

/// Creates the bookkeeping schema and table when missing, owned by `admin_user`.
fn ensure_bookkeeping(client: &mut Client, admin_user: &str) -> Result<(), postgres::Error> {
    client.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS neon_migration;\n\
         CREATE TABLE IF NOT EXISTS neon_migration.migration_id (\
             key pg_catalog.int4 NOT NULL PRIMARY KEY, \
             id pg_catalog.int8 NOT NULL DEFAULT 0);\n\
         INSERT INTO neon_migration.migration_id VALUES (0, 0) ON CONFLICT DO NOTHING;\n\
         ALTER SCHEMA neon_migration OWNER TO {};\n\
         REVOKE ALL ON SCHEMA neon_migration FROM PUBLIC",
        Ident(admin_user)
    ))
}

/// Applies the pending migrations through `client` (connected to the system database as
/// the admin user), each in its own transaction, stopping at the first failure. Errors are
/// failures of the bookkeeping itself; a failed migration is in the report.
pub fn run(
    client: &mut Client,
    admin_user: &str,
    privileged_role: &str,
) -> Result<MigrationReport, postgres::Error> {
    ensure_bookkeeping(client, admin_user)?;
    let from = current_id(client)?;
    let mut report = MigrationReport {
        from,
        to: from,
        ..Default::default()
    };
    for migration in pending(from) {
        match apply_one(client, migration, privileged_role) {
            Ok(()) => {
                tracing::info!(
                    id = migration.id,
                    name = migration.name,
                    skipped = migration.skipped(),
                    "migration applied"
                );
                report.to = migration.id;
                report.applied.push(migration.name.to_string());
            }
            Err(error) => {
                let error = crate::apply::message(&error);
                tracing::error!(
                    id = migration.id,
                    name = migration.name,
                    %error,
                    "migration failed and was rolled back; it is retried at the next start"
                );
                report.failed = Some(FailedMigration {
                    id: migration.id,
                    name: migration.name.to_string(),
                    error,
                });
                break;
            }
        }
    }
    report.pending = names(pending(report.to));
    Ok(report)
}

/// What [`run`] would do, without changing anything.
pub fn dry_run(client: &mut Client) -> Result<MigrationReport, postgres::Error> {
    let from = current_id(client)?;
    Ok(MigrationReport {
        from,
        to: from,
        pending: names(pending(from)),
        ..Default::default()
    })
}

fn names(migrations: &[Migration]) -> Vec<String> {
    migrations.iter().map(|m| m.name.to_string()).collect()
}

/// One migration and the id update, in one transaction.
fn apply_one(
    client: &mut Client,
    migration: &Migration,
    privileged_role: &str,
) -> Result<(), postgres::Error> {
    let mut transaction = client.transaction()?;
    transaction.batch_execute(&format!(
        "SELECT pg_catalog.set_config('neon_migration.privileged_role', {}, true)",
        Literal(privileged_role)
    ))?;
    if !migration.skipped() {
        transaction.batch_execute(&migration.render(privileged_role))?;
    }
    transaction.execute(
        "UPDATE neon_migration.migration_id SET id = $1 WHERE key OPERATOR(pg_catalog.=) 0",
        &[&migration.id],
    )?;
    transaction.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_match_the_directory() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.id, index as i64 + 1, "{}", migration.name);
            assert!(
                migration.name.starts_with(&format!("{:04}-", migration.id)),
                "{}",
                migration.name
            );
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{}.sql", m.name))
            .collect();
        assert_eq!(
            files, listed,
            "every file in migrations/ is listed, in order"
        );
    }

    #[test]
    fn skipped_ones_are_upstreams() {
        let skipped: Vec<i64> = MIGRATIONS
            .iter()
            .filter(|m| m.skipped())
            .map(|m| m.id)
            .collect();
        assert_eq!(skipped, [5, 6, 7, 8, 9]);
    }

    #[test]
    fn the_role_is_quoted_where_it_is_substituted() {
        let sql = MIGRATIONS[0].render("a\"b");
        assert!(sql.contains("ALTER ROLE \"a\"\"b\" BYPASSRLS"), "{sql}");
        for migration in MIGRATIONS {
            assert!(!migration.render("x").contains('{'), "{}", migration.name);
        }
    }

    #[test]
    fn pending_is_what_follows_the_id() {
        assert_eq!(pending(0).len(), 12);
        assert_eq!(pending(7).first().map(|m| m.id), Some(8));
        assert!(pending(12).is_empty());
        assert!(pending(40).is_empty());
        assert_eq!(pending(-3).len(), 12);
    }
}
