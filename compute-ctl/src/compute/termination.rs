//! Termination: forwarding a pending termination to pg-supervise (once per mode), stopping
//! pgbouncer and local_proxy (spared under `--dev` when only signals asked), the safekeeper
//! sync after Postgres exited and the final `terminated` — or, when that sync failed, no
//! `terminated` at all: the waiters get a 500 and compute-ctl exits 1.

use compute_spec::error::StageError;
use compute_spec::exit_code;
use compute_spec::spec::ComputeMode;
use nix::sys::signal::Signal;

use super::{terminating, Controller, Outcome};
use crate::stages::{self, name};
use crate::state::ComputeStatus;
use crate::supervise::Event;

/// What the safekeeper sync after Postgres exited found.
#[derive(Debug)]
pub(super) enum FinalSync {
    /// Not a Primary with safekeepers, or Postgres never started: nothing to sync.
    NotNeeded,
    /// The safekeepers agree on this LSN.
    Synced(String),
    /// The sync failed: the WAL may not be on the safekeepers.
    Failed(String),
}

impl Controller {
    /// Postgres stopped (or never started): the final sync, then `terminated` when a
    /// termination is pending, or the exit for a Postgres that stopped on its own. `exit` is
    /// the code for a clean outcome; a failed sync exits 1 whatever the status.
    pub(super) fn after_postgres(&mut self, exit: u8) -> Outcome {
        let sync = self.final_sync();
        self.settle(sync, exit)
    }

    /// Ends the run on the final sync's result: a pending termination becomes `terminated`
    /// (its waiters get the LSN) unless the sync failed; a failed sync is recorded (the
    /// waiters of `/terminate` get a 500 naming it) and the exit code is 1.
    pub(super) fn settle(&mut self, sync: FinalSync, exit: u8) -> Outcome {
        let (lsn, failure) = match sync {
            FinalSync::NotNeeded => (None, None),
            FinalSync::Synced(lsn) => (Some(lsn), None),
            FinalSync::Failed(error) => (None, Some(error)),
        };
        if let Some(error) = failure {
            // As upstream: never `terminated` (the status stays what it was), exit 1. A failed
            // start keeps its own error in `/status`.
            self.shared.update(|inner| {
                inner
                    .error
                    .get_or_insert_with(|| format!("the final safekeeper sync failed: {error}"));
                inner.final_sync_error = Some(error);
            });
            return Outcome::Exit(exit_code::RUNTIME);
        }
        self.shared.update(|inner| {
            inner.terminate_lsn = lsn;
            if inner.status().is_terminating() {
                let _ = inner.transition(ComputeStatus::Terminated);
            }
        });
        Outcome::Exit(exit)
    }

    /// Upstream's rule: after Postgres exits — a termination, a crash while running, or a
    /// start that failed once Postgres had been started — a Primary syncs its safekeepers once
    /// more (no fast path), and the LSN is what `/terminate` reports.
    pub(super) fn final_sync(&mut self) -> FinalSync {
        if !self.postgres_started {
            return FinalSync::NotNeeded;
        }
        let Some(document) = self.shared.lock().document.clone() else {
            return FinalSync::NotNeeded;
        };
        let needed = document.spec.as_ref().is_some_and(|spec| {
            spec.mode == ComputeMode::Primary && !spec.safekeepers().is_empty()
        });
        if !needed {
            return FinalSync::NotNeeded;
        }
        tracing::info!("syncing the safekeepers after Postgres stopped");
        let mut args = self.log_args();
        args.push("--after-shutdown".into());
        // Not through run_stage: a termination may be pending, and this stage is part of it.
        compute_trace::process::set_operation(compute_trace::process::take_hand_off());
        let synced = stages::document_bytes(&document).and_then(|bytes| {
            stages::run(name::SYNC_SAFEKEEPERS, &args, &bytes, &self.children.stage)
        });
        let outcome = match synced.map(|synced| synced.sync_safekeepers) {
            Ok(Some(section)) => {
                tracing::info!(lsn = %section.lsn, "synced the safekeepers after Postgres stopped");
                FinalSync::Synced(section.lsn.to_string())
            }
            Ok(None) => FinalSync::Failed(format!(
                "{} wrote no sync_safekeepers section",
                name::SYNC_SAFEKEEPERS
            )),
            Err(error) => FinalSync::Failed(error.to_string()),
        };
        if let FinalSync::Failed(error) = &outcome {
            tracing::error!(
                %error,
                "the safekeeper sync after Postgres stopped failed: the WAL may not be on the \
                 safekeepers (exit 1, never `terminated`)"
            );
        }
        outcome
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
