//! The exporter: a bounded queue of finished spans and one background thread that posts
//! them to the collector, a batch at a time, each post within the configured deadline.
//!
//! Nothing that records spans ever waits for the collector: [`Exporter::export`] only
//! queues, and when the queue is full the spans are dropped and counted. A post that fails
//! (refused, an error status, or no answer within the deadline) drops its batch and counts
//! it too; nothing is retried (a collector that is down would otherwise hold the queue).
//! Only [`Exporter::flush`] waits, for at most the time it is given.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use compute_spec::trace::SpanRecord;

use crate::config::Config;
use crate::otlp;

/// How long a flush waits for a post to a collector that never answered one: a local
/// collector answers in milliseconds, and one that is not there must not hold an exit.
pub const FIRST_ANSWER_GRACE: Duration = Duration::from_millis(100);

/// What the exporter did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans dropped: the queue was full, or their export failed.
    pub dropped: u64,
    /// Exports that failed (refused, an error status, or past the deadline).
    pub failed_exports: u64,
}

#[derive(Default)]
struct Queue {
    spans: VecDeque<SpanRecord>,
    /// Spans of the post under way.
    in_flight: usize,
    /// When the post under way began.
    posting_since: Option<Instant>,
    /// The collector answered a post (accepting it or not) at least once.
    answered: bool,
    /// Exports that failed, as seen by `flush`.
    failures: u64,
}

struct Shared {
    config: Config,
    queue: Mutex<Queue>,
    /// Wakes the thread when spans arrive.
    arrived: Condvar,
    /// Wakes `flush` when a post ends.
    settled: Condvar,
    exported: AtomicU64,
    dropped: AtomicU64,
    failed_exports: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The exporter of one process.
#[derive(Clone)]
pub struct Exporter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("endpoint", &self.shared.config.shown_endpoint())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Exporter {
    /// Starts the exporter's thread; `Err` when no thread can be started.
    pub fn start(config: Config) -> std::io::Result<Exporter> {
        let shared = Arc::new(Shared {
            config,
            queue: Mutex::new(Queue::default()),
            arrived: Condvar::new(),
            settled: Condvar::new(),
            exported: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed_exports: AtomicU64::new(0),
        });
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("trace-export".into())
            .spawn(move || run(&worker))?;
        Ok(Exporter { shared })
    }

    /// Queues `spans` for export without waiting; what does not fit is dropped and counted.
    pub fn export(&self, spans: impl IntoIterator<Item = SpanRecord>) {
        let mut dropped = 0;
        {
            let mut queue = self.shared.lock();
            for span in spans {
                if queue.spans.len() + queue.in_flight < self.shared.config.max_queue {
                    queue.spans.push_back(span);
                } else {
                    dropped += 1;
                }
            }
        }
        self.shared.arrived.notify_one();
        if dropped > 0 {
            let before = self.shared.dropped.fetch_add(dropped, Ordering::Relaxed);
            if before == 0 {
                tracing::warn!(
                    endpoint = %self.shared.config.shown_endpoint(),
                    "the trace export queue is full: spans are dropped (counted in \
                     compute_ctl_trace_spans_dropped_total)"
                );
            }
        }
    }

    /// What the exporter did so far.
    pub fn stats(&self) -> Stats {
        Stats {
            exported: self.shared.exported.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            failed_exports: self.shared.failed_exports.load(Ordering::Relaxed),
        }
    }

    /// Waits until every queued span was posted (accepted or not: see [`Exporter::stats`]), at
    /// most `within`, and not while a post hangs — under way for longer than `within`, or for
    /// longer than [`FIRST_ANSWER_GRACE`] to a collector that never answered one — nor once a
    /// post fails (the collector is not there to wait for). True when nothing is left to
    /// post.
    pub fn flush(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut queue = self.shared.lock();
        let failures = queue.failures;
        loop {
            if queue.spans.is_empty() && queue.in_flight == 0 {
                return true;
            }
            let now = Instant::now();
            let patience = match queue.answered {
                true => within,
                false => within.min(FIRST_ANSWER_GRACE),
            };
            let stuck = queue
                .posting_since
                .is_some_and(|since| now.duration_since(since) > patience);
            if now >= deadline || queue.failures != failures || stuck {
                return false;
            }
            // Looked at again at least every 10 ms: a post may start to hang meanwhile.
            let nap = (deadline - now).min(Duration::from_millis(10));
            queue = self
                .shared
                .settled
                .wait_timeout(queue, nap)
                .map_or_else(|poisoned| poisoned.into_inner().0, |(queue, _)| queue);
        }
    }
}

/// The thread: takes a batch, posts it, counts; forever (it ends with the process).
fn run(shared: &Shared) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(shared.config.timeout))
        .build()
        .into();
    loop {
        let batch: Vec<SpanRecord> = {
            let mut queue = shared.lock();
            while queue.spans.is_empty() {
                queue = shared
                    .arrived
                    .wait(queue)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            let take = queue.spans.len().min(shared.config.max_batch);
            let batch: Vec<SpanRecord> = queue.spans.drain(..take).collect();
            queue.in_flight = batch.len();
            queue.posting_since = Some(Instant::now());
            batch
        };
        let outcome = post(&agent, &shared.config, &batch);
        let count = batch.len() as u64;
        {
            let mut queue = shared.lock();
            queue.in_flight = 0;
            queue.posting_since = None;
            match &outcome {
                Ok(()) => queue.answered = true,
                Err(failure) => {
                    queue.answered |= failure.answered;
                    queue.failures += 1;
                }
            }
        }
        match outcome {
            Ok(()) => {
                shared.exported.fetch_add(count, Ordering::Relaxed);
            }
            Err(error) => {
                shared.dropped.fetch_add(count, Ordering::Relaxed);
                let failures = shared.failed_exports.fetch_add(1, Ordering::Relaxed) + 1;
                // The first failure, then one line in a hundred: a collector that is down
                // does not fill the log.
                if failures % 100 == 1 {
                    tracing::warn!(
                        endpoint = %shared.config.shown_endpoint(),
                        failures,
                        "trace export failed, {count} spans dropped: {error}"
                    );
                }
            }
        }
        shared.settled.notify_all();
    }
}

/// Why a post was not accepted.
struct Failure {
    /// The collector answered (with an error status).
    answered: bool,
    why: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// Posts one batch.
fn post(agent: &ureq::Agent, config: &Config, batch: &[SpanRecord]) -> Result<(), Failure> {
    let body = otlp::encode(&config.resource, batch);
    let mut request = agent
        .post(&config.endpoint)
        .header("Content-Type", otlp::CONTENT_TYPE);
    for (name, value) in &config.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send(&body[..]).map_err(|error| Failure {
        answered: false,
        why: error.to_string(),
    })?;
    match response.status().as_u16() {
        200..=299 => Ok(()),
        status => Err(Failure {
            answered: true,
            why: format!("the collector answered {status}"),
        }),
    }
}
