//! [`Span`]: an open span, ended into a [`SpanRecord`]. Its start is read from the wall
//! clock once, its length from the monotonic clock, so a span's duration is exact whatever
//! the wall clock does meanwhile (and matches the `Instant`-based timings of `/metrics.json`).
//!
//! A span made while tracing is off, or under an unsampled parent, is inert: every method is
//! a no-op and it ends into nothing, so callers need no `if`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use compute_spec::trace::{AttributeValue, SpanKind, SpanRecord};
use indexmap::IndexMap;

use crate::context::{new_span_id, new_trace_id, TraceContext};

/// An open span (or an inert one).
#[derive(Debug)]
pub struct Span {
    open: Option<Open>,
}

#[derive(Debug)]
struct Open {
    record: SpanRecord,
    started: Instant,
}

/// Nanoseconds since the Unix epoch of `at` (0 before it, `u64::MAX` past year 2554).
pub fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Span {
    /// An inert span.
    pub fn off() -> Span {
        Span { open: None }
    }

    /// Starts span `name` now, under `parent` (a new trace when `None`); inert when the
    /// parent is not sampled.
    pub fn start(name: &str, parent: Option<&TraceContext>) -> Span {
        Span::started_at(name, parent, SystemTime::now(), Instant::now())
    }

    /// Starts span `name` at an earlier moment, given on both clocks (e.g. when the compute
    /// started, which `total_startup_ms` counts from).
    pub fn started_at(
        name: &str,
        parent: Option<&TraceContext>,
        wall: SystemTime,
        started: Instant,
    ) -> Span {
        if parent.is_some_and(|parent| !parent.sampled) {
            return Span::off();
        }
        let record = SpanRecord {
            name: name.to_string(),
            trace_id: parent.map_or_else(new_trace_id, |parent| parent.trace_id),
            span_id: new_span_id(),
            parent_span_id: parent.map(|parent| parent.span_id),
            kind: SpanKind::Internal,
            start_unix_nanos: unix_nanos(wall),
            end_unix_nanos: 0,
            attributes: IndexMap::new(),
            error: None,
        };
        Span {
            open: Some(Open { record, started }),
        }
    }

    /// Whether the span records anything.
    pub fn is_on(&self) -> bool {
        self.open.is_some()
    }

    /// The context of spans started under this one; `None` when inert.
    pub fn context(&self) -> Option<TraceContext> {
        self.open.as_ref().map(|open| TraceContext {
            trace_id: open.record.trace_id,
            span_id: open.record.span_id,
            sampled: true,
        })
    }

    /// A span started now under this one (inert when this one is).
    pub fn child(&self, name: &str) -> Span {
        match self.context() {
            Some(context) => Span::start(name, Some(&context)),
            None => Span::off(),
        }
    }

    /// Sets the span's kind (internal unless set).
    pub fn set_kind(&mut self, kind: SpanKind) {
        if let Some(open) = self.open.as_mut() {
            open.record.kind = kind;
        }
    }

    /// Notes `key = value` (a later value of the same key replaces the earlier one).
    pub fn set(&mut self, key: &str, value: impl Into<AttributeValue>) {
        if let Some(open) = self.open.as_mut() {
            open.record.attributes.insert(key.to_string(), value.into());
        }
    }

    /// Marks the span failed, with why (never a secret: it is exported).
    pub fn fail(&mut self, why: impl std::fmt::Display) {
        if let Some(open) = self.open.as_mut() {
            open.record.error = Some(why.to_string());
        }
    }

    /// Ends the span now.
    pub fn end(self) -> Option<SpanRecord> {
        self.end_at(Instant::now())
    }

    /// Ends the span at `at` (on the monotonic clock; not before its start).
    pub fn end_at(self, at: Instant) -> Option<SpanRecord> {
        let Open {
            mut record,
            started,
        } = self.open?;
        let length = nanos(at.saturating_duration_since(started));
        record.end_unix_nanos = record.start_unix_nanos.saturating_add(length);
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_s_length_is_the_monotonic_one_and_children_hang_under_it() {
        let wall = SystemTime::now() - Duration::from_secs(5);
        let started = Instant::now();
        let mut parent = Span::started_at("start_compute", None, wall, started);
        parent.set("attempt", 2u32);
        parent.set("attempt", 3u32);
        let child = parent.child("stage");
        let child_context = child.context().unwrap();
        let child = child.end().unwrap();
        let parent = parent
            .end_at(started + Duration::from_millis(1234))
            .unwrap();
        assert_eq!(parent.duration_nanos(), 1_234_000_000);
        assert_eq!(parent.start_unix_nanos, unix_nanos(wall));
        assert_eq!(parent.parent_span_id, None);
        assert_eq!(parent.attributes["attempt"], AttributeValue::Int(3));
        assert_eq!(child.parent_span_id, Some(parent.span_id));
        assert_eq!(child.trace_id, parent.trace_id);
        assert_eq!(child_context.span_id, child.span_id);
        assert!(child.start_unix_nanos >= parent.start_unix_nanos);
    }

    #[test]
    fn an_unsampled_parent_or_an_inert_span_records_nothing() {
        let parent = TraceContext {
            trace_id: crate::context::new_trace_id(),
            span_id: crate::context::new_span_id(),
            sampled: false,
        };
        let mut span = Span::start("x", Some(&parent));
        span.set("a", true);
        span.fail("no");
        assert!(!span.is_on() && span.context().is_none());
        assert!(span.child("y").end().is_none());
        assert!(span.end().is_none());
        let sampled = TraceContext {
            sampled: true,
            ..parent
        };
        let record = Span::start("x", Some(&sampled)).end().unwrap();
        assert_eq!(record.trace_id, parent.trace_id);
        assert_eq!(record.parent_span_id, Some(parent.span_id));
    }
}
