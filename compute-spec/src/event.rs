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
use serde::{Deserialize, Deserializer, Serialize};

use crate::timestamp::Timestamp;

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
        /// RFC 3339, UTC, milliseconds (`2026-11-24T22:00:00.123Z`).
        #[serde(deserialize_with = "last_active")]
        last_active: Timestamp,
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

/// Reads `last_active`, naming the field in an error: inside an internally tagged enum serde
/// reports a field's error without its path.
fn last_active<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
    Timestamp::deserialize(deserializer)
        .map_err(|error| serde::de::Error::custom(format_args!("last_active: {error}")))
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

    #[test]
    fn activity_carries_a_timestamp_in_the_exact_wire_form() {
        let line = r#"{"event":"activity","last_active":"2026-11-24T22:00:00.123Z"}"#;
        let event: SuperviseEvent = serde_json::from_str(line).unwrap();
        let SuperviseEvent::Activity { last_active } = &event else {
            panic!("not an activity event: {event:?}");
        };
        assert_eq!(
            last_active.system_time(),
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_557_600_123)
        );
        assert_eq!(serde_json::to_string(&event).unwrap(), line);
    }

    #[test]
    fn a_bad_last_active_is_refused_naming_the_field() {
        for bad in [
            r#""yesterday""#,
            r#""2026-11-24 22:00:00.123Z""#,
            r#""2026-11-24T22:00:00.123+02:00""#,
            "1795557600123",
            "null",
        ] {
            let line = format!(r#"{{"event":"activity","last_active":{bad}}}"#);
            let error = serde_json::from_str::<SuperviseEvent>(&line)
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("last_active: "), "{line}: {error}");
        }
        let missing = serde_json::from_str::<SuperviseEvent>(r#"{"event":"activity"}"#);
        assert!(missing.unwrap_err().to_string().contains("`last_active`"));
    }
}
