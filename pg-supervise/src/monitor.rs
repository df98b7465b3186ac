//! The activity monitor: after `ready`, every 500 ms on one connection, it works out when a user
//! was last active, as upstream's compute-monitor does, and reports connection downtime.
//!
//! Each tick reads every signal in one query, then the first that fires (in upstream's order)
//! gives the candidate `last_active`:
//! 1. with the `activity_monitor_experimental` feature: the sums of `active_time` and `sessions`
//!    in `pg_stat_database` (except `postgres`, `template0`, `template1`) changed since the
//!    previous tick ⇒ now (catches connections shorter than a tick);
//! 2. a client backend, other than the monitor's own and the admin role's, that is not `idle`
//!    (idle in transaction counts) ⇒ now; else the latest `state_change` of idle ones, when
//!    it is newer than `last_active` (when it is not, the checks below still run);
//! 3. a walsender other than `walproposer` ⇒ now;
//! 4. a subscription worker with a pid ⇒ now;
//! 5. an autovacuum worker ⇒ now.
//!
//! `last_active` only moves forward and is unset until the first activity. When a tick fails
//! the connection is dropped and re-made on the next tick; failed ticks count as downtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use compute_spec::document::ComputeDocument;
use compute_spec::error::StageError;
use compute_spec::spec::ComputeFeature;

use compute_spec::event::SuperviseEvent;

use crate::event;
use crate::STAGE;

/// The monitor connection's `application_name` (as upstream).
pub const APPLICATION_NAME: &str = "compute_ctl:compute_monitor";
/// Time between ticks.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// Every signal, read in one round trip; `$1` is the admin role, whose sessions do not count.
const SIGNALS_QUERY: &str = "\
SELECT
  (SELECT coalesce(sum(active_time), 0)::float8 FROM pg_stat_database
     WHERE datname NOT IN ('postgres', 'template0', 'template1')),
  (SELECT coalesce(sum(sessions), 0)::int8 FROM pg_stat_database
     WHERE datname NOT IN ('postgres', 'template0', 'template1')),
  (SELECT count(*) FROM pg_stat_activity
     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
       AND usename IS DISTINCT FROM $1 AND state IS DISTINCT FROM 'idle'),
  (SELECT extract(epoch FROM max(state_change))::float8 FROM pg_stat_activity
     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
       AND usename IS DISTINCT FROM $1 AND state = 'idle'),
  (SELECT count(*) FROM pg_stat_replication
     WHERE application_name IS DISTINCT FROM 'walproposer'),
  (SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL),
  (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker')";

/// What one tick read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// Sum of `active_time` (ms) and of `sessions` over user databases.
    pub database_activity: (f64, i64),
    /// Client backends (not ours, not the admin's) in a state other than `idle`.
    pub busy_clients: i64,
    /// The latest `state_change` of idle client backends.
    pub idle_since: Option<SystemTime>,
    /// Walsenders other than `walproposer`.
    pub walsenders: i64,
    /// Subscription workers running.
    pub subscriptions: i64,
    /// Autovacuum workers running.
    pub autovacuum_workers: i64,
}

/// Turns observations into a `last_active` that only moves forward.
#[derive(Clone, Debug, Default)]
pub struct ActivityTracker {
    experimental: bool,
    previous_database_activity: Option<(f64, i64)>,
    last_active: Option<SystemTime>,
}

impl ActivityTracker {
    /// A tracker; `experimental` enables the `pg_stat_database` signal.
    pub fn new(experimental: bool) -> ActivityTracker {
        ActivityTracker {
            experimental,
            ..ActivityTracker::default()
        }
    }

    /// The last activity seen, if any.
    pub fn last_active(&self) -> Option<SystemTime> {
        self.last_active
    }

    /// Takes one observation made at `now`; returns the new `last_active` when it moved.
    pub fn observe(&mut self, observation: &Observation, now: SystemTime) -> Option<SystemTime> {
        let candidate = self.candidate(observation, now)?;
        if self.last_active.is_some_and(|last| last >= candidate) {
            return None;
        }
        self.last_active = Some(candidate);
        Some(candidate)
    }

    fn candidate(&mut self, observation: &Observation, now: SystemTime) -> Option<SystemTime> {
        let previous = self
            .previous_database_activity
            .replace(observation.database_activity);
        if self.experimental && previous.is_some_and(|p| p != observation.database_activity) {
            return Some(now);
        }
        if observation.busy_clients > 0 {
            return Some(now);
        }
        // An idle session's state change is a candidate only when it is news; otherwise the
        // tick goes on (as upstream): a compute whose only activity is replication, a
        // subscription or autovacuum must not look idle because a pooler holds idle sessions.
        if let Some(idle_since) = observation.idle_since {
            if self.last_active.is_none_or(|last| idle_since > last) {
                return Some(idle_since);
            }
        }
        let others = [
            observation.walsenders,
            observation.subscriptions,
            observation.autovacuum_workers,
        ];
        others.iter().any(|&n| n > 0).then_some(now)
    }
}

