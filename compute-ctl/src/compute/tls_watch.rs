//! Certificate watching (upstream's §9): while `compute_ctl_config.tls` is set, the
//! certificate and key files are hashed every `--tls-watch-interval` (60 s by default); when
//! the hash changes while the compute is `running` and its spec asks for TLS, the current spec
//! is queued as a reconfiguration (`running` → `configuration_pending`, as `/configure`),
//! whose pg-reconcile run copies the new pair into PGDATA and reloads Postgres. New
//! connections then get the renewed certificate; nothing restarts.
//!
//! A change seen in another status (a `/configure` under way, say) is retried at the next
//! look. Unreadable files are skipped until readable: the reconfiguration is what reports a
//! pair that stays unusable. The thread ends when a termination starts.

use std::time::Duration;

use compute_spec::spec::ComputeFeature;

use super::Controller;
use crate::state::{ComputeStatus, PendingConfig};
use crate::supervise::Event;

impl Controller {
    /// Starts the watcher when `compute_ctl_config.tls` is set.
    pub(super) fn start_tls_watch(&self) {
        let Some(tls) = self.shared.lock().compute_ctl_config.tls.clone() else {
            return;
        };
        let shared = self.shared.clone();
        let sender = self.sender.clone();
        let interval = self
            .params
            .tls_watch_interval
            .max(Duration::from_millis(10));
        let mut last = stage_kit::tls::digest(&tls).ok();
        let spawned = std::thread::Builder::new()
            .name("tls-watch".into())
            .spawn(move || loop {
                let status = shared
                    .wait_until(interval, |inner| ended(inner.status()))
                    .status();
                if ended(status) {
                    return;
                }
                let digest = stage_kit::tls::digest(&tls).ok();
                if digest.is_none() || digest == last {
                    continue;
                }
                let queued = shared.update(|inner| {
                    if inner.status() != ComputeStatus::Running {
                        return false;
                    }
                    let Some(spec) = inner.document.as_ref().and_then(|d| d.spec.clone()) else {
                        return false;
                    };
                    if !spec.features.contains(&ComputeFeature::TlsExperimental) {
                        return false;
                    }
                    inner.pending = Some(PendingConfig { spec });
                    inner.error = None;
                    inner
                        .transition(ComputeStatus::ConfigurationPending)
                        .is_ok()
                });
                if queued {
                    tracing::info!("the TLS certificate or key changed: reconfiguring");
                    last = digest;
                    let _ = sender.send(Event::Wake);
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the TLS certificate watcher");
        }
    }
}

fn ended(status: ComputeStatus) -> bool {
    status.is_terminating() || status == ComputeStatus::Terminated
}
