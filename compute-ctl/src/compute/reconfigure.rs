//! The controller's pg-reconcile runs: the start-up one, and the live ones of `/configure`
//! and `/refresh_configuration` (upstream's §3.1 and §3.4).
//!
//! A live run hands pg-reconcile `--reconfigure` and the new spec: it renders the whole
//! `postgresql.conf` as a start does, reloads, reads every changed setting back (a value
//! Postgres refuses restores the previous file and fails the run), and applies the catalog
//! part under the temporary override. Spec fields that only a start applies are listed in
//! the section's `restart_required` ([`super::live::restart_required`]). The stored
//! document (and so the spec every handler reads, `suspend_timeout_seconds` included)
//! becomes the new one only when the run succeeded.

use std::time::Instant;

use compute_spec::error::{ErrorKind, StageError};
use compute_spec::exit_code;
use compute_spec::spec::{ComputeMode, ComputeSpec};
use compute_spec::ComputeDocument;
use nix::sys::signal::Signal;

use super::{live, Controller, Outcome};
use crate::stages::{self, name};
use crate::state::{ComputeStatus, PendingConfig};

/// What a refresh found at the configuration's source.
enum Refetched {
    /// The same pageserver connection: nothing to apply.
    Unchanged,
    /// Another pageserver connection: the spec was applied.
    Applied,
    /// The control plane has no spec for this compute any more.
    Empty,
}

impl Controller {
    /// The start-up reconcile: pg-reconcile without `--reconfigure`, for a primary whose spec
    /// does not say `skip_pg_catalog_updates` (nothing else to do at start: the stages have
    /// just rendered `postgresql.conf` from this spec).
    pub(super) fn reconcile_at_start(
        &mut self,
        document: ComputeDocument,
    ) -> Result<ComputeDocument, StageError> {
        let needed = document
            .spec
            .as_ref()
            .is_some_and(|spec| spec.mode == ComputeMode::Primary && !spec.skip_pg_catalog_updates);
        if !needed {
            return Ok(document);
        }
        let args = self.log_args();
        self.run_reconcile(&document, &args)
    }

    /// A live reconcile of `document` (holding the new spec) on a running compute:
    /// `pg-reconcile --reconfigure`; `previous` is the spec in effect, for the list of
    /// fields that need a restart.
    fn reconcile_live(
        &mut self,
        document: ComputeDocument,
        previous: Option<&ComputeSpec>,
    ) -> Result<ComputeDocument, StageError> {
        let mut args = self.log_args();
        args.push("--reconfigure".into());
        let restart_required = match (previous, document.spec.as_ref()) {
            (Some(previous), Some(next)) => live::restart_required(previous, next),
            _ => Vec::new(),
        };
        let mut reconciled = self.run_reconcile(&document, &args)?;
        if let Some(section) = reconciled.reconcile.as_mut() {
            section.restart_required = restart_required.clone();
        }
        if !restart_required.is_empty() {
            tracing::warn!(
                fields = %restart_required.join(", "),
                "these spec fields changed but take effect only at the next start"
            );
        }
        for change in reconciled
            .reconcile
            .iter()
            .flat_map(|section| &section.settings)
        {
            tracing::info!(
                setting = %change.name,
                outcome = %change.outcome,
                live = change.live.as_deref().unwrap_or(""),
                "setting reconfigured"
            );
        }
        self.store(&reconciled);
        compute_sidecars::pgbouncer::apply_in_background(
            &self.params.sidecars.pgbouncer,
            &reconciled,
        );
        if let Err(error) =
            compute_sidecars::local_proxy::configure(&self.params.sidecars.local_proxy, &reconciled)
        {
            tracing::error!(%error, "configuring local_proxy failed");
        }
        Ok(reconciled)
    }

    /// Runs pg-reconcile with `args` and counts the run.
    fn run_reconcile(
        &mut self,
        document: &ComputeDocument,
        args: &[std::ffi::OsString],
    ) -> Result<ComputeDocument, StageError> {
        let result = self.run_document_stage(name::RECONCILE, args, document);
        self.shared.update(|inner| {
            inner.counters.reconciles_total += 1;
            match &result {
                Ok(doc) => {
                    inner.counters.reconcile_statements_applied =
                        doc.reconcile.as_ref().map_or(0, |r| r.applied as u64);
                }
                Err(_) => inner.counters.reconcile_failures_total += 1,
            }
        });
        result
    }

