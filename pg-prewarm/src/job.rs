//! The background jobs of a compute: [`Lfc`] holds one prewarm and one offload job, each a
//! state, a "running" value that refuses a second start, a thread per run, and a run counter
//! and an error counter; the prewarm's cancellation token; the periodic offload.
//!
//! The jobs know their compute only through [`Compute`]: its current document, and a wait
//! that ends when it stops.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use compute_spec::ComputeDocument;

use crate::storage::storage_target;
use crate::work::{self, Location};
use crate::{Error, OffloadState, PrewarmState};

/// What the jobs need of the compute they work for (compute-ctl implements it on its shared
/// state).
pub trait Compute: Send + Sync + 'static {
    /// The compute's current document; `None` before it has one.
    fn document(&self) -> Option<ComputeDocument>;

    /// Waits at most `timeout`, returning early when the compute starts to stop; whether it
    /// is stopping (or stopped).
    fn wait_stopping(&self, timeout: Duration) -> bool;
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

/// The four counters (compute-ctl exports them on `/metrics`).
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

/// The LFC prewarm/offload state of a compute, and its counters. One per process: compute-ctl
/// keeps it as `Api::lfc: Arc<Lfc>`.
#[derive(Debug, Default)]
pub struct Lfc {
    prewarm: Job<PrewarmState>,
    offload: Job<OffloadState>,
    /// The cancellation token of prewarms; tripped by [`Lfc::cancel_prewarm`], replaced when a
    /// prewarm ends `cancelled`.
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

    /// Sets the prewarm state (tests of code that reads it).
    #[cfg(any(test, feature = "test-kit"))]
    pub fn set_prewarm_state(&self, state: PrewarmState) {
        *lock(&self.prewarm.state) = state;
    }

    /// The offload state.
    pub fn offload_state(&self) -> OffloadState {
        lock(&self.offload.state).clone()
    }

    /// Sets the offload state (tests of code that reads it).
    #[cfg(any(test, feature = "test-kit"))]
    pub fn set_offload_state(&self, state: OffloadState) {
        *lock(&self.offload.state) = state;
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

    /// Starts a prewarm from endpoint storage (the state of `from_endpoint`, else of the
    /// compute's own endpoint) on a background thread, unless one is running (`false`).
    /// compute-ctl's `POST /lfc/prewarm` and `autoprewarm` when the compute reaches `running`.
    pub fn start_prewarm<C: Compute>(
        self: &Arc<Self>,
        compute: &Arc<C>,
        from_endpoint: Option<String>,
    ) -> bool {
        let compute = compute.clone();
        self.start(move |lfc| {
            let token = lock(&lfc.cancel).clone();
            prewarm_run(compute.as_ref(), from_endpoint.as_deref(), &token)
        })
    }

    /// Starts an offload to endpoint storage on a background thread, unless one is running
    /// (`false`). compute-ctl's `POST /lfc/offload` and the periodic offload.
    pub fn start_offload<C: Compute>(self: &Arc<Self>, compute: &Arc<C>) -> bool {
        let compute = compute.clone();
        self.start(move |_| offload_run(compute.as_ref()))
    }

    /// The one start of both jobs: refuses while one of the kind runs, counts the run, and
    /// runs `work` on a thread whose outcome becomes the state (a thread that cannot start is
    /// a failed run).
    fn start<S: JobState>(
        self: &Arc<Self>,
        work: impl FnOnce(&Lfc) -> Result<S, Error> + Send + 'static,
    ) -> bool {
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
                // A panic in the work still settles the job (else it would stay running, and
                // every later start would be refused).
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&lfc)));
                let outcome = match ran {
                    Ok(done) => done.unwrap_or_else(|error| S::failed(error.to_string())),
                    Err(panic) => {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|text| text.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "no message".to_string());
                        S::failed(
                            Error::Internal(format!("the {} job panicked: {what}", S::NAME))
                                .to_string(),
                        )
                    }
                };
                lfc.finish(outcome);
            });
        if let Err(error) = spawned {
            self.finish(S::failed(
                Error::Internal(format!("starting the {} thread: {error}", S::NAME)).to_string(),
            ));
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
    /// first after one interval, while the compute is not stopping. The thread ends when the
    /// compute starts to stop.
    pub fn spawn_periodic_offload<C: Compute>(
        self: &Arc<Self>,
        compute: &Arc<C>,
        interval: Duration,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let (lfc, compute) = (self.clone(), compute.clone());
        std::thread::Builder::new()
            .name("lfc-offload-periodic".to_string())
            .spawn(move || {
                while !compute.wait_stopping(interval) {
                    if lfc.periodic_offload_allowed() {
                        lfc.start_offload(&compute);
                    }
                }
            })
    }
}

/// The compute's document, which must have a spec.
fn document_of(compute: &dyn Compute) -> Result<ComputeDocument, Error> {
    compute
        .document()
        .filter(|document| document.spec.is_some())
        .ok_or(Error::NoSpec)
}

/// A prewarm from endpoint storage.
fn prewarm_run(
    compute: &dyn Compute,
    from_endpoint: Option<&str>,
    cancel: &AtomicBool,
) -> Result<PrewarmState, Error> {
    let document = document_of(compute)?;
    let target = storage_target(&document, from_endpoint)?;
    work::prewarm(&document, &Location::Storage(target), cancel)
}

/// An offload to endpoint storage.
fn offload_run(compute: &dyn Compute) -> Result<OffloadState, Error> {
    let document = document_of(compute)?;
    let target = storage_target(&document, None)?;
    work::offload(&document, &Location::Storage(target))
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
