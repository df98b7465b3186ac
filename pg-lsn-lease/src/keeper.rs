//! The lease keeper of a Static compute: one thread that leases the compute's LSN on every
//! shard and renews it on upstream's schedule ([`LeaseSettings`]) until stopped or refused.
//! It knows its compute only through [`Compute`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use compute_spec::ids::Lsn;
use compute_spec::spec::{ComputeMode, ComputeSpec};
use stage_kit::retry::Backoff;

use crate::{lease_every_shard, targets, Error, Leases};

/// What the keeper needs of the compute it works for (compute-ctl implements it on its
/// shared state; the `pg-lsn-lease` binary on a fixed document).
pub trait Compute: Send + Sync + 'static {
    /// The compute's current spec; `None` before it has one. Read again before each
    /// attempt: a new spec's pageservers and token are used from the next one on.
    fn spec(&self) -> Option<ComputeSpec>;

    /// Waits at most `timeout` for `done` to hold of the current spec, checking it again
    /// whenever the compute's state changes and after each [`Compute::wake`].
    fn wait_for_spec(&self, timeout: Duration, done: &mut dyn FnMut(Option<&ComputeSpec>) -> bool);

    /// Ends every [`Compute::wait_for_spec`] that is under way for a new check.
    fn wake(&self);

    /// Each attempt's outcome as it ends, before the keeper's pause (default: nothing; the
    /// keeper counts them in its own [`LeaseStats`]).
    fn record(&self, _attempt: &Result<Leases, Error>) {}
}

/// The time limits and the schedule of the keeper.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseSettings {
    /// Connecting and authenticating, per pageserver.
    pub connect_timeout: Duration,
    /// The answer to one `lease lsn`.
    pub request_timeout: Duration,
    /// A lease is renewed this long before it ends (or halfway, if that is later).
    pub renew_margin: Duration,
    /// The first retry after a failed attempt.
    pub retry_initial: Duration,
    /// The factor between two retries.
    pub retry_factor: f64,
    /// The longest pause between two retries.
    pub retry_max: Duration,
    /// The shortest pause between two renewals, whatever the lease's length: a lease that
    /// ends within it (or has already ended: a pageserver's nonsensical answer) is renewed
    /// on the retry schedule instead, backing off, never in a loop.
    pub min_renewal: Duration,
}

impl Default for LeaseSettings {
    /// Upstream's schedule; the time limits are ours (upstream has none).
    fn default() -> Self {
        LeaseSettings {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            renew_margin: Duration::from_secs(60),
            retry_initial: Duration::from_millis(500),
            retry_factor: 1.5,
            retry_max: Duration::from_secs(60),
            min_renewal: Duration::from_secs(1),
        }
    }
}

impl LeaseSettings {
    /// The pause after a lease valid for `valid`: max(valid − margin, valid / 2).
    pub fn renew_after(&self, valid: Duration) -> Duration {
        valid.saturating_sub(self.renew_margin).max(valid / 2)
    }

    /// The pause after the `failures`-th failed attempt in a row (1 for the first):
    /// initial × factorⁿ⁻¹, at most the maximum.
    pub fn retry_after(&self, failures: u32) -> Duration {
        Backoff::exponential(self.retry_initial, self.retry_factor, self.retry_max).pause(failures)
    }
}

/// What the keeper has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseStats {
    /// Attempts (each covers every shard × pageserver).
    pub attempts: u64,
    /// Failed attempts.
    pub failures: u64,
    /// The earliest expiry of the last successful attempt.
    pub valid_until: Option<SystemTime>,
    /// A pageserver refused the lease: the thread ended.
    pub refused: bool,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
}

/// The lease thread of a Static compute.
pub struct LeaseKeeper {
    stop: Arc<AtomicBool>,
    compute: Arc<dyn Compute>,
    stats: Arc<Mutex<LeaseStats>>,
    thread: JoinHandle<()>,
}

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper")
            .field("stats", &self.stats())
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

impl LeaseKeeper {
    /// Starts the thread if the compute's spec is Static, on its LSN; `None` otherwise (or
    /// if the thread cannot be spawned, which is logged).
    pub fn start<C: Compute>(compute: Arc<C>, settings: LeaseSettings) -> Option<LeaseKeeper> {
        let mode = compute.spec().map(|spec| spec.mode);
        let Some(ComputeMode::Static(lsn)) = mode else {
            return None;
        };
        match LeaseKeeper::spawn(compute, lsn, settings) {
            Ok(keeper) => Some(keeper),
            Err(error) => {
                tracing::error!(%error, "cannot start the LSN lease thread: no leases");
                None
            }
        }
    }

    /// Starts the thread on `lsn`, whatever the spec's mode.
    pub fn spawn<C: Compute>(
        compute: Arc<C>,
        lsn: Lsn,
        settings: LeaseSettings,
    ) -> std::io::Result<LeaseKeeper> {
        let compute: Arc<dyn Compute> = compute;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(LeaseStats::default()));
        let run = Run {
            lsn,
            settings,
            compute: compute.clone(),
            stop: stop.clone(),
            stats: stats.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("lsn-lease".to_string())
            .spawn(move || run.run())?;
        Ok(LeaseKeeper {
            stop,
            compute,
            stats,
            thread,
        })
    }

    /// What the thread has done so far.
    pub fn stats(&self) -> LeaseStats {
        lock(&self.stats).clone()
    }

