//! The background `ALTER EXTENSION neon UPDATE` after a primary's start (upstream §3.3, §4.7):
//! it runs after every primary start, with or without `skip_pg_catalog_updates` (with it,
//! this is the only catalog change a start makes), never on `/configure`, never on a
//! replica or a static compute.
//!
//! Its own connection to the system database (`application_name =
//! compute_ctl:post_apply_config`, as upstream) on a thread of its own; errors are logged,
//! never fatal. Where upstream runs the statement blindly (and logs the error on a server
//! without `neon`), it runs only when the server has the extension installed
//! ([`decide`]): on vanilla Postgres one log line says it is skipped.

use compute_spec::spec::ComputeMode;
use compute_spec::ComputeDocument;
use stage_kit::local::Limits;

use crate::CatalogError;

/// The connection's `application_name` (upstream's).
pub const APPLICATION_NAME: &str = "compute_ctl:post_apply_config";

/// The update: 5 min per statement, 30 s per lock wait (the extension's objects in use), a
/// cancel request after 310 s.
pub const LIMITS: Limits = Limits::seconds(300, 30, 310);

/// The statement run.
pub const STATEMENT: &str = "ALTER EXTENSION neon UPDATE";

/// What the update does on a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// `neon` is installed: update it to its default version.
    Update,
    /// The server has no `neon` extension (vanilla Postgres): nothing to do.
    NotAvailable,
    /// `neon` is available but not created in the system database (a start with
    /// `skip_pg_catalog_updates` on a fresh database): nothing to update.
    NotInstalled,
}

/// The decision from `pg_available_extensions` (`available`) and `pg_extension`
/// (`installed`).
pub fn decide(available: bool, installed: bool) -> Decision {
    match (available, installed) {
        (_, true) => Decision::Update,
        (true, false) => Decision::NotInstalled,
        (false, false) => Decision::NotAvailable,
    }
}

/// Whether a start of `document` is followed by the update: a primary.
pub fn wanted(document: &ComputeDocument) -> bool {
    document
        .spec
        .as_ref()
        .is_some_and(|spec| spec.mode == ComputeMode::Primary)
}

/// Starts the update on a thread of its own when [`wanted`].
pub fn spawn(document: &ComputeDocument) {
    if !wanted(document) {
        return;
    }
    let document = document.clone();
    let started = std::thread::Builder::new()
        .name("neon-update".into())
        .spawn(move || {
            if let Err(error) = run(&document) {
                tracing::error!(%error, "ALTER EXTENSION neon UPDATE failed");
            }
        });
    if let Err(error) = started {
        tracing::error!(%error, "cannot start the neon extension update");
    }
}