/// Counts how long the monitor could not reach Postgres. An outage is counted from the last
/// successful tick (Postgres was last known up then) to the first successful one after it.
#[derive(Clone, Debug, Default)]
pub struct DowntimeTracker {
    last_up: Option<Instant>,
    outage_started: Option<Instant>,
    finished: Duration,
}

impl DowntimeTracker {
    /// A failed tick at `now`: returns (current outage, total) in ms.
    pub fn failed(&mut self, now: Instant) -> (u64, u64) {
        let started = *self
            .outage_started
            .get_or_insert(self.last_up.unwrap_or(now));
        let current = now.saturating_duration_since(started);
        (millis(current), millis(self.finished + current))
    }

    /// A successful tick at `now`: returns (0, total) when an outage just ended.
    pub fn succeeded(&mut self, now: Instant) -> Option<(u64, u64)> {
        self.last_up = Some(now);
        let started = self.outage_started.take()?;
        self.finished += now.saturating_duration_since(started);
        Some((0, millis(self.finished)))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Starts the monitor thread for `document`'s Postgres. It calls `emit` with `activity` and
/// `downtime` events and ends when `stop` is set or `emit` returns false.
pub fn start(
    document: &ComputeDocument,
    stop: Arc<AtomicBool>,
    emit: impl Fn(SuperviseEvent) -> bool + Send + 'static,
) -> Result<(), StageError> {
    let config = stage_kit::local::admin_config(document, STAGE, APPLICATION_NAME, None)?;
    let admin_user = stage_kit::local::admin_user(document);
    let experimental = document.spec.as_ref().is_some_and(|spec| {
        spec.features
            .contains(&ComputeFeature::ActivityMonitorExperimental)
    });
    let mut monitor = Monitor {
        config,
        admin_user,
        connection: None,
        activity: ActivityTracker::new(experimental),
        downtime: DowntimeTracker::default(),
        last_downtime: None,
    };
    std::thread::Builder::new()
        .name("compute-monitor".into())
        .spawn(move || {
            let mut next_tick = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                for event in monitor.tick() {
                    if stop.load(Ordering::Relaxed) || !emit(event) {
                        return;
                    }
                }
                next_tick = stage_kit::deadline::saturating_add(next_tick, INTERVAL);
                let now = Instant::now();
                if next_tick < now {
                    next_tick = now;
                }
                std::thread::sleep(next_tick - now);
            }
        })
        .map_err(|error| {
            StageError::new(
                STAGE,
                compute_spec::error::ErrorKind::Internal,
                format!("starting the activity monitor thread: {error}"),
            )
        })?;
    Ok(())
}

struct Monitor {
    config: postgres::Config,
    admin_user: String,
    connection: Option<(postgres::Client, postgres::Statement)>,
    activity: ActivityTracker,
    downtime: DowntimeTracker,
    last_downtime: Option<(u64, u64)>,
}

impl Monitor {
    /// One tick: the events it produced.
    fn tick(&mut self) -> Vec<SuperviseEvent> {
        let mut events = Vec::new();
        match self.observe() {
            Ok(observation) => {
                if let Some(downtime) = self.downtime.succeeded(Instant::now()) {
                    tracing::info!("activity monitor reconnected to postgres");
                    events.extend(self.downtime_event(downtime));
                }
                if let Some(last_active) = self.activity.observe(&observation, SystemTime::now()) {
                    events.push(event::activity(last_active));
                }
            }
            Err(error) => {
                if self.last_downtime.is_none_or(|(current, _)| current == 0) {
                    tracing::warn!("activity monitor cannot query postgres: {error}");
                }
                self.connection = None;
                let downtime = self.downtime.failed(Instant::now());
                events.extend(self.downtime_event(downtime));
            }
        }
        events
    }

    fn downtime_event(&mut self, downtime: (u64, u64)) -> Option<SuperviseEvent> {
        if self.last_downtime == Some(downtime) {
            return None;
        }
        self.last_downtime = Some(downtime);
        Some(SuperviseEvent::Downtime {
            current_ms: downtime.0,
            total_ms: downtime.1,
        })
    }