    /// Whether the thread has ended (a refusal, or a stop).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Stops renewing: the thread ends at once if it waits, or after the request under way
    /// (which has its time limit); this call does not wait for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.compute.wake();
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock(stats: &Mutex<LeaseStats>) -> std::sync::MutexGuard<'_, LeaseStats> {
    stats
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The thread's state.
struct Run {
    lsn: Lsn,
    settings: LeaseSettings,
    compute: Arc<dyn Compute>,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<LeaseStats>>,
}

impl Run {
    fn run(self) {
        tracing::info!(lsn = %self.lsn, "LSN lease thread started");
        let mut failures = 0u32;
        // Successive leases too short to renew on schedule.
        let mut short = 0u32;
        while !self.stop.load(Ordering::SeqCst) {
            let spec = self.compute.spec();
            let fingerprint = targets::fingerprint(spec.as_ref());
            let attempt = match &spec {
                Some(spec) => lease_every_shard(spec, self.lsn, &self.settings, &self.stop),
                None => Err(Error::NoSpec),
            };
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            self.compute.record(&attempt);
            let pause = {
                let mut stats = lock(&self.stats);
                stats.attempts += 1;
                match attempt {
                    Err(error) if error.is_refusal() => {
                        stats.refused = true;
                        stats.last_error = Some(error.to_string());
                        drop(stats);
                        tracing::warn!(
                            lsn = %self.lsn,
                            %error,
                            "the LSN lease was refused: no more renewals (the compute keeps running)"
                        );
                        return;
                    }
                    Ok(leases) => {
                        failures = 0;
                        stats.valid_until = Some(leases.valid_until);
                        stats.last_error = None;
                        let valid = leases
                            .valid_until
                            .duration_since(SystemTime::now())
                            .unwrap_or_default();
                        let on_schedule = self.settings.renew_after(valid);
                        let pause = if on_schedule < self.settings.min_renewal {
                            short = short.saturating_add(1);
                            let pause = self
                                .settings
                                .retry_after(short)
                                .max(self.settings.min_renewal);
                            tracing::warn!(
                                lsn = %self.lsn,
                                valid_ms = valid.as_millis() as u64,
                                retry_ms = pause.as_millis() as u64,
                                "the pageserver granted a lease that ends at once; renewing with back-off"
                            );
                            pause
                        } else {
                            short = 0;
                            on_schedule
                        };
                        tracing::info!(
                            lsn = %self.lsn,
                            valid_s = valid.as_secs(),
                            next_s = pause.as_secs(),
                            "LSN lease renewed"
                        );
                        pause
                    }
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        stats.failures += 1;
                        stats.last_error = Some(error.to_string());
                        let pause = self.settings.retry_after(failures);
                        tracing::warn!(
                            lsn = %self.lsn,
                            %error,
                            retry_ms = pause.as_millis() as u64,
                            "the LSN lease attempt failed"
                        );
                        pause
                    }
                }
            };
            self.compute.wait_for_spec(pause, &mut |spec| {
                self.stop.load(Ordering::SeqCst) || targets::fingerprint(spec) != fingerprint
            });
        }
        tracing::info!(lsn = %self.lsn, "LSN lease thread stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_kit::fixed;
    use pg_test_support::probe::eventually;
    use serde_json::json;

    #[test]
    fn the_schedule_is_upstreams() {
        let settings = LeaseSettings::default();
        let minutes = |m: u64| Duration::from_secs(60 * m);
        assert_eq!(settings.renew_after(minutes(10)), minutes(9));
        assert_eq!(settings.renew_after(minutes(1)), Duration::from_secs(30));
        assert_eq!(settings.renew_after(Duration::ZERO), Duration::ZERO);
        assert_eq!(
            settings.renew_after(Duration::from_secs(90)),
            Duration::from_secs(45)
        );
        assert_eq!(settings.retry_after(1), Duration::from_millis(500));
        assert_eq!(settings.retry_after(2), Duration::from_millis(750));
        assert_eq!(settings.retry_after(3), Duration::from_millis(1125));
        assert_eq!(settings.retry_after(12).as_millis(), 43_248);
        assert_eq!(settings.retry_after(13), Duration::from_secs(60));
        assert_eq!(settings.retry_after(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn only_a_static_compute_leases() {
        for mode in [json!("Primary"), json!("Replica")] {
            let (compute, _) = fixed(Some(json!({"mode": mode})));
            assert!(LeaseKeeper::start(compute, LeaseSettings::default()).is_none());
        }
        assert!(LeaseKeeper::start(fixed(None).0, LeaseSettings::default()).is_none());
    }

    #[test]
    fn a_compute_without_pageservers_is_retried_and_a_stop_ends_the_wait() {
        let (compute, outcomes) = fixed(Some(json!({"mode": {"Static": "0/16B3748"}})));
        let settings = LeaseSettings {
            retry_initial: Duration::from_secs(3600),
            ..LeaseSettings::default()
        };
        let mut keeper = LeaseKeeper::start(compute, settings).unwrap();
        eventually(Duration::from_secs(10), "an attempt", || {
            keeper.stats().attempts > 0
        });
        let stats = keeper.stats();
        assert_eq!((stats.attempts, stats.failures), (1, 1));
        let error = stats.last_error.unwrap();
        assert!(error.contains("names no pageserver"), "{error}");
        let recorded: Vec<_> = outcomes.try_iter().collect();
        match recorded.as_slice() {
            [Err((false, envelope))] => {
                assert_eq!(envelope.message, error);
                assert_eq!(envelope.kind, compute_spec::ErrorKind::InvalidSpec);
            }
            other => panic!("{other:?}"),
        }
        // The retry is an hour away: only the stop ends the wait.
        keeper.stop();
        eventually(Duration::from_secs(10), "the stop to end the wait", || {
            keeper.is_finished()
        });
        assert_eq!(keeper.stats().attempts, 1);
    }
}
