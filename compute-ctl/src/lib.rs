//! compute-ctl: the `compute_ctl`-compatible entrypoint of a compute node.
//!
//! It stays thin: every start-up step is a stage binary run as a child process through the
//! JSON contract (the compute document on stdin, the document or an error envelope on
//! stdout), found at `$COMPUTE_CTL_STAGE_<NAME>` or beside this executable, so a user can
//! replace any of them. The chain: `compute-spec` (with the spec flags passed through) →
//! `pg-sync-safekeepers` → `pg-basebackup-fetch` → `pg-supervise` (long-running; its
//! `ready`/`activity`/`downtime`/`exited` events are read from its stdout) → `pg-reconcile`
//! once Postgres is ready (unless `skip_pg_catalog_updates`), and `pg-reconcile
//! --reconfigure` for each `/configure` on a running compute.
//!
//! Its modules form layers, bottom first; a module imports only its own layer or below
//! (`tests/tests/it/tidy/layers.rs` checks it, and that there is no cycle):
//!
//! 1. [`cli`], [`generate`], [`state`] (the statuses and their only allowed transitions; the
//!    shared state), [`stages`] (the stage runner);
//! 2. [`supervise`] (pg-supervise's events), [`metrics`], [`warm`];
//! 3. [`api`]: what every handler reaches;
//! 4. the features, route adapters and background jobs over their crates: [`control`],
//!    [`sql`], [`catalog`], [`probes`], [`remote_ext`], [`lfc`], [`promote`], [`lease`],
//!    [`ext_stats`], [`migrations`];
//! 5. [`compute`] (the controller thread that drives the stages and the statuses),
//!    [`signals`] (SIGTERM/SIGINT → fast, SIGQUIT → immediate shutdown through pg-supervise);
//! 6. [`routes`]: the one route table, served by the `compute-http` crate.
//!
//! The sidecars (pgbouncer, local_proxy, rsyslog and the audit log upkeep, the NeonVM tools,
//! vm-monitor) are the `compute-sidecars` crate, called from [`compute`].
//!
//! Reads from the document: the spec (mode, safekeepers, `skip_pg_catalog_updates`, tenant and
//! timeline), `compute_ctl_config` (JWT keys), the stage sections (timings for
//! `/metrics.json`). Writes no section of its own: it only hands documents between stages.
//!
//! Invariants: compute-ctl never starts or signals the postmaster itself (only pg-supervise
//! does); each shutdown signal is sent to pg-supervise once per mode; status changes only
//! through [`state::Inner::transition`]; no token or password hash is logged.
//!
//! Tests: unit tests beside the code; process-level tests with stand-in stage scripts and
//! real PostgreSQL in `compute-ctl/tests/`.
#![warn(missing_docs)]

pub mod api;
pub mod catalog;
pub mod cli;
pub mod compute;
pub mod control;
pub mod ext_stats;
pub mod generate;
pub mod lease;
pub mod lfc;
pub mod metrics;
pub mod migrations;
pub mod probes;
pub mod promote;
pub mod remote_ext;
pub mod routes;
pub mod signals;
pub mod sql;
pub mod stages;
pub mod state;
pub mod supervise;
#[cfg(test)]
mod testing;
pub mod warm;

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::Parser;

use crate::cli::{Cli, Params};
use crate::compute::{Children, Controller};
pub use crate::stages::{internal, STAGE};
use crate::state::{ComputeStatus, Shared};

/// Parses the flags, sets up logging and runs the compute (both binary names call this).
pub fn main_entry() -> ExitCode {
    // args_os: a non-UTF-8 argument is clap's usage error (exit 2), never a panic.
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Some(code) = generate::from_args(&args) {
        return code;
    }
    let cli = Cli::parse_from(args);
    stage_kit::logging::init(cli.log_format);
    compute_trace::process::init("compute_ctl");
    // One owner per PGDATA, before anything is touched or bound (see `pgdata_lock`).
    let pgdata = &cli.instance.pgdata;
    match stage_kit::pgdata_lock::acquire(pgdata, STAGE, cli.pgdata_lock_timeout) {
        Ok(lock) => stages::set_pgdata_lock(lock),
        Err(error) => {
            tracing::error!("cannot start: {error}");
            return ExitCode::from(match error {
                stage_kit::pgdata_lock::LockError::Usage(_) => compute_spec::exit_code::USAGE,
                _ => compute_spec::exit_code::RUNTIME,
            });
        }
    }
    ExitCode::from(run(cli.into_params()))
}

/// Runs the compute with `params` until it stops; returns the exit code.
pub fn run(params: Params) -> u8 {
    let shared = Arc::new(Shared::new());
    let (sender, receiver) = mpsc::channel();
    let children = Children::default();
    if let Err(error) = signals::install(shared.clone(), sender.clone(), children.clone()) {
        tracing::error!(%error, "cannot start");
        return compute_spec::exit_code::RUNTIME;
    }
    params.deferred.log();
    stages::set_cgroup(&params.sidecars.vm_monitor.cgroup);
    let terminated_grace = params.terminated_grace;
    let events = (sender, receiver);
    let controller = Controller::new(params, shared.clone(), events, (children, routes::router));
    let code = controller.run();
    let (requested, failed_sync) = {
        let inner = shared.lock();
        (inner.terminate_requested, inner.final_sync_error.is_some())
    };
    // As upstream, the API stays up after a `/terminate` (repeated calls get 201): 30 s
    // after a fast one, 300 ms after an immediate one. After a failed final sync upstream
    // exits at once; here the waiting `/terminate` requests get their 500 first.
    let linger = match (shared.status(), requested) {
        (ComputeStatus::Terminated, Some(ComputeStatus::TerminationPendingFast)) => {
            Some(terminated_grace)
        }
        (ComputeStatus::Terminated, Some(_)) => {
            Some(terminated_grace.min(Duration::from_millis(300)))
        }
        (ComputeStatus::Terminated, None) => Some(Duration::ZERO),
        _ if failed_sync => Some(Duration::from_millis(300)),
        _ => None,
    };
    if let Some(linger) = linger {
        let until = stage_kit::deadline::after(linger);
        // Let the requests that waited for the outcome get their answer, at least.
        let deadline = stage_kit::deadline::after(Duration::from_secs(2));
        while (shared.inflight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline)
            || Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    compute_trace::process::flush_at_exit();
    tracing::info!(code, "compute-ctl exiting");
    code
}
