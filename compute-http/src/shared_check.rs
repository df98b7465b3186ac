//! A check that many concurrent requests share (a probe's): at most one runs at a time, on a
//! thread of its own (it may block); its outcome answers every caller for a while; a caller
//! waits for the one under way at most a given time. So a flood of unauthenticated probes
//! costs one check per cache period, never one per request, and never holds a worker.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What a caller of [`SharedCheck::outcome`] gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A check's result that ended within the cache period (the reason when it failed).
    Done(Result<(), String>),
    /// No check ended within the caller's wait.
    TimedOut,
    /// No thread could be started for the check.
    CannotStart(String),
}

#[derive(Debug, Default)]
struct State {
    /// When the last check ended, and its result.
    last: Option<(Instant, Result<(), String>)>,
    /// Whether a check is under way.
    running: bool,
    /// Checks started since this value was made.
    started: u64,
}

/// The shared state of one check (one per probe route and server process).
#[derive(Debug, Default)]
pub struct SharedCheck {
    state: Mutex<State>,
    ended: tokio::sync::Notify,
}

impl SharedCheck {
    /// The result of a check that ended less than `cache` ago; else waits (at most `wait`)
    /// for the check under way, starting one with `check` (on a new thread named `name`)
    /// when none is.
    pub async fn outcome<F, C>(
        self: &Arc<Self>,
        name: &str,
        cache: Duration,
        wait: Duration,
        check: F,
    ) -> Outcome
    where
        F: Fn() -> C,
        C: FnOnce() -> Result<(), String> + Send + 'static,
    {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if let Some(outcome) = self.cached_or_started(name, cache, &check) {
                return outcome;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return Outcome::TimedOut;
            }
        }
    }

    /// How many checks were started.
    pub fn started(&self) -> u64 {
        self.lock().started
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh result; else `None`, a check being under way (started here when none was).
    fn cached_or_started<F, C>(
        self: &Arc<Self>,
        name: &str,
        cache: Duration,
        check: &F,
    ) -> Option<Outcome>
    where
        F: Fn() -> C,
        C: FnOnce() -> Result<(), String> + Send + 'static,
    {
        let mut state = self.lock();
        if let Some((ended, result)) = &state.last {
            if ended.elapsed() < cache {
                return Some(Outcome::Done(result.clone()));
            }
        }
        if state.running {
            return None;
        }
        let run = check();
        let shared = Arc::clone(self);
        let started = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let result = run();
                let mut state = shared.lock();
                state.last = Some((Instant::now(), result));
                state.running = false;
                drop(state);
                shared.ended.notify_waiters();
            });
        match started {
            Ok(_) => {
                state.running = true;
                state.started += 1;
                None
            }
            Err(error) => Some(Outcome::CannotStart(error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn callers_share_one_check_and_its_cached_result() {
        let check = Arc::new(SharedCheck::default());
        let calls = (0..32).map(|_| {
            let check = Arc::clone(&check);
            async move {
                check
                    .outcome(
                        "check",
                        Duration::from_secs(60),
                        Duration::from_secs(5),
                        || {
                            || {
                                std::thread::sleep(Duration::from_millis(50));
                                Err("down".to_string())
                            }
                        },
                    )
                    .await
            }
        });
        let outcomes = futures_join(calls).await;
        assert!(outcomes
            .iter()
            .all(|outcome| *outcome == Outcome::Done(Err("down".to_string()))));
        assert_eq!(check.started(), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_caller_waits_at_most_its_wait() {
        let check = Arc::new(SharedCheck::default());
        let started = Instant::now();
        let outcome = check
            .outcome(
                "check",
                Duration::from_secs(1),
                Duration::from_millis(100),
                || {
                    || {
                        std::thread::sleep(Duration::from_secs(2));
                        Ok(())
                    }
                },
            )
            .await;
        assert_eq!(outcome, Outcome::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    /// Runs the futures concurrently on this task's runtime.
    async fn futures_join<F: std::future::Future + Send + 'static>(
        futures: impl Iterator<Item = F>,
    ) -> Vec<F::Output>
    where
        F::Output: Send + 'static,
    {
        let handles: Vec<_> = futures.map(tokio::spawn).collect();
        let mut outputs = Vec::new();
        for handle in handles {
            outputs.push(handle.await.unwrap());
        }
        outputs
    }
}
