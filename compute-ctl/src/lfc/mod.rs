//! LFC prewarm and offload (`GET`/`POST`/`DELETE /lfc/prewarm`, `GET`/`POST /lfc/offload`):
//! upstream's state machines, JSON shapes, 202/429 answers, cancellation token and the four
//! counters.
//!
//! The transfer: endpoint storage `GET`/`PUT` of the zstd-compressed state with the bearer
//! token (`transfer`); the state itself comes from the `neon` extension on Neon computes and,
//! beyond upstream, from `pg_buffercache`/`pg_prewarm` on vanilla Postgres (`cache`); `work`
//! runs the phases. A run whose spec lacks what endpoint storage needs fails naming the
//! missing fields (as upstream).
//!
//! Both kinds of run are a `Job`: one state, a "running" value that refuses a second start,
//! a background thread, and a run counter and an error counter. The handlers (in `routes`)
//! only change the state and return; the endpoint-storage location is `storage`'s.

mod cache;
mod routes;
mod storage;
mod transfer;
mod work;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;

use crate::state::{ComputeStatus, Shared};

pub use cache::{CachedFork, VanillaState, VANILLA_FORMAT};
pub use routes::{delete_prewarm, get_offload, get_prewarm, post_offload, post_prewarm};
pub use storage::{storage_target, StorageTarget};

/// Prewarm state (`GET /lfc/prewarm`), e.g. `{"status":"not_prewarmed"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PrewarmState {
    /// Initial.
    #[default]
    NotPrewarmed,
    /// A prewarm is running.
    Prewarming,
    /// Done.
    Completed {
        /// Pages in the state.
        total: i32,
        /// Pages loaded.
        prewarmed: i32,
        /// Pages skipped.
        skipped: i32,
        /// Download time.
        state_download_time_ms: u32,
        /// Decompression time.
        uncompress_time_ms: u32,
        /// Load time.
        prewarm_time_ms: u32,
    },
    /// Failed.
    Failed {
        /// What failed.
        error: String,
    },
    /// No state was stored for the endpoint.
    Skipped,
    /// Cancelled by `DELETE /lfc/prewarm`.
    Cancelled,
}

/// Offload state (`GET /lfc/offload`), e.g. `{"status":"not_offloaded"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum OffloadState {
    /// Initial.
    #[default]
    NotOffloaded,
    /// An offload is running.
    Offloading,
    /// Done.
    Completed {
        /// Time to read the LFC state.
        state_query_time_ms: u32,
        /// Compression time.
        compress_time_ms: u32,
        /// Upload time.
        state_upload_time_ms: u32,
    },
    /// Failed.
    Failed {
        /// What failed.
        error: String,
    },
    /// The LFC had no state to offload.
    Skipped,
}

/// What a [`Job`]'s state type tells the one start/finish path.
trait JobState: Clone + PartialEq + Default + Send + std::fmt::Debug + 'static {
    /// The state while a run is on; a second start is refused in it.
    const RUNNING: Self;
    /// `prewarm` or `offload`, for thread names and messages.
    const NAME: &'static str;
    /// The job of this kind in `lfc`.
    fn job(lfc: &Lfc) -> &Job<Self>;
    /// A failed run.
    fn failed(error: String) -> Self;
    /// The error of a failed run.
    fn error(&self) -> Option<&str>;
    /// Called with a run's outcome before it becomes the state.
    fn settle(_lfc: &Lfc, _outcome: &Self) {}
}

impl JobState for PrewarmState {
    const RUNNING: Self = PrewarmState::Prewarming;
    const NAME: &'static str = "prewarm";

    fn job(lfc: &Lfc) -> &Job<Self> {
        &lfc.prewarm
    }

    fn failed(error: String) -> Self {
        PrewarmState::Failed { error }
    }

    fn error(&self) -> Option<&str> {
        match self {
            PrewarmState::Failed { error } => Some(error),
            _ => None,
        }
    }

    /// A cancelled run used the token up: the next prewarm gets a fresh one.
    fn settle(lfc: &Lfc, outcome: &Self) {
        if *outcome == PrewarmState::Cancelled {
            *lock(&lfc.cancel) = Arc::new(AtomicBool::new(false));
        }
    }
}

impl JobState for OffloadState {
    const RUNNING: Self = OffloadState::Offloading;
    const NAME: &'static str = "offload";

    fn job(lfc: &Lfc) -> &Job<Self> {
        &lfc.offload
    }

    fn failed(error: String) -> Self {
        OffloadState::Failed { error }
    }

    fn error(&self) -> Option<&str> {
        match self {
            OffloadState::Failed { error } => Some(error),
            _ => None,
        }
    }
}

/// One kind of background run: its state and its two counters.
#[derive(Debug, Default)]
struct Job<S> {
    state: Mutex<S>,
    /// Runs started (`compute_ctl_lfc_{prewarms,offloads}_total`).
    total: AtomicU64,
    /// Runs failed (`compute_ctl_lfc_{prewarm,offload}_errors_total`).
    errors: AtomicU64,
}

