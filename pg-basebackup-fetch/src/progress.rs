//! Counting the bytes read from the wire, with progress lines on stderr for long fetches, and
//! the retry loop's progress clock ([`Progress`]) ticked whenever bytes go past.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use stage_kit::retry::Progress;

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
    clock: Option<Progress>,
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
            clock: None,
        }
    }

    /// Also ticks `clock` whenever bytes go past.
    pub fn ticking(mut self, clock: &Progress) -> Self {
        self.clock = Some(clock.clone());
        self
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
        if n > 0 {
            if let Some(clock) = &self.clock {
                clock.tick();
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_going_past_tick_the_clock_and_nothing_else_does() {
        let clock = Progress::new();
        std::thread::sleep(Duration::from_millis(30));
        let mut counting = Counting::new(io::empty(), "test").ticking(&clock);
        counting.add(0);
        assert!(clock.without_progress() >= Duration::from_millis(30));
        counting.add(1);
        assert!(clock.without_progress() < Duration::from_millis(30));
        assert_eq!(Counting::bytes(&counting), 1);
    }
}
