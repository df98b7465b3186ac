//! Retrying an operation that may work the next time (a request to a peer, a child program
//! that lost a race): the one retry loop of the workspace, with a typed [`Policy`] — attempts,
//! a back-off between them, a deadline measured from the last [`Progress`] — and a predicate
//! saying which errors are worth another attempt.
//!
//! ```
//! use std::time::Duration;
//! use stage_kit::retry::{Backoff, Policy, Retry, Stop};
//!
//! let policy = Policy {
//!     attempts: 3,
//!     backoff: Backoff::fixed(Duration::ZERO),
//!     deadline: None,
//! };
//! let mut calls = 0;
//! let outcome = Retry::new(&policy)
//!     .when(|error: &&str| *error == "busy")
//!     .run(|_| {
//!         calls += 1;
//!         if calls < 3 { Err("busy") } else { Ok(calls) }
//!     });
//! assert!(matches!(outcome, Ok((3, 3))));
//! ```
//!
//! Why not a crate (`backon`): the loops here give up for reasons their errors name (retries
//! used up, or no progress for so long, with the attempts made), count their attempts into
//! their results, pause interruptibly (a signal ends a pause), and bound by time without
//! progress rather than since the start; a crate's loop would need all of that around it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The pauses between attempts: `initial × factor^(n−1)` before retry `n`, at most `max`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The pause before the first retry.
    pub initial: Duration,
    /// The factor between two pauses.
    pub factor: f64,
    /// The longest pause.
    pub max: Duration,
}

impl Backoff {
    /// The same pause before every retry.
    pub const fn fixed(pause: Duration) -> Backoff {
        Backoff {
            initial: pause,
            factor: 1.0,
            max: pause,
        }
    }

    /// Growing pauses: `initial`, then × `factor` each time, at most `max`.
    pub const fn exponential(initial: Duration, factor: f64, max: Duration) -> Backoff {
        Backoff {
            initial,
            factor,
            max,
        }
    }

    /// The pause before retry `retry` (1 for the first): `initial × factor^(retry−1)`, at most
    /// `max` — saturating, never a panic, whatever the numbers; zero when the product is
    /// negative or not a number (a negative or NaN factor).
    pub fn pause(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let seconds = self.initial.as_secs_f64() * self.factor.powi(exponent);
        if seconds.is_nan() || seconds <= 0.0 {
            Duration::ZERO
        } else if seconds >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::try_from_secs_f64(seconds).unwrap_or(self.max)
        }
    }
}

/// How a loop retries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// Attempts in all, the first included (at least one is made).
    pub attempts: u32,
    /// The pauses between them.
    pub backoff: Backoff,
    /// The longest the loop may go without [`Progress`]: no retry is made when the pause
    /// before it would end at or past it. Without progress reported, the time since the
    /// loop began.
    pub deadline: Option<Duration>,
}

/// When the operation last made progress (bytes arrived, say), shared by every attempt of a
/// loop and ticked by the operation: what [`Policy::deadline`] bounds. A clone is the same
/// clock.
#[derive(Clone, Debug)]
pub struct Progress {
    origin: Instant,
    /// Milliseconds from `origin` to the last progress.
    last: Arc<AtomicU64>,
}