/// The four counters of `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Prewarms started.
    pub prewarms: u64,
    /// Prewarms failed.
    pub prewarm_errors: u64,
    /// Offloads started.
    pub offloads: u64,
    /// Offloads failed.
    pub offload_errors: u64,
}

/// The LFC prewarm/offload state of a compute, and its counters. One per process: the lead
/// keeps it as `Api::lfc: Arc<Lfc>`.
#[derive(Debug, Default)]
pub struct Lfc {
    prewarm: Job<PrewarmState>,
    offload: Job<OffloadState>,
    /// The cancellation token of prewarms; tripped by `DELETE`, replaced when a prewarm ends
    /// `cancelled`.
    cancel: Mutex<Arc<AtomicBool>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Lfc {
    /// A fresh state: `not_prewarmed`, `not_offloaded`, counters at 0.
    pub fn new() -> Lfc {
        Lfc::default()
    }

    /// The prewarm state.
    pub fn prewarm_state(&self) -> PrewarmState {
        lock(&self.prewarm.state).clone()
    }

    /// Sets the prewarm state (tests of other modules).
    #[cfg(test)]
    pub(crate) fn set_prewarm_state(&self, state: PrewarmState) {
        *lock(&self.prewarm.state) = state;
    }

    /// The offload state.
    pub fn offload_state(&self) -> OffloadState {
        lock(&self.offload.state).clone()
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        let load = |counter: &AtomicU64| counter.load(Ordering::SeqCst);
        Counters {
            prewarms: load(&self.prewarm.total),
            prewarm_errors: load(&self.prewarm.errors),
            offloads: load(&self.offload.total),
            offload_errors: load(&self.offload.errors),
        }
    }

    /// Starts a prewarm on a background thread, unless one is running (`false`). Used by
    /// `POST /lfc/prewarm` and by `autoprewarm` when the compute reaches `running`.
    pub fn start_prewarm(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        from_endpoint: Option<String>,
    ) -> bool {
        let shared = shared.clone();
        self.start(move |lfc| lfc.prewarm_work(&shared, from_endpoint.as_deref()))
    }

    /// Starts an offload on a background thread, unless one is running (`false`). Used by
    /// `POST /lfc/offload` and the periodic offload.
    pub fn start_offload(self: &Arc<Self>, shared: &Arc<Shared>) -> bool {
        let shared = shared.clone();
        self.start(move |_| offload_work(&shared))
    }

    /// The one start of both jobs: refuses while one of the kind runs, counts the run, and
    /// runs `work` on a thread whose outcome becomes the state (a thread that cannot start is
    /// a failed run).
    fn start<S: JobState>(self: &Arc<Self>, work: impl FnOnce(&Lfc) -> S + Send + 'static) -> bool {
        let job = S::job(self);
        {
            let mut state = lock(&job.state);
            if *state == S::RUNNING {
                return false;
            }
            *state = S::RUNNING;
        }
        job.total.fetch_add(1, Ordering::SeqCst);
        let lfc = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("lfc-{}", S::NAME))
            .spawn(move || {
                let outcome = work(&lfc);
                lfc.finish(outcome);
            });
        if let Err(error) = spawned {
            self.finish(S::failed(format!(
                "starting the {} thread: {error}",
                S::NAME
            )));
        }
        true
    }

    fn finish<S: JobState>(&self, outcome: S) {
        let job = S::job(self);
        match outcome.error() {
            Some(error) => {
                job.errors.fetch_add(1, Ordering::SeqCst);
                tracing::error!(%error, "LFC {} failed", S::NAME);
            }
            None => tracing::info!(state = ?outcome, "LFC {} finished", S::NAME),
        }
        S::settle(self, &outcome);
        *lock(&job.state) = outcome;
    }

    fn prewarm_work(&self, shared: &Shared, from_endpoint: Option<&str>) -> PrewarmState {
        let token = lock(&self.cancel).clone();
        work::prewarm(shared, from_endpoint, &token)
    }

    /// Trips the cancellation token: the running prewarm, or else the next one, ends
    /// `cancelled`.
    pub fn cancel_prewarm(&self) {
        lock(&self.cancel).store(true, Ordering::SeqCst);
    }

    /// Whether the periodic offload may run now (as upstream: after a completed, skipped or
    /// absent prewarm, never during one or after a failed or cancelled one).
    pub fn periodic_offload_allowed(&self) -> bool {
        matches!(
            self.prewarm_state(),
            PrewarmState::Completed { .. } | PrewarmState::NotPrewarmed | PrewarmState::Skipped
        )
    }

    /// Starts the periodic offload (`offload_lfc_interval_seconds`): every `interval`, the
    /// first after one interval, while the compute is not terminating. The thread ends when
    /// the compute starts terminating.
    pub fn spawn_periodic_offload(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        interval: Duration,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let (lfc, shared) = (self.clone(), shared.clone());
        std::thread::Builder::new()
            .name("lfc-offload-periodic".to_string())
            .spawn(move || loop {
                let stopping = shared.wait_until(interval, |inner| {
                    inner.status().is_terminating() || inner.status() == ComputeStatus::Terminated
                });
                let status = stopping.status();
                drop(stopping);
                if status.is_terminating() || status == ComputeStatus::Terminated {
                    return;
                }
                if lfc.periodic_offload_allowed() {
                    lfc.start_offload(&shared);
                }
            })
    }

