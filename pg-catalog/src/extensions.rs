//! Creates an extension in `public` at a version, or updates it to that version (upstream's
//! `install_extension`, behind `POST /extensions`).

use compute_spec::quote::{Ident, Literal};
use compute_spec::ComputeDocument;
use serde::{Deserialize, Serialize};
use stage_kit::local::Limits;

use crate::{connect, execute, CatalogError};

/// The connections' `application_name` (as upstream).
pub const APPLICATION_NAME: &str = "compute_ctl:install_extension";

/// `POST /extensions`: an extension's script may take minutes (5 per statement), a lock wait
/// 30 s (`CREATE EXTENSION` behind another session's), a cancel request after 310 s.
pub const LIMITS: Limits = Limits::seconds(300, 30, 310);

/// An extension request (the `POST /extensions` body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionRequest {
    /// The extension's name.
    pub extension: String,
    /// The database to install it in.
    pub database: String,
    /// The version to install or update to.
    pub version: String,
}

/// What was installed: `{"extension","version"}` (the `POST /extensions` 201 body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Installed<'a> {
    /// The extension's name.
    pub extension: &'a str,
    /// Its version.
    pub version: &'a str,
}

impl ExtensionRequest {
    /// The answer for this request once it succeeded.
    pub fn installed(&self) -> Installed<'_> {
        Installed {
            extension: &self.extension,
            version: &self.version,
        }
    }
}

/// Makes an extension's files available before `CREATE EXTENSION`/`ALTER EXTENSION` runs
/// (compute-ctl downloads a remote extension the spec allows); its error aborts the request
/// as [`CatalogError::Prepare`].
pub trait Prepare {
    /// Prepares `extension` for the compute of `document`.
    fn prepare(&self, document: &ComputeDocument, extension: &str) -> Result<(), String>;
}

/// Nothing to prepare: the extension's files are installed, or Postgres says they are not.
#[derive(Clone, Copy, Debug, Default)]
pub struct Local;

impl Prepare for Local {
    fn prepare(&self, _: &ComputeDocument, _: &str) -> Result<(), String> {
        Ok(())
    }
}

/// Runs `prepare` for the extension, then [`install_extension`].
pub fn install(
    document: &ComputeDocument,
    request: &ExtensionRequest,
    prepare: &dyn Prepare,
) -> Result<Option<String>, CatalogError> {
    prepare
        .prepare(document, &request.extension)
        .map_err(CatalogError::Prepare)?;
    install_extension(document, request)
}

/// Installs or updates the extension; returns the statement it ran, if any.
pub fn install_extension(
    document: &ComputeDocument,
    request: &ExtensionRequest,
) -> Result<Option<String>, CatalogError> {
    let mut session = connect(document, APPLICATION_NAME, Some(&request.database), LIMITS)?;
    let installed: Option<String> = session
        .query_opt(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = $1",
            &[&request.extension],
        )
        .map_err(|error| CatalogError::Read {
            what: format!("reading the installed version of {:?}", request.extension),
            message: session.describe(&error),
        })?
        .map(|row| row.get(0));
    let statement = match installed {
        Some(version) if version == request.version => return Ok(None),
        Some(_) => format!(
            "ALTER EXTENSION {} UPDATE TO {}",
            Ident(&request.extension),
            Literal(&request.version)
        ),
        None => format!(
            "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA public VERSION {}",
            Ident(&request.extension),
            Literal(&request.version)
        ),
    };
    execute(&mut session, statement)
}
