//! TLS on a reconfiguration: when the spec asks for TLS (`tls_experimental` and
//! `compute_ctl_config.tls`), the certificate and key are checked and copied into PGDATA again
//! (`stage_kit::tls`, waiting at most `COMPUTE_CTL_TLS_WAIT`, 60 s by default, for a usable
//! pair), and Postgres reloads when they changed, so new connections get the renewed
//! certificate without a restart. A pair that stays unusable fails the run naming the file;
//! the files in PGDATA are then left as they were.

use compute_spec::error::{ErrorKind, StageError};
use compute_spec::spec::ComputeSpec;
use compute_spec::ComputeDocument;
use stage_kit::runas::PostgresUser;

use crate::STAGE;

/// Installs the pair when the spec asks for TLS; true when the files in PGDATA changed (the
/// caller reloads). Nothing is written in a dry run.
pub fn refresh(
    document: &ComputeDocument,
    spec: &ComputeSpec,
    dry_run: bool,
) -> Result<bool, StageError> {
    let Some(tls) = compute_spec::pgconf::tls::wanted(document, spec) else {
        return Ok(false);
    };
    let invalid = |message: String| StageError::new(STAGE, ErrorKind::InvalidSpec, message);
    let checked = stage_kit::tls::check(tls);
    if dry_run {
        return checked.map(|_| false).map_err(|e| invalid(e.message));
    }
    if let Ok(checked) = &checked {
        if stage_kit::tls::is_installed(&document.pgdata, checked) {
            return Ok(false);
        }
    }
    let wait = stage_kit::tls::wait_from_env().map_err(|e| invalid(e.message))?;
    let user = PostgresUser::for_current_process(None)
        .map_err(|error| StageError::new(STAGE, ErrorKind::Io, error.to_string()))?;
    let installed = stage_kit::tls::install_waiting(&document.pgdata, tls, user.as_ref(), wait)
        .map_err(|e| invalid(e.message))?;
    tracing::info!(kind = ?installed.kind, serial = %installed.serial, "TLS certificate installed");
    Ok(true)
}
