//! What a pooled compute does before and while it waits in `empty` for its spec, both from
//! `pg-warmup`: the memory warm-up ([`memory`], `--warm-up-memory`, before the HTTP servers),
//! then the read-ahead of the programs a start will run ([`prefetch_for_start`]). Neither
//! ever fails the compute.

use std::time::Duration;

use compute_spec::document::ComputeDocument;

use crate::stages::{locate, name};

/// The longest each step of the memory warm-up (`initdb`, the start, the stop) may take.
const WARM_UP_STEP: Duration = Duration::from_secs(30);

/// Upstream's "prewarm VM memory" for `document`'s installation: logged, never failing the
/// compute (a failure costs only speed).
pub fn memory(document: &ComputeDocument) {
    let user = match stage_kit::runas::PostgresUser::for_current_process(Some(
        stage_kit::runas::DEFAULT_OS_USER,
    )) {
        Ok(user) => user,
        Err(error) => {
            tracing::warn!("memory warm-up skipped: no postgres user: {error}");
            return;
        }
    };
    let params = pg_warmup::Params {
        pgbin: document.pgbin.clone(),
        pgdata: document.pgdata.clone(),
        user,
        neon_library: document.instance.host.neon_library,
        step_deadline: WARM_UP_STEP,
    };
    tracing::info!("warming the VM's memory up (a throwaway Postgres with 512 MiB of buffers)");
    match pg_warmup::warm_up(&params) {
        Ok(report) => tracing::info!(
            initdb_ms = report.initdb_ms,
            start_ms = report.start_ms,
            total_ms = report.total_ms,
            "memory warm-up done"
        ),
        Err(error) => tracing::warn!("memory warm-up failed (the start goes on): {error}"),
    }
}

/// Starts the read-ahead of the stage binaries and `document`'s installation, in the
/// background.
pub fn prefetch_for_start(document: &ComputeDocument) {
    let stages = [
        name::COMPUTE_SPEC,
        name::SYNC_SAFEKEEPERS,
        name::BASEBACKUP_FETCH,
        name::EXTENSIONS_FETCH,
        name::RECONCILE,
        name::SUPERVISE,
    ];
    pg_warmup::read_ahead::spawn(&document.pgbin, stages.into_iter().map(locate).collect());
}
