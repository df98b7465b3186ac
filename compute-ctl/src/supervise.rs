//! `pg-supervise` as compute-ctl's long-running child: the document goes to its stdin, its
//! events (`ready`, `activity`, `downtime`, `exited`; one JSON object a line) come back on
//! its stdout and are turned into controller [`Event`]s and state updates.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ExitStatus};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::SystemTime;

use compute_spec::error::{ErrorEnvelope, StageError};
use compute_spec::event::SuperviseEvent;

use crate::stages::{self, ChildPid};
use crate::state::Shared;

/// What wakes the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Postgres is ready.
    Ready {
        /// Spawn to ready, as pg-supervise measured it.
        start_postgres_ms: u64,
    },
    /// Postgres (and pg-supervise) stopped.
    Exited {
        /// Postgres's exit code, when it exited normally.
        code: Option<i32>,
        /// The signal that killed it, if any.
        signal: Option<i32>,
    },
    /// pg-supervise's stdout closed without an `exited` event; `error` is the error envelope
    /// it wrote instead (a start failure), when it wrote one.
    SupervisorGone {
        /// The failure pg-supervise reported.
        error: Option<StageError>,
    },
    /// Something in the shared state changed (`/configure`, `/terminate`, a signal).
    Wake,
}

/// Says whether an `activity` time is the compute's own work rather than a user's (the
/// installed-extensions scan's sessions): such activity leaves `last_active` as it was.
pub type OwnActivity = Arc<dyn Fn(SystemTime) -> bool + Send + Sync>;

/// The running pg-supervise.
#[derive(Debug)]
pub struct Supervisor {
    child: Child,
    /// Its pid, shared with the signal thread.
    pub pid: ChildPid,
}

impl Supervisor {
    /// Spawns pg-supervise with `document` on its stdin and starts the event reader.
    pub fn start(
        args: &[OsString],
        document: &[u8],
        shared: Arc<Shared>,
        events: Sender<Event>,
        (pid, own_activity): (ChildPid, OwnActivity),
    ) -> Result<Supervisor, StageError> {
        pid.starting();
        let mut child =
            stages::spawn(stages::name::SUPERVISE, args).inspect_err(|_| pid.clear())?;
        pid.record(&child);
        if let Some(mut stdin) = child.stdin.take() {
            let document = document.to_vec();
            // Dropping stdin after the write closes it: pg-supervise reads to EOF.
            std::thread::spawn(move || {
                let _ = stdin.write_all(&document);
            });
        }
        if let Some(stdout) = child.stdout.take() {
            std::thread::Builder::new()
                .name("supervise-events".into())
                .spawn(move || {
                    read_events(BufReader::new(stdout), &shared, &events, &*own_activity)
                })
                .map_err(|error| {
                    crate::stages::internal(format!("starting the event reader thread: {error}"))
                })?;
        }
        Ok(Supervisor { child, pid })
    }

    /// Waits for pg-supervise to exit (after its `exited` event or its stdout closing).
    pub fn wait(&mut self) -> Option<ExitStatus> {
        // Cleared before the reaping: a recorded pid is always pg-supervise's own.
        let _ = stage_kit::child::exited_unreaped(&self.child, true);
        self.pid.clear();
        self.child.wait().ok()
    }
}

fn read_events(
    reader: impl BufRead,
    shared: &Shared,
    events: &Sender<Event>,
    own_activity: &dyn Fn(SystemTime) -> bool,
) {
    let mut reported = None;
    for line in reader.lines() {
        let Ok(line) = line else { break };
        let event = match serde_json::from_str::<SuperviseEvent>(&line) {
            Ok(event) => event,
            Err(_) if line.starts_with("{\"error\"") => {
                match serde_json::from_str::<ErrorEnvelope>(&line) {
                    Ok(envelope) => reported = Some(envelope.error),
                    Err(error) => {
                        tracing::warn!(%error, "pg-supervise wrote an unreadable error envelope")
                    }
                }
                continue;
            }
            Err(error) => {
                tracing::warn!(line = %line, %error, "pg-supervise wrote a line that is not an event");
                continue;
            }
        };
        if let Some(event) = handle_event(event, shared, own_activity) {
            let exited = matches!(event, Event::Exited { .. });
            if events.send(event).is_err() || exited {
                return;
            }
        }
    }
    let _ = events.send(Event::SupervisorGone { error: reported });
}

