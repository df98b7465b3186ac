//! The database's `pg_dump --schema-only` (upstream's `/database_schema`), streamed through
//! [`crate::dump`]: [`dump_schema`] answers with pg_dump's first output, or with why there is
//! none ([`SchemaError`]).

use std::process::{Command, ExitStatus};
use std::time::Duration;

use compute_spec::ComputeDocument;

use crate::dump::{self, Head, Limits, Sink};

/// pg_dump's `application_name` (as upstream).
pub const APPLICATION_NAME: &str = "compute_ctl:database_schema";

/// pg_dump is killed when its output stays silent this long (before the first byte, between
/// chunks, or before it exits).
pub const PG_DUMP_IDLE: Duration = Duration::from_secs(60);

/// pg_dump is killed when the whole dump runs longer than this.
pub const PG_DUMP_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// The limits of a dump unless the caller chooses others.
pub const PG_DUMP_LIMITS: Limits = Limits {
    idle: PG_DUMP_IDLE,
    total: PG_DUMP_DEADLINE,
};

/// Why a dump produced no output.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Postgres says the database does not exist.
    #[error("database {database:?} does not exist")]
    NoSuchDatabase {
        /// The database asked for.
        database: String,
    },
    /// pg_dump exited without writing anything.
    #[error("pg_dump failed ({status}): {stderr}")]
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// The start of its stderr, trailing white space removed.
        stderr: String,
    },
    /// pg_dump could not be started, or said nothing within the idle limit (killed).
    #[error("{0}")]
    Failed(String),
}

/// Starts `pg_dump --schema-only` of `database` on the compute of `document`: its first
/// output, the rest going to `sink` (which ends complete when dropped, or through
/// [`Sink::fail`]); or why nothing came.
pub fn dump_schema(
    document: &ComputeDocument,
    database: &str,
    limits: Limits,
    sink: impl Sink,
) -> Result<Vec<u8>, SchemaError> {
    let command = pg_dump_command(document, database);
    match dump::start(command, limits, database.to_string(), sink) {
        Head::Output(first) => Ok(first),
        Head::Ended { status, stderr } => {
            let stderr = String::from_utf8_lossy(&stderr);
            let missing = format!("FATAL:  database \"{database}\" does not exist");
            if stderr.contains(&missing) {
                return Err(SchemaError::NoSuchDatabase {
                    database: database.to_string(),
                });
            }
            Err(SchemaError::Exited {
                status,
                stderr: stderr.trim_end().to_string(),
            })
        }
        Head::Failed(error) => Err(SchemaError::Failed(error)),
    }
}

fn pg_dump_command(document: &ComputeDocument, database: &str) -> Command {
    let mut command = Command::new(document.sibling_binary("pg_dump"));
    command
        .arg("--host")
        .arg(&document.instance.socket_dir)
        .arg("--port")
        .arg(document.instance.port.to_string())
        .arg("--username")
        .arg(stage_kit::local::admin_user(document))
        .arg("--schema-only")
        .env("PGDATABASE", database)
        .env("PGAPPNAME", APPLICATION_NAME)
        .env("PGCONNECT_TIMEOUT", "10");
    // Nothing from the caller's own environment may redirect the connection.
    for variable in [
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGHOSTADDR",
        "PGPASSFILE",
    ] {
        command.env_remove(variable);
    }
    if let Some(password) = document
        .connstr
        .parse::<postgres::Config>()
        .ok()
        .and_then(|config| config.get_password().map(<[u8]>::to_vec))
    {
        command.env(
            "PGPASSWORD",
            String::from_utf8_lossy(&password).into_owned(),
        );
    }
    command
}
