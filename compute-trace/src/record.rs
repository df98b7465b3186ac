//! The recorder of a stage process: spans go into memory, never to a collector, and the
//! stage writes them into its section of the document at exit (`stage_kit::stage` does),
//! for compute-ctl to export. So a short-lived stage never waits for an exporter.
//!
//! Off until [`begin`]; then [`span`] opens a span under the innermost span still open on
//! the same thread, else under the context given to [`begin`] (the span compute-ctl opened
//! for the stage run). A process records at most [`MAX_SPANS`] spans; more are counted and
//! dropped.

use std::cell::RefCell;
use std::sync::Mutex;

use compute_spec::trace::{AttributeValue, SpanId, SpanKind, SpanRecord};

use crate::context::TraceContext;
use crate::span::Span;

/// The most spans one stage process keeps (a document carries them all).
pub const MAX_SPANS: usize = 1000;

struct Recorder {
    root: TraceContext,
    finished: Vec<SpanRecord>,
    dropped: u64,
}

static RECORDER: Mutex<Option<Recorder>> = Mutex::new(None);

thread_local! {
    /// The spans open on this thread, innermost last.
    static OPEN: RefCell<Vec<SpanId>> = const { RefCell::new(Vec::new()) };
}

fn recorder() -> std::sync::MutexGuard<'static, Option<Recorder>> {
    RECORDER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts recording: every span from now on hangs under `root` (unless nested). Calling it
/// again moves the root; spans recorded so far are kept. Nothing is recorded when `root` is
/// not sampled.
pub fn begin(root: TraceContext) {
    let mut recorder = recorder();
    if !root.sampled {
        *recorder = None;
        return;
    }
    match recorder.as_mut() {
        Some(existing) => existing.root = root,
        None => {
            *recorder = Some(Recorder {
                root,
                finished: Vec::new(),
                dropped: 0,
            })
        }
    }
}

/// Whether spans are being recorded.
pub fn active() -> bool {
    recorder().is_some()
}

/// Takes the spans recorded so far (finished ones only), and how many were dropped over
/// [`MAX_SPANS`] since the last take.
pub fn take() -> (Vec<SpanRecord>, u64) {
    match recorder().as_mut() {
        Some(recorder) => (
            std::mem::take(&mut recorder.finished),
            std::mem::take(&mut recorder.dropped),
        ),
        None => (Vec::new(), 0),
    }
}

/// Keeps a finished span (from a [`Recorded`] or any [`Span`] of this process).
pub fn keep(record: SpanRecord) {
    if let Some(recorder) = recorder().as_mut() {
        if recorder.finished.len() < MAX_SPANS {
            recorder.finished.push(record);
        } else {
            recorder.dropped += 1;
        }
    }
}

/// A span being recorded; recorded when dropped (inert while recording is off).
#[derive(Debug)]
#[must_use = "a span ends when it is dropped: bind it to a variable for the work it covers"]
pub struct Recorded {
    span: Span,
}

/// Opens span `name` under the innermost span open on this thread, else under the root.
pub fn span(name: &str) -> Recorded {
    let root = recorder().as_ref().map(|recorder| recorder.root);
    let Some(root) = root else {
        return Recorded { span: Span::off() };
    };
    let parent = OPEN.with(|open| open.borrow().last().copied());
    let parent = TraceContext {
        span_id: parent.unwrap_or(root.span_id),
        ..root
    };
    let span = Span::start(name, Some(&parent));
    if let Some(context) = span.context() {
        OPEN.with(|open| open.borrow_mut().push(context.span_id));
    }
    Recorded { span }
}

impl Recorded {
    /// Notes `key = value`.
    pub fn set(&mut self, key: &str, value: impl Into<AttributeValue>) {
        self.span.set(key, value);
    }

    /// Sets the span's kind.
    pub fn set_kind(&mut self, kind: SpanKind) {
        self.span.set_kind(kind);
    }

    /// Marks the span failed, with why (never a secret).
    pub fn fail(&mut self, why: impl std::fmt::Display) {
        self.span.fail(why);
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        let span = std::mem::replace(&mut self.span, Span::off());
        if let Some(context) = span.context() {
            OPEN.with(|open| {
                let mut open = open.borrow_mut();
                if let Some(at) = open.iter().rposition(|id| *id == context.span_id) {
                    open.remove(at);
                }
            });
        }
        if let Some(record) = span.end() {
            keep(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test for the whole recorder: it is process-wide state.
    #[test]
    fn spans_nest_per_thread_hang_under_the_root_and_are_capped() {
        assert!(!active());
        drop(span("before"));
        assert!(take().0.is_empty(), "nothing is recorded before begin");
        let root =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        begin(root);
        {
            let mut outer = span("outer");
            outer.set("n", 1u32);
            let inner = span("inner");
            std::thread::spawn(|| drop(span("other thread")))
                .join()
                .unwrap();
            drop(inner);
            outer.fail("broke");
        }
        let (spans, dropped) = take();
        assert_eq!(dropped, 0);
        let by_name = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
        let outer = by_name("outer");
        assert_eq!(outer.parent_span_id, Some(root.span_id));
        assert_eq!(outer.error.as_deref(), Some("broke"));
        assert_eq!(by_name("inner").parent_span_id, Some(outer.span_id));
        assert_eq!(by_name("other thread").parent_span_id, Some(root.span_id));
        assert!(spans.iter().all(|s| s.trace_id == root.trace_id));
        for _ in 0..MAX_SPANS + 5 {
            drop(span("many"));
        }
        let (spans, dropped) = take();
        assert_eq!((spans.len(), dropped), (MAX_SPANS, 5));
        begin(TraceContext {
            sampled: false,
            ..root
        });
        assert!(!active());
    }
}
