//! pg-catalog: catalog work on a compute's running Postgres, as a library (compute-ctl's
//! catalog routes and its installed-extension statistics call it) and as the `pg-catalog`
//! binary (the same work by hand, on any Postgres a compute document describes).
//!
//! * [`grants`]: grant a role the schema privileges it lacks (`POST /grants`).
//! * [`extensions`]: create an extension in `public` at a version, or update it to that
//!   version (`POST /extensions`), after a hook the caller supplies ([`extensions::Prepare`]:
//!   compute-ctl downloads a remote extension there).
//! * [`schema`] and [`dump`]: the database's `pg_dump --schema-only`, streamed to a
//!   [`dump::Sink`] with an idle and a total deadline (`GET /database_schema`).
//! * [`listing`]: the roles and databases as upstream's catalog snapshot (`GET /dbs_and_roles`).
//! * [`ext_stats`]: the installed-extensions scan, its grouping and `[NEON_EXT_STAT]` line,
//!   and the periodic job, which reaches its caller only through [`ext_stats::Host`].
//! * [`neon_update`]: the background `ALTER EXTENSION neon UPDATE` after a primary's start.
//! * [`health`]: the writability check and the `pg_stat_statements` insights
//!   (`POST /check_writability`, `GET /insights`).
//!
//! Input is a [`ComputeDocument`] (its `connstr`, `instance` and `pgbin`) and typed requests;
//! output is typed, `Serialize` results and typed errors ([`CatalogError`],
//! [`schema::SchemaError`]) that name what failed. Nothing here knows HTTP: compute-ctl maps
//! these to its status codes and bodies.
//!
//! Every session is a [`stage_kit::local::Session`] with its work's limits (each module's
//! `LIMITS`: statement and lock timeouts, a cancel request at the deadline); a failed
//! statement's message names the limit it hit.
//!
//! Invariants: every name and literal that reaches SQL goes through [`compute_spec::quote`];
//! values are read with bind parameters; `pg_dump` gets its database through `PGDATABASE`
//! (libpq never expands it as a connection string) and runs through [`stage_kit::child`] in
//! its own process group, killed when its reader goes away or a deadline passes.

use compute_spec::ComputeDocument;
use stage_kit::local::{pg_error_text, Limits, Session};

pub mod cli;
pub mod dump;
pub mod ext_stats;
pub mod extensions;
pub mod grants;
pub mod health;
pub mod listing;
pub mod neon_update;
pub mod schema;

pub use extensions::{install_extension, ExtensionRequest, Installed};
pub use grants::{set_role_grants, GrantsRequest, Privilege};
pub use listing::{dbs_and_roles, read_dbs_and_roles, DbsAndRoles};

/// The name this crate uses in its errors (and the binary's).
pub const STAGE: &str = "pg-catalog";

/// What failed in a catalog change or read; its `Display` is the message compute-ctl puts
/// after its route's failure text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The document gives no admin connection (its `connstr`).
    #[error("{0}")]
    Document(String),
    /// Connecting to a database failed.
    #[error("connecting to database {database:?}: {message}")]
    Connect {
        /// The database.
        database: String,
        /// Postgres's (or the client's) message.
        message: String,
    },
    /// Reading the catalog failed.
    #[error("{what}: {message}")]
    Read {
        /// What was being read.
        what: String,
        /// Postgres's message.
        message: String,
    },
    /// The change statement failed.
    #[error("{message}")]
    Statement {
        /// The statement.
        statement: String,
        /// Postgres's message.
        message: String,
    },
    /// The caller's preparation hook failed (see [`extensions::Prepare`]).
    #[error("{0}")]
    Prepare(String),
}

/// An admin session on `database` (the document's own database for `None`) of the
/// compute's Postgres, through its socket directory, bounded by `limits`.
pub fn connect(
    document: &ComputeDocument,
    application_name: &str,
    database: Option<&str>,
    limits: Limits,
) -> Result<Session, CatalogError> {
    let config =
        stage_kit::local::limited_config(document, STAGE, application_name, database, limits)
            .map_err(|error| CatalogError::Document(error.message))?;
    Session::connect(&config, limits).map_err(|error| CatalogError::Connect {
        database: config.get_dbname().unwrap_or("postgres").to_string(),
        message: pg_error_text(&error),
    })
}

/// Runs one statement; returns it (what the change functions report having run).
fn execute(session: &mut Session, statement: String) -> Result<Option<String>, CatalogError> {
    match session.batch_execute(&statement) {
        Ok(()) => Ok(Some(statement)),
        Err(error) => Err(CatalogError::Statement {
            message: session.describe(&error),
            statement,
        }),
    }
}

/// What a change did: the statement it ran, `null` when nothing was missing (the binary's
/// output for `grants` and `extensions`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// The statement run, if any.
    pub statement: Option<String>,
}
