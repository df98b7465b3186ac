//! Installed-extension statistics (upstream's §4.7): [`pg_catalog::ext_stats`]'s scans and
//! job, wired to the shared state. compute-ctl keeps the statistics in
//! [`crate::state::Inner::ext_stats`] (the `compute_installed_extensions` series of
//! `/metrics`, the scan window the activity events are checked against) and decides the
//! schedule's inputs: the first scan at once on a primary; the stored interval is
//! `--installed-extensions-collection-interval`, replaced by the spec's
//! `suspend_timeout_seconds` (`-1`/`0` → 3600) when a start-up applies the catalog (a primary
//! without `skip_pg_catalog_updates`) and at each `/configure`. The job ends when Postgres
//! stops (a terminating or terminated status).

use std::sync::Arc;
use std::time::Duration;

use compute_spec::spec::{ComputeMode, ComputeSpec};
use compute_spec::ComputeDocument;
use pg_catalog::ext_stats::{interval_of, Host};

use crate::state::{ComputeStatus, Shared};

pub use pg_catalog::ext_stats::ExtStats;

/// Stores the interval `spec` gives (start-up, `/configure`).
pub fn store_interval(shared: &Shared, spec: &ComputeSpec) {
    let seconds = interval_of(spec);
    shared.update(|inner| inner.ext_stats.stored_interval = seconds);
}

/// The job's view of the shared state.
struct SharedHost(Arc<Shared>);

impl Host for SharedHost {
    fn document(&self) -> Option<ComputeDocument> {
        self.0.lock().document.clone()
    }

    fn stats(&self, change: &mut dyn FnMut(&mut ExtStats)) {
        self.0.update(|inner| change(&mut inner.ext_stats));
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
pub fn spawn(shared: &Arc<Shared>, document: &ComputeDocument, interval: u64) {
    let primary = document
        .spec
        .as_ref()
        .is_some_and(|spec| spec.mode == ComputeMode::Primary);
    // The stored interval: the flag's, replaced by the spec's when the catalog was applied
    // (a primary without skip_pg_catalog_updates), as upstream.
    shared.update(|inner| inner.ext_stats.stored_interval = interval);
    if crate::migrations::wanted(document) {
        if let Some(spec) = document.spec.as_ref() {
            store_interval(shared, spec);
        }
    }
    let host = Arc::new(SharedHost(shared.clone()));
    if let Err(error) = pg_catalog::ext_stats::spawn(host, primary, interval) {
        tracing::error!(%error, "cannot start the installed-extensions scans");
    }
}