    /// `configuration_pending` → `configuration` → `running` (or `failed`).
    pub(super) fn reconfigure(&mut self) {
        let pending = self.shared.update(|inner| {
            let pending = inner.pending.take()?;
            inner.transition(ComputeStatus::Configuration).ok()?;
            Some(pending)
        });
        let Some(PendingConfig { spec }) = pending else {
            return;
        };
        compute_trace::process::set_operation(compute_trace::process::take_hand_off());
        let result = self.apply_spec(spec);
        compute_trace::process::set_operation(None);
        self.shared.update(|inner| match result {
            Ok(()) => {
                let _ = inner.transition(ComputeStatus::Running);
            }
            Err(error) => {
                tracing::error!(%error, "reconfiguration failed");
                inner.error = Some(error.to_string());
                let _ = inner.transition(ComputeStatus::Failed);
            }
        });
    }

    /// `refresh_configuration_pending` → `refresh_configuration`: fetch the configuration
    /// again from where it came at start (`-c` file or control plane); the same pageserver
    /// connection → `running` at once (the gauge untouched, as upstream); another one →
    /// apply it (`running`); a fetch or apply failure → back to
    /// `refresh_configuration_pending` (retried at the next request); a control plane
    /// answering `empty` → Postgres is stopped and compute-ctl exits 1, as upstream.
    pub(super) fn refresh(&mut self) -> Option<Outcome> {
        if self
            .shared
            .transition(ComputeStatus::RefreshConfiguration)
            .is_err()
        {
            return None;
        }
        let outcome = self.refetch_and_apply();
        if let Ok(Refetched::Empty) = outcome {
            tracing::error!(
                "the control plane has no spec for this compute any more: stopping (exit 1)"
            );
            self.stop_postgres(Signal::SIGTERM);
            return Some(Outcome::Exit(exit_code::RUNTIME));
        }
        self.shared.update(|inner| match outcome {
            Ok(Refetched::Unchanged | Refetched::Empty) => {
                let _ = inner.transition_direct(ComputeStatus::Running);
            }
            Ok(Refetched::Applied) => {
                let _ = inner.transition(ComputeStatus::Running);
            }
            Err(error) => {
                tracing::error!(%error, "refreshing the configuration failed; retried at the next request");
                let _ = inner.transition(ComputeStatus::RefreshConfigurationPending);
            }
        });
        None
    }

    /// Fetches the spec again and applies it if the pageserver connection changed.
    fn refetch_and_apply(&mut self) -> Result<Refetched, StageError> {
        if !self.params.refreshable_source {
            return Err(StageError::new(
                crate::stages::STAGE,
                ErrorKind::Usage,
                "the configuration can be refreshed only from -c FILE or -p URL",
            ));
        }
        let args = self.params.spec_args.clone();
        let started = Instant::now();
        let fetched = stages::run(name::COMPUTE_SPEC, &args, b"", &self.children.stage);
        self.shared
            .update(|inner| crate::metrics::count_requests(&mut inner.counters, &fetched));
        let fetched = fetched?;
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "configuration fetched again"
        );
        let Some(spec) = fetched.spec else {
            return Ok(Refetched::Empty);
        };
        let current = self
            .shared
            .lock()
            .document
            .as_ref()
            .and_then(|document| document.spec.as_ref().map(pageserver_of));
        if current.as_ref() == Some(&pageserver_of(&spec)) {
            return Ok(Refetched::Unchanged);
        }
        self.apply_spec(spec)?;
        Ok(Refetched::Applied)
    }

    /// Reconciles the running compute to `spec` (`pg-reconcile --reconfigure`).
    fn apply_spec(&mut self, spec: ComputeSpec) -> Result<(), StageError> {
        let mut document = self
            .shared
            .lock()
            .document
            .clone()
            .ok_or_else(|| crate::stages::internal("no document for a running compute"))?;
        // logs_export_host is checked before anything changes, written once the rest applied.
        let export = compute_sidecars::audit::export_text(&spec)
            .map_err(|error| super::sidecars::sidecar_error(ErrorKind::InvalidSpec, error))?;
        let stored = spec.clone();
        let previous = document.spec.replace(spec);
        self.reconcile_live(document, previous.as_ref())?;
        compute_sidecars::audit::install_export(&self.params.sidecars.audit, export.as_deref())
            .map_err(|error| super::sidecars::sidecar_error(ErrorKind::Io, error))?;
        crate::ext_stats::store_interval(&self.ext_stats, &stored);
        Ok(())
    }
}

/// What identifies the pageserver connection of a spec (compared by the refresh path).
fn pageserver_of(spec: &ComputeSpec) -> serde_json::Value {
    serde_json::json!([
        spec.pageserver_connection_info,
        spec.pageserver_connstring,
        spec.shard_stripe_size,
    ])
}