    /// The four counters in Prometheus text format (HELP and TYPE as upstream), for
    /// `/metrics`.
    pub fn render_metrics(&self) -> String {
        let counters = self.counters();
        let mut out = String::new();
        for (name, help, value) in [
            (
                "compute_ctl_lfc_prewarms_total",
                "Total number of LFC prewarms requested by compute_ctl or autoprewarm option",
                counters.prewarms,
            ),
            (
                "compute_ctl_lfc_prewarm_errors_total",
                "Total number of LFC prewarm errors",
                counters.prewarm_errors,
            ),
            (
                "compute_ctl_lfc_offloads_total",
                "Total number of LFC offloads requested by compute_ctl or lfc_offload_period_seconds option",
                counters.offloads,
            ),
            (
                "compute_ctl_lfc_offload_errors_total",
                "Total number of LFC offload errors",
                counters.offload_errors,
            ),
        ] {
            crate::metrics::single(&mut out, (name, "counter"), help, value);
        }
        out
    }
}

fn offload_work(shared: &Shared) -> OffloadState {
    work::offload(shared)
}

#[cfg(test)]
mod test_kit;

#[cfg(test)]
mod tests {
    use super::test_kit::*;
    use super::*;
    use crate::testing::body;
    use serde_json::json;
    use std::time::Instant;

    #[test]
    fn states_serialise_as_upstream() {
        assert_eq!(
            serde_json::to_value(PrewarmState::NotPrewarmed).unwrap(),
            json!({"status": "not_prewarmed"})
        );
        assert_eq!(
            serde_json::to_value(PrewarmState::Completed {
                total: 3,
                prewarmed: 2,
                skipped: 1,
                state_download_time_ms: 4,
                uncompress_time_ms: 5,
                prewarm_time_ms: 6
            })
            .unwrap(),
            json!({"status": "completed", "total": 3, "prewarmed": 2, "skipped": 1,
                   "state_download_time_ms": 4, "uncompress_time_ms": 5, "prewarm_time_ms": 6})
        );
        assert_eq!(
            serde_json::to_value(PrewarmState::Failed { error: "e".into() }).unwrap(),
            json!({"status": "failed", "error": "e"})
        );
        assert_eq!(
            serde_json::to_value(PrewarmState::Cancelled).unwrap(),
            json!({"status": "cancelled"})
        );
        assert_eq!(
            serde_json::to_value(OffloadState::NotOffloaded).unwrap(),
            json!({"status": "not_offloaded"})
        );
        assert_eq!(
            serde_json::to_value(OffloadState::Completed {
                state_query_time_ms: 1,
                compress_time_ms: 2,
                state_upload_time_ms: 3
            })
            .unwrap(),
            json!({"status": "completed", "state_query_time_ms": 1, "compress_time_ms": 2, "state_upload_time_ms": 3})
        );
        assert_eq!(
            serde_json::to_value(OffloadState::Skipped).unwrap(),
            json!({"status": "skipped"})
        );
    }

    #[test]
    fn a_cancel_while_idle_cancels_the_next_prewarm() {
        let lfc = Arc::new(Lfc::new());
        let shared = shared_with(Some(complete()));
        assert_eq!(delete_prewarm(&lfc).status, 202);
        assert!(lfc.start_prewarm(&shared, None));
        assert_eq!(settled_prewarm(&lfc), PrewarmState::Cancelled);
        assert_eq!(body(&get_prewarm(&lfc)), json!({"status": "cancelled"}));
        assert_eq!(lfc.counters().prewarm_errors, 0);
        // The token was replaced: the next one runs (and fails: storage:9000 is not there).
        assert!(lfc.start_prewarm(&shared, None));
        assert!(error_of(&settled_prewarm(&lfc))
            .starts_with("querying endpoint storage http://storage:9000/"));
        assert_eq!(lfc.counters().prewarm_errors, 1);
        assert!(!lfc.periodic_offload_allowed());
    }

    #[test]
    fn periodic_offload_runs_and_stops_with_the_compute() {
        let lfc = Arc::new(Lfc::new());
        let shared = shared_with(Some(complete()));
        let periodic = lfc
            .spawn_periodic_offload(&shared, Duration::from_millis(20))
            .unwrap();
        let started = Instant::now();
        while lfc.counters().offloads < 2 {
            assert!(started.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(5));
        }
        shared
            .transition(ComputeStatus::TerminationPendingFast)
            .unwrap();
        let stopping = Instant::now();
        while !periodic.is_finished() {
            assert!(
                stopping.elapsed() < Duration::from_secs(10),
                "the periodic offload outlived the compute"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let count = lfc.counters().offloads;
        // Waits out an offload that must not happen (the thread has ended).
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(lfc.counters().offloads, count);
    }
}
