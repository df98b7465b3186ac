//! Connecting to the compute's own Postgres: the admin connection every stage uses.
//!
//! The user, database, password and options come from the document's `connstr`; host and
//! port from its `instance` (the Unix socket directory the tools control). Neon's forced
//! session options come first so that a user's `ALTER DATABASE … SET` (role, read-only,
//! search_path, statement_timeout) cannot break the tools; options in the connection string
//! are appended after them, so they win.

use std::time::Duration;

use compute_spec::document::ComputeDocument;
use compute_spec::error::{ErrorKind, StageError};

/// Session options forced on the tools' own connections (`-c name=value` form).
/// `pgaudit.log=none`: the tools' own statements are not audited (as upstream's compute_ctl
/// sessions); a superuser setting, which the admin role may set.
pub fn forced_options(user: &str) -> String {
    let role = compute_spec::quote::quote_options_word(user);
    format!(
        "-c role={role} -c default_transaction_read_only=off -c search_path= \
         -c statement_timeout=0 -c pgaudit.log=none"
    )
}

/// The admin connection configuration for `database` (the connstr's database when `None`).
pub fn admin_config(
    document: &ComputeDocument,
    stage: &str,
    application_name: &str,
    database: Option<&str>,
) -> Result<postgres::Config, StageError> {
    let mut config: postgres::Config = document.connstr.parse().map_err(|error| {
        StageError::new(
            stage,
            ErrorKind::InvalidDocument,
            format!("connstr is not a libpq URL or key=value string: {error}"),
        )
    })?;
    let user = config.get_user().unwrap_or("cloud_admin").to_string();
    if config.get_user().is_none() {
        config.user(&user);
    }
    if let Some(database) = database {
        config.dbname(database);
    } else if config.get_dbname().is_none() {
        config.dbname("postgres");
    }
    let user_options = config.get_options().map(str::to_string);
    let mut options = forced_options(&user);
    if let Some(user_options) = user_options {
        options.push(' ');
        options.push_str(&user_options);
    }
    config
        .options(&options)
        .application_name(application_name)
        .connect_timeout(Duration::from_secs(10));
    // The tools reach their instance through its socket directory, whatever the URL's host.
    let mut local = postgres::Config::new();
    local.host_path(&document.instance.socket_dir);
    local.port(document.instance.port);
    copy_identity(&config, &mut local);
    Ok(local)
}

fn copy_identity(from: &postgres::Config, to: &mut postgres::Config) {
    if let Some(user) = from.get_user() {
        to.user(user);
    }
    if let Some(password) = from.get_password() {
        to.password(password);
    }
    if let Some(dbname) = from.get_dbname() {
        to.dbname(dbname);
    }
    if let Some(options) = from.get_options() {
        to.options(options);
    }
    if let Some(name) = from.get_application_name() {
        to.application_name(name);
    }
    if let Some(timeout) = from.get_connect_timeout() {
        to.connect_timeout(*timeout);
    }
}

/// The user the tools connect as (from the connstr; `cloud_admin` when it names none).
pub fn admin_user(document: &ComputeDocument) -> String {
    document
        .connstr
        .parse::<postgres::Config>()
        .ok()
        .and_then(|config| config.get_user().map(str::to_string))
        .unwrap_or_else(|| "cloud_admin".to_string())
}

/// A Postgres error as its server message (`ERROR: …` with detail and hint), else the
/// client's text.
pub fn pg_error_text(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.to_string(),
        None => error.to_string(),
    }
}