/// Applies an event to the shared state; returns what the controller must hear about.
fn handle_event(
    event: SuperviseEvent,
    shared: &Shared,
    own_activity: &dyn Fn(SystemTime) -> bool,
) -> Option<Event> {
    match event {
        SuperviseEvent::Ready {
            start_postgres_ms, ..
        } => Some(Event::Ready { start_postgres_ms }),
        SuperviseEvent::Activity { last_active } => {
            let time = last_active.system_time();
            // The controller's own sessions (e.g. the installed-extensions scan) are not user
            // activity.
            if !own_activity(time) {
                shared.update(|inner| inner.last_active = Some(time));
            }
            None
        }
        SuperviseEvent::Downtime {
            current_ms,
            total_ms,
        } => {
            shared.update(|inner| {
                inner.counters.downtime_current_ms = current_ms;
                inner.counters.downtime_total_ms = total_ms;
            });
            None
        }
        SuperviseEvent::Exited { code, signal } => Some(Event::Exited { code, signal }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(value: serde_json::Value) -> SuperviseEvent {
        serde_json::from_value(value).unwrap()
    }

    /// Every activity is a user's.
    fn users(_: SystemTime) -> bool {
        false
    }

    #[test]
    fn activity_inside_an_extension_scan_is_not_user_activity() {
        let shared = Shared::new();
        let stats = crate::ext_stats::Stats::default();
        let own = crate::ext_stats::own_activity(&stats);
        let start =
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        stats.lock().unwrap().scan = Some((start, None));
        let during = json!({"event": "activity", "last_active": "2027-01-15T08:00:01Z"});
        handle_event(decode(during), &shared, &*own);
        assert_eq!(shared.lock().last_active, None);
        let later = json!({"event": "activity", "last_active": "2027-01-15T09:00:00Z"});
        stats.lock().unwrap().scan = Some((start, Some(start + std::time::Duration::from_secs(5))));
        handle_event(decode(later), &shared, &*own);
        assert!(shared.lock().last_active.is_some());
    }

    #[test]
    fn events_are_decoded() {
        let shared = Shared::new();
        assert_eq!(
            handle_event(
                decode(json!({"event": "ready", "pid": 1, "start_postgres_ms": 57})),
                &shared,
                &users
            ),
            Some(Event::Ready {
                start_postgres_ms: 57
            })
        );
        assert_eq!(
            handle_event(
                decode(json!({"event": "activity", "last_active": "2026-11-24T22:00:00.123Z"})),
                &shared,
                &users
            ),
            None
        );
        let last_active = shared.lock().last_active.unwrap();
        assert_eq!(
            crate::state::rfc3339(last_active, "+00:00"),
            "2026-11-24T22:00:00.123+00:00"
        );
        handle_event(
            decode(json!({"event": "downtime", "current_ms": 5, "total_ms": 1500})),
            &shared,
            &users,
        );
        assert_eq!(shared.lock().counters.downtime_total_ms, 1500);
        assert_eq!(
            handle_event(
                decode(json!({"event": "exited", "code": null, "signal": 9})),
                &shared,
                &users
            ),
            Some(Event::Exited {
                code: None,
                signal: Some(9)
            })
        );
    }

    /// A start failure reaches the controller as pg-supervise's own error, not as "stopped
    /// without an exited event".
    #[test]
    fn an_error_envelope_is_the_failure() {
        let shared = Shared::new();
        let (sender, receiver) = std::sync::mpsc::channel();
        let output = concat!(
            "not json\n",
            r#"{"error":{"stage":"pg-supervise","kind":"postgres","message":"postgres exited during start-up: bad shared_buffers","retryable":false}}"#,
            "\n"
        );
        read_events(output.as_bytes(), &shared, &sender, &users);
        match receiver.recv().unwrap() {
            Event::SupervisorGone { error: Some(error) } => {
                assert_eq!(error.stage, "pg-supervise");
                assert!(error.message.contains("bad shared_buffers"), "{error}");
            }
            other => panic!("{other:?}"),
        }
        let (sender, receiver) = std::sync::mpsc::channel();
        read_events("{\"error\": 5}\n".as_bytes(), &shared, &sender, &users);
        assert_eq!(
            receiver.recv().unwrap(),
            Event::SupervisorGone { error: None }
        );
    }

    /// An `activity` line whose `last_active` is not a timestamp is skipped (logged, naming
    /// the field): it neither sets `last_active` nor stops the reader.
    #[test]
    fn a_bad_last_active_is_skipped() {
        let shared = Shared::new();
        let (sender, receiver) = std::sync::mpsc::channel();
        let output = concat!(
            r#"{"event":"activity","last_active":"2026-11-24 22:00:00"}"#,
            "\n",
            r#"{"event":"activity","last_active":"soon"}"#,
            "\n",
        );
        read_events(output.as_bytes(), &shared, &sender, &|_| false);
        assert_eq!(shared.lock().last_active, None);
        assert_eq!(
            receiver.recv().unwrap(),
            Event::SupervisorGone { error: None }
        );
        let output = concat!(
            r#"{"event":"activity","last_active":"yesterday"}"#,
            "\n",
            r#"{"event":"activity","last_active":"2026-11-24T22:00:00.123Z"}"#,
            "\n",
            r#"{"event":"exited","code":0,"signal":null}"#,
            "\n",
        );
        let (sender, receiver) = std::sync::mpsc::channel();
        read_events(output.as_bytes(), &shared, &sender, &|_| false);
        let last_active = shared.lock().last_active.unwrap();
        assert_eq!(
            crate::state::rfc3339(last_active, "+00:00"),
            "2026-11-24T22:00:00.123+00:00"
        );
        assert_eq!(
            receiver.recv().unwrap(),
            Event::Exited {
                code: Some(0),
                signal: None
            }
        );
    }
}
