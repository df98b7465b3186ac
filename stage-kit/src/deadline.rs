//! Deadlines from durations that input chose (flags, spec values, the environment, a server's
//! answer), without the panicking `Instant + Duration`, and the duration flag parser
//! ([`parse_flag`]).
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

/// A duration flag: humantime's forms (`30s`, `1500ms`, `2m`, `1h 30m`, …), or a bare number
/// of seconds, which humantime refuses ("time unit needed") and compute-ctl's flags have
/// always taken.
pub fn parse_flag(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text)
        .map_err(|error| format!("{text:?} is not a duration ({error}); write e.g. 30s or 500ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let parse_duration = parse_flag;
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(
            parse_duration(&u64::MAX.to_string()),
            Ok(Duration::from_secs(u64::MAX))
        );
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        // humantime's other units and compound forms.
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration(&format!("{}m", u64::MAX)).is_err());
        for bad in ["x", "", "-1s", "2 parsecs", "30 s x"] {
            let error = parse_duration(bad).unwrap_err();
            assert!(error.contains("write e.g. 30s"), "{bad}: {error}");
        }
    }

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
