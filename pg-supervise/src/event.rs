//! The events `pg-supervise` writes on stdout, one JSON object a line, flushed at once.
//!
//! ```text
//! {"event":"ready","pid":123,"start_postgres_ms":57}
//! {"event":"activity","last_active":"2026-11-24T22:00:00.123Z"}
//! {"event":"downtime","current_ms":0,"total_ms":1500}
//! {"event":"exited","code":0,"signal":null}
//! ```
//! `exited` is always the last line.

use std::time::SystemTime;

use compute_spec::event::SuperviseEvent;
use serde_json::Value;

/// One line on stdout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `postmaster.pid` said `ready`.
    Ready {
        /// The postmaster's pid.
        pid: i32,
        /// Milliseconds from spawn to ready.
        start_postgres_ms: u64,
    },
    /// The last moment user activity was seen moved forward.
    Activity {
        /// When (RFC 3339, UTC, milliseconds).
        last_active: SystemTime,
    },
    /// The monitor's connection downtime changed.
    Downtime {
        /// The current outage so far (0 when connected).
        current_ms: u64,
        /// All outages since start, including the current one.
        total_ms: u64,
    },
    /// The postmaster exited: its exit code, or the signal that killed it.
    Exited {
        /// Exit code, when it exited normally.
        code: Option<i32>,
        /// Signal number, when a signal killed it.
        signal: Option<i32>,
    },
}

impl Event {
    /// The wire form of this event (the type whose schema is published).
    pub fn to_wire(&self) -> SuperviseEvent {
        match *self {
            Event::Ready {
                pid,
                start_postgres_ms,
            } => SuperviseEvent::Ready {
                pid,
                start_postgres_ms,
            },
            Event::Activity { last_active } => SuperviseEvent::Activity {
                last_active: humantime::format_rfc3339_millis(last_active).to_string(),
            },
            Event::Downtime {
                current_ms,
                total_ms,
            } => SuperviseEvent::Downtime {
                current_ms,
                total_ms,
            },
            Event::Exited { code, signal } => SuperviseEvent::Exited { code, signal },
        }
    }

    /// The JSON object for this event.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.to_wire()).unwrap_or(Value::Null)
    }

    /// Writes the event as one line on stdout and flushes; false when stdout is closed.
    pub fn emit(&self) -> bool {
        compute_spec::stage::write_json(&self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn events_have_the_documented_shape() {
        let ready = Event::Ready {
            pid: 123,
            start_postgres_ms: 57,
        };
        assert_eq!(
            ready.to_json().to_string(),
            r#"{"event":"ready","pid":123,"start_postgres_ms":57}"#
        );
        let activity = Event::Activity {
            last_active: UNIX_EPOCH + Duration::from_millis(1_795_989_600_123),
        };
        assert_eq!(
            activity.to_json().to_string(),
            r#"{"event":"activity","last_active":"2026-11-29T22:00:00.123Z"}"#
        );
        let downtime = Event::Downtime {
            current_ms: 0,
            total_ms: 1500,
        };
        assert_eq!(
            downtime.to_json().to_string(),
            r#"{"event":"downtime","current_ms":0,"total_ms":1500}"#
        );
        let exited = Event::Exited {
            code: Some(0),
            signal: None,
        };
        assert_eq!(
            exited.to_json().to_string(),
            r#"{"event":"exited","code":0,"signal":null}"#
        );
    }
}
