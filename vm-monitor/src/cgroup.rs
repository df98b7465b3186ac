//! cgroup v2 memory watching: `memory.stat` parsing, the rolling average of
//! non-reclaimable memory, the upscale threshold and the downscale decision.
//!
//! The watcher only *reads* the cgroup (`memory.stat`, and `memory.max` once at
//! start); it never writes `memory.high` or any other control file.
//!
//! All decisions are pure functions of [`MemoryState`] and a caller-supplied
//! `Instant`, so they are unit-tested without threads or files.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::MIB;

/// How often `memory.stat` is sampled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Number of samples in the rolling average.
pub const HISTORY_LEN: usize = 5;
/// Fraction of usable memory at which an `UpscaleRequest` is sent.
pub const THRESHOLD_FRACTION: f64 = 0.85;
/// Memory kept aside for the OS and agents: usable = total − this.
pub const RESERVED_MEMORY: u64 = 100 * MIB;
/// Headroom required above current use for a downscale to be granted.
pub const DOWNSCALE_HEADROOM: u64 = 100 * MIB;
/// A downscale is refused with an error when the newest sample is older.
pub const MAX_SAMPLE_AGE: Duration = Duration::from_secs(5);
/// Minimum spacing of `UpscaleRequest` messages.
pub const UPSCALE_REQUEST_INTERVAL: Duration = Duration::from_secs(1);

/// Failure to read a cgroup file.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file did not have the expected content.
    #[error("cannot parse {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// Non-reclaimable memory (`active_anon + inactive_anon`) from the text of a
/// cgroup v2 `memory.stat` file, in bytes.
pub fn parse_memory_stat(text: &str) -> Result<u64, String> {
    let mut active = None;
    let mut inactive = None;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let slot = match key {
            "active_anon" => &mut active,
            "inactive_anon" => &mut inactive,
            _ => continue,
        };
        let v: u64 = value
            .parse()
            .map_err(|e| format!("bad value {value:?} for {key}: {e}"))?;
        *slot = Some(v);
    }
    match (active, inactive) {
        (Some(a), Some(i)) => Ok(a.saturating_add(i)),
        (None, _) => Err("missing active_anon".into()),
        (_, None) => Err("missing inactive_anon".into()),
    }
}

/// Reads and parses `memory.stat` in `dir`.
pub fn read_memory_stat(dir: &Path) -> Result<u64, CgroupError> {
    let path = dir.join("memory.stat");
    let text = std::fs::read_to_string(&path).map_err(|source| CgroupError::Read {
        path: path.clone(),
        source,
    })?;
    parse_memory_stat(&text).map_err(|reason| CgroupError::Parse { path, reason })
}

