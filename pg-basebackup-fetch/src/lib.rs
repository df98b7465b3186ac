//! `pg-basebackup-fetch`: the stage that prepares PGDATA before Postgres starts.
//!
//! **Reads** from the compute document: the spec (its storage source, via
//! `spec.validate()`, its settings for `postgresql.conf`), `pgdata`, `pgbin` (`initdb` is its
//! sibling), `connstr` (the admin user) and `instance` (port, socket directory).
//!
//! **Writes** the `basebackup` section: `source` (`initdb`), `basebackup_ms`,
//! `basebackup_bytes`.
//!
//! **Invariants**
//! - A directory is wiped only when it is empty, a PostgreSQL data directory (`PG_VERSION`)
//!   or carries [`compute_spec::document::PGDATA_MARKER`]; anything else is refused and left
//!   untouched ([`wipe`]).
//! - PGDATA is `0700` and owned by the user Postgres runs as; so is a separate socket dir.
//! - `postgresql.conf` is always rendered from the spec (`compute_spec::pgconf::render`),
//!   replacing whatever the source brought.
//!
//! **Tests**: unit tests next to the code; the binary is tested on real PostgreSQL in
//! `pg-basebackup-fetch/tests/`.
#![warn(missing_docs)]

pub mod child;
pub mod error;
pub mod finish;
pub mod initdb;
pub mod wipe;

use std::time::Instant;

use compute_spec::document::ComputeDocument;
use compute_spec::error::{ErrorKind, StageError};
use compute_spec::runas::PostgresUser;
use compute_spec::section::BasebackupSection;
use compute_spec::validate::StorageSource;

pub use error::BasebackupError;

/// The stage name used in errors and logs.
pub const STAGE: &str = "pg-basebackup-fetch";

/// Prepares PGDATA from the document's storage source and adds the `basebackup` section.
pub fn run(mut document: ComputeDocument) -> Result<ComputeDocument, StageError> {
    let started = Instant::now();
    let spec = document.require_spec(STAGE)?.clone();
    let source = spec.validate().map_err(|errors| {
        StageError::new(
            STAGE,
            ErrorKind::InvalidSpec,
            format!("invalid spec: {errors}"),
        )
    })?;
    let user = PostgresUser::for_current_process(None)
        .map_err(|error| StageError::new(STAGE, ErrorKind::Io, error.to_string()))?;
    let params = compute_spec::pgconf::params_for(&document);
    match source {
        StorageSource::Empty => {
            wipe::wipe_and_create(&document.pgdata, user.as_ref())?;
            let admin = compute_spec::local::admin_user(&document);
            initdb::run_initdb(
                &document.sibling_binary("initdb"),
                &document.pgdata,
                &admin,
                user.as_ref(),
            )?;
        }
        StorageSource::Neon(_) | StorageSource::Upstream { .. } => {
            return Err(StageError::new(
                STAGE,
                ErrorKind::InvalidSpec,
                "this build prepares PGDATA only from initdb (no storage in the spec)",
            ))
        }
    }
    finish::finish_pgdata(&document, &spec, &params, user.as_ref())?;
    document.basebackup = Some(BasebackupSection {
        source: "initdb".to_string(),
        pageserver_connect_micros: None,
        basebackup_ms: compute_spec::stage::elapsed_ms(started),
        basebackup_bytes: 0,
        extra: Default::default(),
    });
    Ok(document)
}
