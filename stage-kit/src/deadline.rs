//! Deadlines from durations that input chose (flags, spec values, the environment, a server's
//! answer), without the panicking `Instant + Duration`.
//!
//! A duration too long to add to the clock saturates to a far-future deadline: `--timeout` of
//! `u64::MAX` seconds means "wait as long as it takes", not a panic. Every `Instant` deadline in
//! production code is built here.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `start + duration`, or the farthest instant the clock can represent up to it when that
/// overflows (never earlier than half of `duration` past `start`, or the end of the clock).
pub fn saturating_add(start: Instant, duration: Duration) -> Instant {
    let mut step = duration;
    loop {
        if let Some(deadline) = start.checked_add(step) {
            return deadline;
        }
        // Terminates: `step` reaches zero, and `start + 0` is always representable.
        step /= 2;
    }
}

/// The deadline `duration` from now, saturating (see [`saturating_add`]).
pub fn after(duration: Duration) -> Instant {
    saturating_add(Instant::now(), duration)
}

/// The wall-clock time `since_epoch` after the Unix epoch, or `None` when the clock cannot
/// represent it.
pub fn since_epoch(since_epoch: Duration) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(since_epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ordinary_duration_adds_exactly() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        assert_eq!(
            saturating_add(start, second),
            start.checked_add(second).unwrap()
        );
        assert_eq!(saturating_add(start, Duration::ZERO), start);
    }

    #[test]
    fn a_huge_duration_saturates_to_a_far_future_deadline() {
        let start = Instant::now();
        for huge in [Duration::MAX, Duration::from_secs(u64::MAX)] {
            let deadline = saturating_add(start, huge);
            assert!(deadline > start);
            assert!(deadline.duration_since(start) > Duration::from_secs(100 * 365 * 86_400));
        }
        assert!(after(Duration::MAX) > Instant::now());
    }

    #[test]
    fn an_unrepresentable_wall_clock_time_is_none() {
        assert_eq!(since_epoch(Duration::MAX), None);
        assert_eq!(
            since_epoch(Duration::from_secs(60)),
            UNIX_EPOCH.checked_add(Duration::from_secs(60))
        );
    }
}
