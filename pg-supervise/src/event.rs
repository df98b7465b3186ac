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
use compute_spec::Timestamp;

/// The `activity` event for a moment (written RFC 3339, UTC, milliseconds).
pub fn activity(last_active: SystemTime) -> SuperviseEvent {
    SuperviseEvent::Activity {
        last_active: Timestamp::from(last_active),
    }
}

/// Writes `event` as one line on stdout and flushes; false when stdout is closed.
pub fn emit(event: &SuperviseEvent) -> bool {
    let json = serde_json::to_value(event).unwrap_or(serde_json::Value::Null);
    stage_kit::stage::write_json(&json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn activity_is_written_in_rfc3339_with_milliseconds() {
        let event = activity(UNIX_EPOCH + Duration::from_millis(1_795_989_600_123));
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"event":"activity","last_active":"2026-11-29T22:00:00.123Z"}"#
        );
    }
}