/// Reads the decision's inputs and acts on it; what it decided.
pub fn run(document: &ComputeDocument) -> Result<Decision, CatalogError> {
    let mut session = crate::connect(document, APPLICATION_NAME, None, LIMITS)?;
    let row = session
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_available_extensions \
             WHERE name OPERATOR(pg_catalog.=) 'neon'), \
             EXISTS (SELECT FROM pg_catalog.pg_extension \
             WHERE extname OPERATOR(pg_catalog.=) 'neon')",
            &[],
        )
        .map_err(|error| CatalogError::Read {
            what: "reading whether the neon extension exists".into(),
            message: session.describe(&error),
        })?;
    let decision = decide(row.get(0), row.get(1));
    match decision {
        Decision::NotAvailable => tracing::info!(
            "the neon extension is not available (vanilla Postgres): its update is skipped"
        ),
        Decision::NotInstalled => {
            tracing::info!("the neon extension is available but not installed: nothing to update")
        }
        Decision::Update => {
            crate::execute(&mut session, STATEMENT.to_string())?;
            tracing::info!("the neon extension is up to date");
        }
    }
    Ok(decision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_installed_neon_is_updated() {
        assert_eq!(decide(true, true), Decision::Update);
        assert_eq!(decide(true, false), Decision::NotInstalled);
        assert_eq!(decide(false, false), Decision::NotAvailable);
        // Installed but its control file gone: the update names the problem in the log.
        assert_eq!(decide(false, true), Decision::Update);
    }

    /// A document for `server` (a stand-in at `/nonexistent` for `None`) with `spec`.
    fn document_for(
        server: Option<&pg_test_support::TestPostgres>,
        spec: serde_json::Value,
    ) -> ComputeDocument {
        let (bin, data, port, user) = match server {
            Some(server) => (
                server.bin_dir().to_path_buf(),
                server.data_dir().to_path_buf(),
                server.port(),
                server.superuser().to_string(),
            ),
            None => (
                "/usr/bin".into(),
                "/nonexistent".into(),
                5432,
                "cloud_admin".into(),
            ),
        };
        serde_json::from_value(serde_json::json!({
            "document_version": 1,
            "spec": spec,
            "pgdata": data,
            "pgbin": bin.join("postgres"),
            "connstr": format!("postgresql://{user}@localhost/postgres"),
            "instance": {"port": port, "socket_dir": server.map_or(data.clone(), |server| server.socket_dir().to_path_buf())},
        }))
        .unwrap()
    }

    #[test]
    fn only_a_primary_updates() {
        let document = |mode: serde_json::Value| {
            let spec = serde_json::json!({
                "format_version": 1.0,
                "cluster": {"roles": [], "databases": []},
                "mode": mode,
            });
            document_for(None, spec)
        };
        assert!(wanted(&document(serde_json::json!("Primary"))));
        assert!(!wanted(&document(serde_json::json!("Replica"))));
        let mut skip = document(serde_json::json!("Primary"));
        if let Some(spec) = skip.spec.as_mut() {
            spec.skip_pg_catalog_updates = true;
        }
        assert!(wanted(&skip), "skip_pg_catalog_updates still updates neon");
    }

    /// A server logging every statement.
    fn logging_statements() -> pg_test_support::TestPostgresBuilder {
        pg_test_support::TestPostgres::builder()
            .setting("log_min_messages", "log")
            .setting("log_statement", "all")
            .setting("log_line_prefix", "app=%a ")
    }

    fn run_on(server: &pg_test_support::TestPostgres) -> Result<Decision, CatalogError> {
        let spec =
            serde_json::json!({"format_version": 1.0, "cluster": {"roles": [], "databases": []}});
        run(&document_for(Some(server), spec))
    }

    fn server_log(server: &pg_test_support::TestPostgres) -> String {
        std::fs::read_to_string(server.dir().join("postgres.log")).unwrap()
    }

    fn neon_version(server: &pg_test_support::TestPostgres) -> Option<String> {
        server
            .client()
            .query_opt(
                "SELECT extversion FROM pg_catalog.pg_extension \
                 WHERE extname OPERATOR(pg_catalog.=) 'neon'",
                &[],
            )
            .unwrap()
            .map(|row| row.get(0))
    }

    #[test]
    fn vanilla_postgres_skips_and_runs_nothing() {
        let server = logging_statements().start();
        assert_eq!(run_on(&server), Ok(Decision::NotAvailable));
        let log = server_log(&server);
        assert!(log.contains("pg_available_extensions"), "{log}");
        assert!(!log.contains("ALTER EXTENSION"), "{log}");
    }

    /// A stand-in `neon` extension (versions 1.0 and 1.1, default 1.1) in the server's
    /// private extension directory.
    fn with_fake_neon() -> pg_test_support::TestPostgres {
        logging_statements().neon_stand_in(true).start()
    }

    #[test]
    fn an_installed_neon_is_updated_on_its_own_connection() {
        let server = with_fake_neon();
        assert_eq!(run_on(&server), Ok(Decision::NotInstalled));
        assert_eq!(neon_version(&server), None, "nothing was created");
        assert!(!server_log(&server).contains("ALTER EXTENSION"));

        server.psql("CREATE EXTENSION neon VERSION '1.0'");
        assert_eq!(neon_version(&server).as_deref(), Some("1.0"));
        assert_eq!(run_on(&server), Ok(Decision::Update));
        assert_eq!(neon_version(&server).as_deref(), Some("1.1"));
        let log = server_log(&server);
        let line = log
            .lines()
            .find(|line| line.contains("ALTER EXTENSION neon UPDATE"))
            .unwrap_or_else(|| panic!("{log}"));
        assert!(
            line.contains("statement: ALTER EXTENSION neon UPDATE"),
            "{line}"
        );
        assert!(
            line.starts_with(&format!("app={APPLICATION_NAME} ")),
            "{line}"
        );
        // Already at the default version: running it again changes nothing and fails not.
        assert_eq!(run_on(&server), Ok(Decision::Update));
    }
}
