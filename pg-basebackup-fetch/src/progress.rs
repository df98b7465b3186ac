//! Counting the bytes read from the wire, with progress lines on stderr for long fetches.

use std::io::{self, Read};
use std::time::{Duration, Instant};

/// How often a progress line is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// A reader that counts what passes through it and logs progress (bytes, rate) every
/// couple of seconds.
pub struct Counting<R> {
    inner: R,
    bytes: u64,
    started: Instant,
    next_report: Instant,
    what: &'static str,
}

impl<R> Counting<R> {
    /// Wraps `inner`; `what` names the stream in progress lines.
    pub fn new(inner: R, what: &'static str) -> Self {
        let now = Instant::now();
        Counting {
            inner,
            bytes: 0,
            started: now,
            next_report: stage_kit::deadline::saturating_add(now, PROGRESS_EVERY),
            what,
        }
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl<R> Counting<R> {
    /// Counts `n` bytes that went past (for a stream read by other means than `read`).
    pub fn add(&mut self, n: usize) {
        self.bytes += n as u64;
        let now = Instant::now();
        if now >= self.next_report {
            self.next_report = stage_kit::deadline::saturating_add(now, PROGRESS_EVERY);
            let seconds = now.duration_since(self.started).as_secs_f64().max(0.001);
            let mib = self.bytes as f64 / (1024.0 * 1024.0);
            tracing::info!(
                "{}: {mib:.0} MiB read ({:.0} MiB/s)",
                self.what,
                mib / seconds
            );
        }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.add(n);
        Ok(n)
    }
}