    fn observe(&mut self) -> Result<Observation, postgres::Error> {
        let (client, statement) = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let mut client = self.config.connect(postgres::NoTls)?;
                let statement = client.prepare(SIGNALS_QUERY)?;
                self.connection.insert((client, statement))
            }
        };
        let row = client.query_one(&*statement, &[&self.admin_user])?;
        Ok(Observation {
            database_activity: (row.try_get(0)?, row.try_get(1)?),
            busy_clients: row.try_get(2)?,
            idle_since: row
                .try_get::<_, Option<f64>>(3)?
                .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
                .and_then(stage_kit::deadline::since_epoch),
            walsenders: row.try_get(4)?,
            subscriptions: row.try_get(5)?,
            autovacuum_workers: row.try_get(6)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn nothing_happening_leaves_last_active_unset() {
        let mut tracker = ActivityTracker::new(true);
        for second in 0..3 {
            assert_eq!(tracker.observe(&Observation::default(), at(second)), None);
        }
        assert_eq!(tracker.last_active(), None);
    }

    #[test]
    fn each_signal_counts() {
        let signals = [
            Observation {
                busy_clients: 1,
                ..Observation::default()
            },
            Observation {
                walsenders: 1,
                ..Observation::default()
            },
            Observation {
                subscriptions: 2,
                ..Observation::default()
            },
            Observation {
                autovacuum_workers: 1,
                ..Observation::default()
            },
        ];
        for observation in signals {
            let mut tracker = ActivityTracker::new(false);
            assert_eq!(
                tracker.observe(&observation, at(10)),
                Some(at(10)),
                "{observation:?}"
            );
        }
    }

    #[test]
    fn idle_sessions_give_their_state_change() {
        let mut tracker = ActivityTracker::new(false);
        let idle = Observation {
            idle_since: Some(at(5)),
            ..Observation::default()
        };
        assert_eq!(tracker.observe(&idle, at(10)), Some(at(5)));
        // Unchanged: no new event.
        assert_eq!(tracker.observe(&idle, at(11)), None);
        // Only forward: an older state change (the newer session left) does not move it back.
        let older = Observation {
            idle_since: Some(at(3)),
            ..Observation::default()
        };
        assert_eq!(tracker.observe(&older, at(12)), None);
        assert_eq!(tracker.last_active(), Some(at(5)));
    }

    #[test]
    fn an_old_idle_session_does_not_hide_the_other_signals() {
        let idle = |more: Observation| Observation {
            idle_since: Some(at(5)),
            ..more
        };
        let signals = [
            Observation {
                walsenders: 1,
                ..Observation::default()
            },
            Observation {
                subscriptions: 1,
                ..Observation::default()
            },
            Observation {
                autovacuum_workers: 1,
                ..Observation::default()
            },
        ];
        for signal in signals {
            let mut tracker = ActivityTracker::new(false);
            assert_eq!(
                tracker.observe(&idle(Observation::default()), at(6)),
                Some(at(5))
            );
            assert_eq!(
                tracker.observe(&idle(signal.clone()), at(20)),
                Some(at(20)),
                "{signal:?}"
            );
            assert_eq!(
                tracker.observe(&idle(signal.clone()), at(21)),
                Some(at(21)),
                "{signal:?}"
            );
        }
    }

    #[test]
    fn database_counters_count_only_with_the_feature_and_only_on_change() {
        let before = Observation {
            database_activity: (10.0, 3),
            ..Observation::default()
        };
        let after = Observation {
            database_activity: (10.0, 4),
            ..Observation::default()
        };
        let mut off = ActivityTracker::new(false);
        assert_eq!(off.observe(&before, at(1)), None);
        assert_eq!(off.observe(&after, at(2)), None);
        let mut on = ActivityTracker::new(true);
        // The first tick only sets the baseline.
        assert_eq!(on.observe(&before, at(1)), None);
        assert_eq!(on.observe(&before, at(2)), None);
        assert_eq!(on.observe(&after, at(3)), Some(at(3)));
        assert_eq!(on.observe(&after, at(4)), None);
    }

    #[test]
    fn downtime_accumulates_over_outages() {
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        let mut downtime = DowntimeTracker::default();
        // Never up yet: the outage starts at the first failure.
        assert_eq!(downtime.failed(ms(0)), (0, 0));
        assert_eq!(downtime.succeeded(ms(500)), Some((0, 500)));
        assert_eq!(downtime.succeeded(ms(1000)), None);
        // Counted from the last successful tick.
        assert_eq!(downtime.failed(ms(1500)), (500, 1000));
        assert_eq!(downtime.failed(ms(2000)), (1000, 1500));
        assert_eq!(downtime.succeeded(ms(2500)), Some((0, 2000)));
    }
}