/// Reads `memory.max` in `dir`: `Some(bytes)` if numeric, `None` for `max`
/// or when unreadable.
pub fn read_memory_max(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join("memory.max"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Upscale threshold for a VM with `total` bytes of memory:
/// 85 % of (total − 100 MiB).
pub fn threshold_for(total: u64) -> u64 {
    let usable = total.saturating_sub(RESERVED_MEMORY);
    (usable as f64 * THRESHOLD_FRACTION) as u64
}

/// Fixed-size window of timestamped samples.
#[derive(Debug, Clone, Default)]
pub struct History {
    samples: VecDeque<(Instant, u64)>,
}

impl History {
    /// Adds a sample, evicting the oldest beyond [`HISTORY_LEN`].
    pub fn push(&mut self, at: Instant, bytes: u64) {
        if self.samples.len() == HISTORY_LEN {
            self.samples.pop_front();
        }
        self.samples.push_back((at, bytes));
    }

    /// Number of samples held (≤ [`HISTORY_LEN`]).
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample has arrived yet.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Mean of the held samples, `None` when empty.
    pub fn average(&self) -> Option<u64> {
        if self.samples.is_empty() {
            return None;
        }
        let sum: u128 = self.samples.iter().map(|&(_, b)| u128::from(b)).sum();
        u64::try_from(sum / self.samples.len() as u128).ok()
    }

    /// Time of the newest sample.
    pub fn newest(&self) -> Option<Instant> {
        self.samples.back().map(|&(t, _)| t)
    }
}

/// Everything the session needs to know about memory, shared with the watcher.
#[derive(Debug, Clone)]
pub struct MemoryState {
    /// Whether a cgroup is being watched at all.
    pub managed: bool,
    /// When watching started.
    pub started: Instant,
    /// Recent samples.
    pub history: History,
    /// Current VM memory (bytes), once known.
    pub total: Option<u64>,
    /// Current upscale threshold (bytes), once known.
    pub threshold: Option<u64>,
    /// When the last `UpscaleRequest` was sent.
    pub last_upscale_request: Option<Instant>,
}

/// Outcome of [`MemoryState::evaluate_downscale`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownscaleDecision {
    /// Allowed; apply `new_threshold` and answer `Ok: true` with `status`.
    Grant {
        /// Threshold after the downscale (`None` when nothing is managed).
        new_threshold: Option<u64>,
        /// Explanation for the agent.
        status: String,
    },
    /// Refused; answer `Ok: false` with the reason.
    Deny(String),
    /// Cannot decide; answer `InternalError`.
    Error(String),
}

impl MemoryState {
    /// A fresh state; `total` is the initial memory if known.
    pub fn new(managed: bool, total: Option<u64>, now: Instant) -> Self {
        Self {
            managed,
            started: now,
            history: History::default(),
            total,
            threshold: total.map(threshold_for),
            last_upscale_request: None,
        }
    }

    /// Records the memory granted by an upscale.
    pub fn apply_upscale(&mut self, granted: u64) {
        self.total = Some(granted);
        self.threshold = Some(threshold_for(granted));
    }

    /// Decides whether shrinking to `target` bytes is safe (does not mutate).
    pub fn evaluate_downscale(&self, target: u64, now: Instant) -> DownscaleDecision {
        if !self.managed {
            return DownscaleDecision::Grant {
                new_threshold: None,
                status: "no cgroup is managed; downscale is always allowed".into(),
            };
        }
        let fresh = |t: Instant| now.saturating_duration_since(t) <= MAX_SAMPLE_AGE;
        match self.history.newest() {
            Some(t) if !fresh(t) => {
                return DownscaleDecision::Error(format!(
                    "no cgroup memory sample in the last {}s",
                    MAX_SAMPLE_AGE.as_secs()
                ))
            }
            None if !fresh(self.started) => {
                return DownscaleDecision::Error(format!(
                    "no cgroup memory sample received in {}s of watching",
                    MAX_SAMPLE_AGE.as_secs()
                ))
            }
            _ => {}
        }
        if self.history.len() < 2 {
            return DownscaleDecision::Deny(
                "not enough cgroup memory samples yet to judge a downscale".into(),
            );
        }
        let avg = self.history.average().unwrap_or(0);
        let new_threshold = threshold_for(target);
        let needed = avg.saturating_add(DOWNSCALE_HEADROOM);
        if new_threshold < needed {
            return DownscaleDecision::Deny(format!(
                "new memory threshold {} MiB would be below current usage {} MiB + {} MiB headroom",
                new_threshold / MIB,
                avg / MIB,
                DOWNSCALE_HEADROOM / MIB
            ));
        }
        DownscaleDecision::Grant {
            new_threshold: Some(new_threshold),
            status: format!(
                "downscale to {} MiB allowed: threshold {} MiB, current usage {} MiB",
                target / MIB,
                new_threshold / MIB,
                avg / MIB
            ),
        }
    }

    /// Records a granted downscale.
    pub fn apply_downscale(&mut self, target: u64, new_threshold: Option<u64>) {
        if self.managed {
            self.total = Some(target);
            self.threshold = new_threshold;
        }
    }

    /// Whether memory use is at or above the threshold.
    pub fn under_pressure(&self) -> bool {
        match (self.threshold, self.history.average()) {
            (Some(t), Some(avg)) => self.managed && avg >= t,
            _ => false,
        }
    }

    /// Returns true (and records `now`) when an `UpscaleRequest` should be sent:
    /// under pressure and none sent in the last [`UPSCALE_REQUEST_INTERVAL`].
    pub fn take_upscale_request(&mut self, now: Instant) -> bool {
        if !self.under_pressure() {
            return false;
        }
        if let Some(last) = self.last_upscale_request {
            if now.saturating_duration_since(last) < UPSCALE_REQUEST_INTERVAL {
                return false;
            }
        }
        self.last_upscale_request = Some(now);
        true
    }
}

/// Body of the watcher thread: samples `dir/memory.stat` every
/// [`POLL_INTERVAL`] into `state` until `stop` is set.
pub fn watch(dir: PathBuf, state: Arc<Mutex<MemoryState>>, stop: Arc<AtomicBool>) {
    let mut failing = false;
    let mut last_logged: Option<(Instant, Option<u64>)> = None;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        match read_memory_stat(&dir) {
            Ok(bytes) => {
                if failing {
                    tracing::info!(dir = %dir.display(), "cgroup memory.stat readable again");
                    failing = false;
                }
                let Ok(mut st) = state.lock() else { return };
                st.history.push(now, bytes);
                let avg = st.history.average();
                let threshold = st.threshold;
                drop(st);
                let due = last_logged.is_none_or(|(t, a)| {
                    now.duration_since(t) >= Duration::from_secs(2) && a != avg
                });
                if due {
                    tracing::debug!(
                        avg_mib = avg.map(|a| a / MIB),
                        threshold_mib = threshold.map(|t| t / MIB),
                        "cgroup memory history"
                    );
                    last_logged = Some((now, avg));
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "failed to sample cgroup memory");
                    failing = true;
                }
            }
        }
        sleep_unless_stopped(POLL_INTERVAL, &stop);
    }
}

