//! The events `pg-supervise` writes on stdout, one JSON object a line, tagged by `event`:
//!
//! ```text
//! {"event":"ready","pid":123,"start_postgres_ms":57}
//! {"event":"activity","last_active":"2026-11-24T22:00:00.123Z"}
//! {"event":"downtime","current_ms":0,"total_ms":1500}
//! {"event":"exited","code":0,"signal":null}
//! ```
//!
//! `exited` is always the last line. A start failure is an error envelope line instead.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One line of `pg-supervise`'s stdout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SuperviseEvent {
    /// `postmaster.pid` said `ready`.
    Ready {
        /// The postmaster's pid.
        pid: i32,
        /// Milliseconds from spawn to ready.
        start_postgres_ms: u64,
    },
    /// The last moment user activity was seen moved forward.
    Activity {
        /// RFC 3339, UTC, milliseconds.
        last_active: String,
    },
    /// The monitor connection's downtime changed.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let ready = SuperviseEvent::Ready {
            pid: 1,
            start_postgres_ms: 2,
        };
        assert_eq!(
            serde_json::to_string(&ready).unwrap(),
            r#"{"event":"ready","pid":1,"start_postgres_ms":2}"#
        );
        let exited: SuperviseEvent =
            serde_json::from_str(r#"{"event":"exited","code":null,"signal":9}"#).unwrap();
        assert_eq!(
            exited,
            SuperviseEvent::Exited {
                code: None,
                signal: Some(9)
            }
        );
    }
}