impl Progress {
    /// A clock whose last progress is now.
    pub fn new() -> Self {
        Progress {
            origin: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records progress now.
    pub fn tick(&self) {
        let millis = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(millis, Ordering::Relaxed);
    }

    /// How long since the last progress (or since the clock was made).
    pub fn without_progress(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// One attempt, as the operation sees it.
#[derive(Debug)]
pub struct Attempt<'a> {
    /// 1 for the first.
    pub number: u32,
    progress: &'a Progress,
    deadline: Option<Duration>,
}

impl Attempt<'_> {
    /// What is left of the deadline now (`None` without one): an attempt's own time limits
    /// are capped by it.
    pub fn left(&self) -> Option<Duration> {
        self.deadline
            .map(|deadline| deadline.saturating_sub(self.progress.without_progress()))
    }

    /// The loop's progress clock, for the operation to tick.
    pub fn progress(&self) -> &Progress {
        self.progress
    }
}

/// Why a loop stopped without a result.
#[derive(Debug, PartialEq)]
pub enum Stop<E> {
    /// An error to return as it is: the operation's, not worth retrying, or the one the
    /// pause ended with ([`Retry::pause_with`]: a signal, say).
    Final {
        /// Attempts made.
        attempts: u32,
        /// The error.
        error: E,
    },
    /// Every attempt of [`Policy::attempts`] failed; `last` is the last one's error.
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: E,
    },
    /// The pause before the next attempt would end past [`Policy::deadline`].
    OutOfTime {
        /// Attempts made.
        attempts: u32,
        /// The time without progress when the loop gave up.
        without_progress: Duration,
        /// The last attempt's error.
        last: E,
    },
}

/// Told of each retry: the error, the attempt that failed and the pause before the next.
type Notify<'a, E> = Box<dyn FnMut(&E, u32, Duration) + 'a>;

/// A retry loop being set up: [`Retry::new`], then [`Retry::when`], then [`Retry::run`].
pub struct Retry<'a, E> {
    policy: &'a Policy,
    progress: Option<&'a Progress>,
    retryable: Box<dyn FnMut(&E) -> bool + 'a>,
    before_pause: Notify<'a, E>,
    pause: Box<dyn FnMut(Duration) -> Result<(), E> + 'a>,
}

impl<'a, E> Retry<'a, E> {
    /// A loop under `policy` that retries no error (see [`Retry::when`]) and pauses by
    /// sleeping.
    pub fn new(policy: &'a Policy) -> Self {
        Retry {
            policy,
            progress: None,
            retryable: Box::new(|_| false),
            before_pause: Box::new(|_, _, _| {}),
            pause: Box::new(|pause| {
                std::thread::sleep(pause);
                Ok(())
            }),
        }
    }

    /// Which errors are worth another attempt.
    pub fn when(mut self, retryable: impl FnMut(&E) -> bool + 'a) -> Self {
        self.retryable = Box::new(retryable);
        self
    }

    /// The clock the deadline is measured on (ticked by the operation); by default one
    /// nobody ticks: the deadline counts from the start.
    pub fn progress(mut self, progress: &'a Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Called before each pause with the error, the attempt that failed and the pause (to
    /// log them).
    pub fn before_pause(mut self, notify: impl FnMut(&E, u32, Duration) + 'a) -> Self {
        self.before_pause = Box::new(notify);
        self
    }

    /// How to pause: an error ends the loop with [`Stop::Final`] (a signal arrived, say).
    pub fn pause_with(mut self, pause: impl FnMut(Duration) -> Result<(), E> + 'a) -> Self {
        self.pause = Box::new(pause);
        self
    }

    /// Runs `operation` until it succeeds (its value and the attempts made), fails with an
    /// error not worth retrying, or the policy gives up.
    pub fn run<T>(
        mut self,
        mut operation: impl FnMut(&Attempt<'_>) -> Result<T, E>,
    ) -> Result<(T, u32), Stop<E>> {
        let own = Progress::new();
        let progress = self.progress.unwrap_or(&own);
        let mut number = 1;
        loop {
            let attempt = Attempt {
                number,
                progress,
                deadline: self.policy.deadline,
            };
            let error = match operation(&attempt) {
                Ok(value) => return Ok((value, number)),
                Err(error) if (self.retryable)(&error) => error,
                Err(error) => {
                    return Err(Stop::Final {
                        attempts: number,
                        error,
                    })
                }
            };
            if number >= self.policy.attempts {
                return Err(Stop::Exhausted {
                    attempts: number,
                    last: error,
                });
            }
            let pause = self.policy.backoff.pause(number);
            if let Some(deadline) = self.policy.deadline {
                let idle = progress.without_progress();
                if idle.saturating_add(pause) >= deadline {
                    return Err(Stop::OutOfTime {
                        attempts: number,
                        without_progress: idle,
                        last: error,
                    });
                }
            }
            (self.before_pause)(&error, number, pause);
            (self.pause)(pause).map_err(|error| Stop::Final {
                attempts: number,
                error,
            })?;
            number += 1;
        }
    }
}

#[cfg(test)]
mod tests;