/// Sleeps for `d` in small steps, returning early when `stop` is set.
pub(crate) fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let end = stage_kit::deadline::after(d);
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn parses_memory_stat() {
        let text = "anon 1\nfile 2\nactive_anon 300\ninactive_anon 45\nactive_file 9\n";
        assert_eq!(parse_memory_stat(text), Ok(345));
        assert!(parse_memory_stat("active_anon 1\n").is_err());
        assert!(parse_memory_stat("inactive_anon 1\n").is_err());
        assert!(parse_memory_stat("active_anon x\ninactive_anon 1").is_err());
        assert!(parse_memory_stat("").is_err());
    }

    #[test]
    fn rolling_average_keeps_last_five() {
        let t = Instant::now();
        let mut h = History::default();
        assert_eq!(h.average(), None);
        for v in [10, 20, 30, 40, 50, 60, 70] {
            h.push(t, v);
        }
        assert_eq!(h.len(), 5);
        assert_eq!(h.average(), Some((30 + 40 + 50 + 60 + 70) / 5));
    }

    #[test]
    fn threshold_math() {
        assert_eq!(threshold_for(GIB), ((GIB - 100 * MIB) as f64 * 0.85) as u64);
        assert_eq!(threshold_for(50 * MIB), 0);
    }

    fn state_with(samples: &[u64], total: u64, now: Instant) -> MemoryState {
        let mut s = MemoryState::new(true, Some(total), now);
        for &v in samples {
            s.history.push(now, v);
        }
        s
    }

    #[test]
    fn downscale_decisions() {
        let now = Instant::now();
        // Plenty of room: 4 GiB → 2 GiB with 200 MiB used.
        let s = state_with(&[200 * MIB, 200 * MIB], 4 * GIB, now);
        match s.evaluate_downscale(2 * GIB, now) {
            DownscaleDecision::Grant { new_threshold, .. } => {
                assert_eq!(new_threshold, Some(threshold_for(2 * GIB)))
            }
            other => panic!("{other:?}"),
        }
        // 1 GiB target → threshold ≈ 785 MiB; 700 MiB used + 100 MiB > 785 → deny.
        let s = state_with(&[700 * MIB; 3], 4 * GIB, now);
        assert!(
            matches!(s.evaluate_downscale(GIB, now), DownscaleDecision::Deny(r) if r.contains("below"))
        );
        // Boundary: exactly threshold - headroom is allowed.
        let t = threshold_for(GIB);
        let s = state_with(&[t - DOWNSCALE_HEADROOM; 2], 4 * GIB, now);
        assert!(matches!(
            s.evaluate_downscale(GIB, now),
            DownscaleDecision::Grant { .. }
        ));
        let s = state_with(&[t - DOWNSCALE_HEADROOM + 1; 2], 4 * GIB, now);
        assert!(matches!(
            s.evaluate_downscale(GIB, now),
            DownscaleDecision::Deny(_)
        ));
        // One sample only → deny.
        let s = state_with(&[MIB], 4 * GIB, now);
        assert!(
            matches!(s.evaluate_downscale(GIB, now), DownscaleDecision::Deny(r) if r.contains("samples"))
        );
        // Stale newest sample → error.
        let later = now + Duration::from_secs(6);
        let s = state_with(&[MIB; 5], 4 * GIB, now);
        assert!(matches!(
            s.evaluate_downscale(GIB, later),
            DownscaleDecision::Error(_)
        ));
        // No sample at all after watching for > 5 s → error; before → deny.
        let s = state_with(&[], 4 * GIB, now);
        assert!(matches!(
            s.evaluate_downscale(GIB, now),
            DownscaleDecision::Deny(_)
        ));
        assert!(matches!(
            s.evaluate_downscale(GIB, later),
            DownscaleDecision::Error(_)
        ));
        // Unmanaged → always granted.
        let s = MemoryState::new(false, None, now);
        assert!(matches!(
            s.evaluate_downscale(1, later),
            DownscaleDecision::Grant {
                new_threshold: None,
                ..
            }
        ));
    }

    #[test]
    fn upscale_requests_are_rate_limited() {
        let now = Instant::now();
        let mut s = state_with(&[900 * MIB; 5], GIB, now);
        assert!(s.under_pressure());
        assert!(s.take_upscale_request(now));
        assert!(!s.take_upscale_request(now + Duration::from_millis(999)));
        assert!(s.take_upscale_request(now + Duration::from_millis(1000)));
        // After an upscale to 4 GiB, 900 MiB is no longer pressure.
        s.apply_upscale(4 * GIB);
        assert!(!s.under_pressure());
        assert!(!s.take_upscale_request(now + Duration::from_secs(5)));
        // Unknown threshold → never pressure.
        let mut s = MemoryState::new(true, None, now);
        s.history.push(now, u64::MAX);
        assert!(!s.take_upscale_request(now));
    }
}
