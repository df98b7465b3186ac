//! LSN leases for Static (time-travel) computes, upstream's `lsn_lease.rs` (reference §8):
//! a pageserver keeps a Static compute's LSN out of garbage collection only while the compute
//! holds a lease on it.
//!
//! One thread per compute, started when the spec is known (before the basebackup, which reads
//! at that LSN), only for `{"Static": "<lsn>"}`; the LSN is the one of the spec at start. Each
//! attempt re-reads the stored spec's pageservers and `storage_auth_token` and sends
//! `lease lsn <tenant_shard_id> <timeline_id> <lsn> ` to every shard × every listed
//! pageserver ([`targets`]), over libpq through [`stage_kit::wire`] (token as password, no
//! TLS, every wait bounded: [`LeaseSettings`]). The attempt's result is the earliest
//! `valid_until`; a refusal (NULL: the LSN is below the GC cutoff) anywhere ends the thread
//! with a warning and no more renewals, the compute keeps running. After a lease the thread
//! sleeps max(valid − 60 s, valid / 2); after a failed attempt (any pageserver failing) it
//! retries after 500 ms × 1.5ⁿ, at most 60 s, without limit. Both waits end early when the
//! stored pageservers or token change (`/configure`, `/refresh_configuration`). The thread
//! lives in compute-ctl (the process that holds the current spec and outlives each
//! Postgres run) and stops with Postgres: [`LeaseKeeper::stop`] when pg-supervise exits or
//! the start fails.
//!
//! Upstream's gRPC path (`prefer_protocol: "grpc"`) is not implemented: spec validation
//! already requires a `libpq_url` for every shard.

mod request;
pub mod targets;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use compute_spec::ids::Lsn;
use compute_spec::spec::ComputeMode;

pub use request::{command, Answer};

use crate::state::Shared;

/// The time limits and the schedule of the lease thread.
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
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let seconds = self.retry_initial.as_secs_f64() * self.retry_factor.powi(exponent);
        if seconds.is_finite() && seconds < self.retry_max.as_secs_f64() {
            Duration::from_secs_f64(seconds.max(0.0))
        } else {
            self.retry_max
        }
    }
}

/// What the lease thread has done so far.
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
#[derive(Debug)]
pub struct LeaseKeeper {
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    stats: Arc<Mutex<LeaseStats>>,
    thread: Option<JoinHandle<()>>,
}

impl LeaseKeeper {
    /// Starts the thread if the stored spec is Static; `None` otherwise (or if the thread
    /// cannot be spawned, which is logged).
    pub fn start(shared: Arc<Shared>, settings: LeaseSettings) -> Option<LeaseKeeper> {
        let mode = shared
            .lock()
            .document
            .as_ref()
            .and_then(|document| document.spec.as_ref())
            .map(|spec| spec.mode);
        let Some(ComputeMode::Static(lsn)) = mode else {
            return None;
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(LeaseStats::default()));
        let run = Run {
            lsn,
            settings,
            shared: shared.clone(),
            stop: stop.clone(),
            stats: stats.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("lsn-lease".to_string())
            .spawn(move || run.run());
        match thread {
            Ok(thread) => Some(LeaseKeeper {
                stop,
                shared,
                stats,
                thread: Some(thread),
            }),
            Err(error) => {
                tracing::error!(%error, "cannot start the LSN lease thread: no leases");
                None
            }
        }
    }

    /// What the thread has done so far.
    pub fn stats(&self) -> LeaseStats {
        lock(&self.stats).clone()
    }

    /// Whether the thread has ended (a refusal, or a stop).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops renewing: the thread ends at once if it waits, or after the request under way
    /// (which has its time limit); this call does not wait for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the thread's wait on the shared state.
        self.shared.update(|_| ());
        self.thread = None;
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
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<LeaseStats>>,
}

/// How one attempt ended.
enum Attempt {
    /// Every pageserver leased; the earliest expiry.
    Leased(SystemTime),
    /// A pageserver refused.
    Refused(String),
    /// Something failed (the refusal check still saw every pageserver).
    Failed(String),
}

impl Run {
    fn run(self) {
        tracing::info!(lsn = %self.lsn, "LSN lease thread started");
        let mut failures = 0u32;
        while !self.stop.load(Ordering::SeqCst) {
            let (fingerprint, attempt) = self.attempt();
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let pause = {
                let mut stats = lock(&self.stats);
                stats.attempts += 1;
                match attempt {
                    Attempt::Refused(error) => {
                        stats.refused = true;
                        stats.last_error = Some(error.clone());
                        drop(stats);
                        tracing::warn!(
                            lsn = %self.lsn,
                            %error,
                            "the LSN lease was refused: no more renewals (the compute keeps running)"
                        );
                        return;
                    }
                    Attempt::Leased(valid_until) => {
                        failures = 0;
                        stats.valid_until = Some(valid_until);
                        stats.last_error = None;
                        let valid = valid_until
                            .duration_since(SystemTime::now())
                            .unwrap_or_default();
                        let pause = self.settings.renew_after(valid);
                        tracing::info!(
                            lsn = %self.lsn,
                            valid_s = valid.as_secs(),
                            next_s = pause.as_secs(),
                            "LSN lease renewed"
                        );
                        pause
                    }
                    Attempt::Failed(error) => {
                        failures = failures.saturating_add(1);
                        stats.failures += 1;
                        stats.last_error = Some(error.clone());
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
            drop(self.shared.wait_until(pause, |inner| {
                self.stop.load(Ordering::SeqCst)
                    || targets::fingerprint(
                        inner
                            .document
                            .as_ref()
                            .and_then(|document| document.spec.as_ref()),
                    ) != fingerprint
            }));
        }
        tracing::info!(lsn = %self.lsn, "LSN lease thread stopped");
    }

    /// One attempt on the stored spec's pageservers; also returns their fingerprint.
    fn attempt(&self) -> (String, Attempt) {
        let spec = self
            .shared
            .lock()
            .document
            .as_ref()
            .and_then(|document| document.spec.clone());
        let fingerprint = targets::fingerprint(spec.as_ref());
        let Some(spec) = spec else {
            return (
                fingerprint,
                Attempt::Failed("the compute has no spec".to_string()),
            );
        };
        let targets = match targets::targets(&spec) {
            Ok(targets) => targets,
            Err(error) => return (fingerprint, Attempt::Failed(error)),
        };
        let token = spec.storage_auth_token.as_ref().map(|token| token.expose());
        let mut earliest: Option<SystemTime> = None;
        let mut refused = None;
        let mut failed = None;
        for target in &targets {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let answer = request::lease(
                target,
                token,
                self.lsn,
                self.settings.connect_timeout,
                self.settings.request_timeout,
            );
            match answer {
                Ok(Answer::ValidUntil(until)) => {
                    earliest = Some(earliest.map_or(until, |earliest| earliest.min(until)));
                }
                Ok(Answer::Refused) => {
                    refused.get_or_insert(format!(
                        "the pageserver refused to lease {} on {} (below its GC cutoff)",
                        self.lsn, target.tenant_shard_id
                    ));
                }
                Err(error) => {
                    failed.get_or_insert(format!("{}: {error}", target.tenant_shard_id));
                }
            }
        }
        let attempt = match (refused, failed, earliest) {
            (Some(refused), _, _) => Attempt::Refused(refused),
            (None, Some(failed), _) => Attempt::Failed(failed),
            (None, None, Some(earliest)) => Attempt::Leased(earliest),
            (None, None, None) => Attempt::Failed("no pageserver was asked".to_string()),
        };
        (fingerprint, attempt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
