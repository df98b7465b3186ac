//! Termination: forwarding a pending termination to pg-supervise (once per mode), stopping
//! pgbouncer and local_proxy (spared under `--dev` when only signals asked), the post-shutdown
//! safekeeper sync and the final `terminated`.

use compute_spec::error::StageError;
use compute_spec::exit_code;
use compute_spec::spec::ComputeMode;
use nix::sys::signal::Signal;

use super::{terminating, Controller, Outcome};
use crate::stages::{self, name};
use crate::state::ComputeStatus;
use crate::supervise::Event;

impl Controller {
    /// Moves a pending termination to `terminated` (after the post-shutdown sync for a
    /// primary with safekeepers).
    pub(super) fn finish_termination(&mut self, exit: Option<u8>) -> Result<Outcome, StageError> {
        let lsn = self.post_shutdown_sync();
        self.shared.update(|inner| {
            inner.terminate_lsn = lsn;
            let _ = inner.transition(ComputeStatus::Terminated);
        });
        Ok(Outcome::Exit(exit.unwrap_or(exit_code::OK)))
    }

    fn post_shutdown_sync(&mut self) -> Option<String> {
        let document = self.shared.lock().document.clone()?;
        let spec = document.spec.as_ref()?;
        if spec.mode != ComputeMode::Primary || spec.safekeepers().is_empty() {
            return None;
        }
        let mut args = self.log_args();
        args.push("--after-shutdown".into());
        // Not through run_stage: a termination is pending, and this stage is part of it.
        let synced = stages::document_bytes(&document).and_then(|bytes| {
            stages::run(name::SYNC_SAFEKEEPERS, &args, &bytes, &self.children.stage)
        });
        match synced {
            Ok(synced) => synced
                .sync_safekeepers
                .map(|section| section.lsn.to_string()),
            Err(error) => {
                tracing::warn!(%error, "the post-shutdown safekeeper sync failed");
                None
            }
        }
    }

    pub(super) fn stop_postgres(&mut self, signal: Signal) {
        if self.supervisor.is_none() {
            return;
        }
        if self.signalled.is_none() {
            self.children.supervise.signal(signal);
            self.signalled = Some(signal);
        }
        loop {
            match self.events.recv() {
                Ok(Event::Exited { .. } | Event::SupervisorGone { .. }) | Err(_) => break,
                Ok(_) => {}
            }
        }
        self.reap_supervisor();
    }

    /// Sends pg-supervise the signal for a pending termination (once per mode); true when
    /// a termination is pending.
    pub(super) fn forward_termination(&mut self) -> bool {
        let (status, immediate) = {
            let inner = self.shared.lock();
            (inner.status(), inner.immediate_shutdown)
        };
        if !status.is_terminating() {
            return false;
        }
        // pg-supervise turns SIGTERM into PostgreSQL's fast shutdown and SIGQUIT into its
        // immediate one; only a SIGQUIT to compute-ctl asks for the latter.
        let signal = if immediate {
            Signal::SIGQUIT
        } else {
            Signal::SIGTERM
        };
        self.stop_helpers();
        if self.signalled != Some(signal) && self.signalled != Some(Signal::SIGQUIT) {
            tracing::info!(%signal, "forwarding the termination to pg-supervise");
            self.children.supervise.signal(signal);
            self.signalled = Some(signal);
        }
        true
    }

    /// Stops pgbouncer (SIGKILL) and local_proxy (SIGTERM) once per termination. With
    /// `--dev`, a termination only signals asked for spares them (upstream's development
    /// mode); a `/terminate` stops them with or without `--dev`, as upstream.
    fn stop_helpers(&mut self) {
        if self.helpers_stopped {
            return;
        }
        let by_route = self.shared.lock().terminate_requested.is_some();
        if self.params.deferred.dev && !by_route {
            return;
        }
        compute_sidecars::pgbouncer::kill_pgbouncer(&self.params.sidecars.pgbouncer);
        compute_sidecars::local_proxy::stop(&self.params.sidecars.local_proxy);
        self.helpers_stopped = true;
    }

    pub(super) fn check_not_terminating(&mut self) -> Result<(), StageError> {
        if self.forward_termination() {
            return Err(terminating());
        }
        Ok(())
    }
}
