//! Installed-extension statistics (upstream's §4.7): [`pg_catalog::ext_stats`]'s scans and
//! job, wired to the shared state. The statistics ([`Stats`]: the `compute_installed_extensions`
//! series of `/metrics`, the scan window the activity events are checked against) live under
//! a lock of their own, not in the shared state; compute-ctl decides the schedule's inputs: the first scan at once on a primary; the stored interval is
//! `--installed-extensions-collection-interval`, replaced by the spec's
//! `suspend_timeout_seconds` (`-1`/`0` → 3600) when a start-up applies the catalog (a primary
//! without `skip_pg_catalog_updates`) and at each `/configure`. The job ends when Postgres
//! stops (a terminating or terminated status).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use compute_spec::spec::{ComputeMode, ComputeSpec};
use compute_spec::ComputeDocument;
use pg_catalog::ext_stats::{interval_of, Host};
use stage_kit::prom::{Kind, Text};

use crate::state::{ComputeStatus, Shared};
use crate::supervise::OwnActivity;

pub use pg_catalog::ext_stats::ExtStats;

/// The statistics, the scan window and the stored interval, under their own lock: made by
/// the controller, read by `/metrics` and the activity filter ([`own_activity`]).
pub type Stats = Arc<Mutex<ExtStats>>;

/// Locks the statistics (a poisoned lock is recovered: every change is one assignment).
fn lock(stats: &Mutex<ExtStats>) -> MutexGuard<'_, ExtStats> {
    stats.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Stores the interval `spec` gives (start-up, `/configure`).
pub fn store_interval(stats: &Mutex<ExtStats>, spec: &ComputeSpec) {
    lock(stats).stored_interval = interval_of(spec);
}

/// The activity pg-supervise reports during a scan (or just after it): the scan's own
/// sessions, not user activity.
pub fn own_activity(stats: &Stats) -> OwnActivity {
    let stats = stats.clone();
    Arc::new(move |time| lock(&stats).is_scan_activity(time))
}

/// `compute_installed_extensions{extension_name,owned_by_superuser,version}` in Prometheus
/// text (the family absent while empty, as upstream).
pub fn render_metrics(stats: &Mutex<ExtStats>) -> String {
    let stats = lock(stats);
    let mut text = Text::new();
    if stats.installed.is_empty() {
        return text.finish();
    }
    let mut family = text.family(
        "compute_installed_extensions",
        Kind::Gauge,
        "Number of databases where the version of extension is installed",
    );
    for ((extension, owned, version), count) in &stats.installed {
        family.sample(
            &[
                ("extension_name", extension),
                ("owned_by_superuser", owned),
                ("version", version),
            ],
            *count,
        );
    }
    text.finish()
}

/// The job's view of the shared state and of the statistics.
struct SharedHost(Arc<Shared>, Stats);

impl Host for SharedHost {
    fn document(&self) -> Option<ComputeDocument> {
        self.0.lock().document.clone()
    }

    fn stats(&self, change: &mut dyn FnMut(&mut ExtStats)) {
        change(&mut lock(&self.1));
    }

    fn wait_for_stop(&self, pause: Duration) -> bool {
        let status = self
            .0
            .wait_until(pause, |inner| stopped(inner.status()))
            .status();
        stopped(status)
    }
}

/// Whether Postgres is stopping or stopped: the scans end.
fn stopped(status: ComputeStatus) -> bool {
    status.is_terminating() || status == ComputeStatus::Terminated
}

/// Starts the schedule in a background thread: the first scan at once on a primary, then
/// the loop. `interval` is `--installed-extensions-collection-interval` (seconds).
pub fn spawn(shared: &Arc<Shared>, stats: &Stats, document: &ComputeDocument, interval: u64) {
    let primary = document
        .spec
        .as_ref()
        .is_some_and(|spec| spec.mode == ComputeMode::Primary);
    // The stored interval: the flag's, replaced by the spec's when the catalog was applied
    // (a primary without skip_pg_catalog_updates), as upstream.
    lock(stats).stored_interval = interval;
    if crate::migrations::wanted(document) {
        if let Some(spec) = document.spec.as_ref() {
            store_interval(stats, spec);
        }
    }
    let host = Arc::new(SharedHost(shared.clone(), stats.clone()));
    if let Err(error) = pg_catalog::ext_stats::spawn(host, primary, interval) {
        tracing::error!(%error, "cannot start the installed-extensions scans");
    }
}
