//! What a running compute reports about itself: whether it takes writes
//! ([`check_writability`], `POST /check_writability`) and its costliest statements
//! ([`insights`], `GET /insights`), on a session the caller opened (with its limits), and
//! whether it accepts connections at all ([`liveness`]: `pg_isready`,
//! `GET /hadron_liveness_probe`).

/// The row `check_writability` upserts (the table is pg-reconcile's
/// `create_availability_check`, made at every catalog apply of a primary).
pub const WRITABILITY_STATEMENT: &str =
    "INSERT INTO public.health_check VALUES (1, pg_catalog.now()) \
     ON CONFLICT (id) DO UPDATE SET updated_at = pg_catalog.now()";

/// SQLSTATE disk_full: the write reached the storage limit, which proves writability.
const DISK_FULL: &str = "53100";

/// The `/insights` text when there is nothing to report.
pub const EMPTY_INSIGHTS: &str = r#"{"pg_stat_statements": []}"#;

/// `<pgbin dir>/pg_isready -h <socket dir> -p <port>` within `deadline` (its group killed past
/// it, no libpq service or host address from the environment, no systemd socket): `Ok` when
/// it exits 0, else what it said.
pub fn liveness(
    document: &compute_spec::ComputeDocument,
    deadline: std::time::Duration,
) -> Result<(), String> {
    let mut command = std::process::Command::new(document.sibling_binary("pg_isready"));
    command
        .arg("-h")
        .arg(&document.instance.socket_dir)
        .arg("-p")
        .arg(document.instance.port.to_string());
    for variable in ["PGSERVICE", "PGSERVICEFILE", "PGHOSTADDR"] {
        command.env_remove(variable);
    }
    stage_kit::notify::hide_from(&mut command);
    let output =
        stage_kit::child::run(&mut command, deadline, 64 * 1024).map_err(|e| e.to_string())?;
    if output.status.success() {
        return Ok(());
    }
    let said = match String::from_utf8_lossy(&output.stdout).trim() {
        "" => String::from_utf8_lossy(&output.stderr).trim().to_string(),
        said => said.to_string(),
    };
    Err(format!("pg_isready {}: {said}", output.status))
}

/// Upserts `public.health_check` row 1: the server took a write (a disk-full refusal counts,
/// as upstream). A missing table is Postgres's error (the caller words it with its limits).
pub fn check_writability(client: &mut postgres::Client) -> Result<(), postgres::Error> {
    match client.batch_execute(WRITABILITY_STATEMENT) {
        Err(error) if error.code().is_some_and(|code| code.code() == DISK_FULL) => Ok(()),
        done => done,
    }
}

/// The top 100 `pg_stat_statements` rows by mean plan + execution time, excluding the
/// session's own role, as upstream's text: `{"pg_stat_statements": [...]}`. When the view
/// cannot be read (or the extension is not installed) the list is empty — upstream writes
/// doubled braces there, which no JSON parser reads.
pub fn insights(client: &mut postgres::Client) -> String {
    let read = (|| -> Result<String, postgres::Error> {
        let installed = client.query_one(
            "SELECT count(*) > 0 FROM pg_catalog.pg_extension WHERE extname = 'pg_stat_statements'",
            &[],
        )?;
        if !installed.get::<_, bool>(0) {
            return Ok(EMPTY_INSIGHTS.to_string());
        }
        let row = client.query_one(
            "SELECT coalesce(json_agg(row_to_json(pss)), '[]'::json)::text FROM \
             (SELECT * FROM public.pg_stat_statements \
              WHERE userid IS DISTINCT FROM (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) \
              ORDER BY (mean_exec_time + mean_plan_time) DESC LIMIT 100) AS pss",
            &[],
        )?;
        Ok(format!(
            "{{\"pg_stat_statements\": {}}}",
            row.get::<_, String>(0)
        ))
    })();
    read.unwrap_or_else(|error| {
        tracing::warn!(%error, "reading pg_stat_statements failed");
        EMPTY_INSIGHTS.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pg_test_support::TestPostgres;

    #[test]
    fn writability_needs_the_table_and_insights_need_the_extension() {
        let server = TestPostgres::start();
        let mut client = server.client();
        let missing = check_writability(&mut client).unwrap_err();
        let missing = stage_kit::local::pg_error_text(&missing);
        assert!(missing.contains("health_check"), "{missing}");
        server
            .psql("CREATE TABLE public.health_check (id int PRIMARY KEY, updated_at timestamptz)");
        check_writability(&mut client).unwrap();
        check_writability(&mut client).unwrap();
        let rows: i64 = client
            .query_one("SELECT count(*) FROM public.health_check", &[])
            .unwrap()
            .get(0);
        assert_eq!(rows, 1);
        assert_eq!(insights(&mut client), EMPTY_INSIGHTS);
    }
}
