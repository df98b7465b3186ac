//! LSN leases of a Static compute: the `pg-lsn-lease` crate owns the requests, the shard
//! targets, the keeper thread and its schedule. Here: the compute the keeper sees (the
//! shared state, through [`pg_lsn_lease::Compute`]). The controller starts the keeper when
//! the spec is known (before the basebackup) and stops it when pg-supervise exits or the
//! start fails.

use std::time::Duration;

use compute_spec::spec::ComputeSpec;

use crate::state::Shared;
pub use pg_lsn_lease::{LeaseKeeper, LeaseSettings, LeaseStats};

/// The keeper reads the stored spec, and its waits end on any change of the shared state.
impl pg_lsn_lease::Compute for Shared {
    fn spec(&self) -> Option<ComputeSpec> {
        self.lock()
            .document
            .as_ref()
            .and_then(|document| document.spec.clone())
    }

    fn wait_for_spec(&self, timeout: Duration, done: &mut dyn FnMut(Option<&ComputeSpec>) -> bool) {
        drop(self.wait_until(timeout, |inner| {
            done(
                inner
                    .document
                    .as_ref()
                    .and_then(|document| document.spec.as_ref()),
            )
        }));
    }

    fn wake(&self) {
        self.update(|_| ());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_static_compute_leases() {
        for mode in [serde_json::json!("Primary"), serde_json::json!("Replica")] {
            let shared = crate::testing::shared_with(Some(serde_json::json!({"mode": mode})));
            assert!(LeaseKeeper::start(shared, LeaseSettings::default()).is_none());
        }
        assert!(
            LeaseKeeper::start(crate::testing::shared_with(None), LeaseSettings::default())
                .is_none()
        );
    }
}
