//! The controller's `start_compute` span: from the moment `total_startup_ms` counts from
//! (the process start, or a pooled compute's `/configure`) to the one it is taken at, so the
//! span's length is the metric's; the stage runs of the start hang under it.

use std::time::Instant;

use compute_spec::error::StageError;

use super::Controller;

impl Controller {
    /// Opens `start_compute` under `parent` (a new trace without one), starting when the
    /// compute's start is counted from.
    pub(super) fn begin_start_span(&mut self, parent: Option<compute_trace::TraceContext>) {
        let (wall, started) = {
            let inner = self.shared.lock();
            (inner.start_time, inner.started)
        };
        self.start_span =
            crate::trace::root_or_child("start_compute", parent.as_ref(), wall, started);
        self.trace = self.start_span.context();
    }

    /// Ends `start_compute` at `done`, failed with `error` if given; later stage runs hang
    /// under their request's span, not this one.
    pub(super) fn end_start_span(&mut self, done: Instant, error: Option<&StageError>) {
        let mut span = std::mem::replace(&mut self.start_span, compute_trace::Span::off());
        let total_ms = {
            let inner = self.shared.lock();
            done.duration_since(inner.started).as_millis() as u64
        };
        span.set("total_startup_ms", total_ms);
        if let Some(error) = error {
            span.fail(error);
        }
        crate::trace::export(span.end_at(done));
        self.trace = None;
    }
}
