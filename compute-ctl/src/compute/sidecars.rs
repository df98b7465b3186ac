//! The controller's side of `compute_sidecars`: the audit upkeep's host (the shared state)
//! and the sidecars' errors as the start's errors (their kinds as before the move).

use std::time::Duration;

use compute_sidecars::audit::cleanup::UpkeepHost;
use compute_sidecars::audit::{self, AuditParams, StartPlan};
use compute_spec::error::{ErrorKind, StageError};
use compute_spec::ComputeDocument;

use crate::state::{ComputeStatus, Shared};

impl UpkeepHost for Shared {
    fn record_size(&self, bytes: u64) {
        self.update(|inner| inner.counters.audit_log_dir_size = bytes);
    }

    fn wait_stopped(&self, interval: Duration) -> bool {
        let status = self
            .wait_until(interval, |inner| stopped(inner.status()))
            .status();
        stopped(status)
    }
}

fn stopped(status: ComputeStatus) -> bool {
    status.is_terminating() || status == ComputeStatus::Terminated
}

/// [`audit::plan_start`] with the process environment; a refusal is a bad spec.
pub(super) fn audit_plan(
    params: &AuditParams,
    document: &ComputeDocument,
) -> Result<StartPlan, StageError> {
    audit::plan_start(params, document, |name| std::env::var_os(name)).map_err(|error| {
        StageError::new(
            crate::stages::STAGE,
            ErrorKind::InvalidSpec,
            error.to_string(),
        )
    })
}

/// [`audit::install_start`]; any failure is an I/O error.
pub(super) fn audit_install(
    params: &AuditParams,
    plan: &StartPlan,
    document: &ComputeDocument,
) -> Result<(), StageError> {
    audit::install_start(params, plan, &document.pgdata)
        .map_err(|error| StageError::new(crate::stages::STAGE, ErrorKind::Io, error.to_string()))
}

/// A sidecar's error as a start or reconfiguration error of `kind`.
pub(super) fn sidecar_error(kind: ErrorKind, error: impl std::fmt::Display) -> StageError {
    StageError::new(crate::stages::STAGE, kind, error.to_string())
}
