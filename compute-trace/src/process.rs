//! The tracing of a long-running process that runs stages (compute-ctl): its one exporter,
//! set up from the `OTEL_*` environment ([`init`]), and the spans it opens itself —
//! `start_compute` from the moment the start is counted from ([`begin_start`], [`end_start`]),
//! one span per stage run ([`run_stage`]; the stage gets `$TRACEPARENT` of that span,
//! [`stage_env`], and the spans it wrote into the document or its error envelope are queued
//! with it), other spans of the operation under way ([`span`]), and server spans of requests
//! ([`serve`]), whose context a request hands to the operation it causes ([`hand_off`],
//! [`take_hand_off`]). Everything is inert until [`init`] found an endpoint.

use std::cell::Cell;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use compute_spec::document::ComputeDocument;
use compute_spec::error::StageError;
use compute_spec::trace::{SpanKind, SpanRecord};

use crate::context::{TRACEPARENT, TRACESTATE};
use crate::{Config, Exporter, Span, Stats, TraceContext};

/// The span of a compute's start.
pub const START_SPAN: &str = "start_compute";

/// How long [`flush_at_exit`] waits for the last spans (less when the collector hangs:
/// [`Exporter::flush`]).
pub const EXIT_FLUSH: Duration = Duration::from_millis(500);

static EXPORTER: OnceLock<Option<Exporter>> = OnceLock::new();
static STARTUP: OnceLock<Option<TraceContext>> = OnceLock::new();

/// The operation under way: the parent of stage runs, the start span, a request's hand-off.
struct Operation {
    parent: Option<TraceContext>,
    start: Option<(Span, Instant)>,
    handed_off: Option<TraceContext>,
}

static OPERATION: Mutex<Operation> = Mutex::new(Operation {
    parent: None,
    start: None,
    handed_off: None,
});

thread_local! {
    /// The request this thread answers ([`serve`]).
    static REQUEST: Cell<Option<TraceContext>> = const { Cell::new(None) };
    /// The stage run this thread is starting ([`run_stage`]).
    static STAGE: Cell<Option<TraceContext>> = const { Cell::new(None) };
}

fn operation() -> MutexGuard<'static, Operation> {
    OPERATION
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn exporter() -> Option<&'static Exporter> {
    EXPORTER.get().and_then(Option::as_ref)
}

/// Sets tracing up from the environment (the first call wins): the exporter of `service`
/// (off without an endpoint; a bad variable is logged and leaves it off), and the
/// `$TRACEPARENT` the process was given.
pub fn init(service: &str) {
    STARTUP.get_or_init(TraceContext::from_env);
    EXPORTER.get_or_init(|| {
        let config = Config::from_env(service)
            .inspect_err(|error| tracing::error!("tracing is off: {error}"))
            .ok()??;
        let endpoint = config.shown_endpoint();
        Exporter::start(config)
            .inspect(|_| tracing::info!(%endpoint, "exporting traces (OTLP/HTTP)"))
            .inspect_err(
                |error| tracing::error!(%error, "no trace exporter thread: tracing is off"),
            )
            .ok()
    });
}

/// The `$TRACEPARENT` the process was given, if any.
pub fn startup_parent() -> Option<TraceContext> {
    STARTUP.get().copied().flatten()
}

/// Queues finished spans (nothing when tracing is off; never waits).
pub fn export(spans: impl IntoIterator<Item = SpanRecord>) {
    if let Some(exporter) = exporter() {
        exporter.export(spans);
    }
}

/// Ends `span` now and queues it.
pub fn finish(span: Span) {
    export(span.end());
}

/// What the exporter did so far (zeros when tracing is off).
pub fn stats() -> Stats {
    exporter().map(Exporter::stats).unwrap_or_default()
}

/// The exporter's counters in the Prometheus text format, named `<prefix>_trace_…`.
pub fn render_metrics(prefix: &str) -> String {
    let stats = stats();
    [
        (
            "spans_exported_total",
            "spans the trace collector accepted",
            stats.exported,
        ),
        (
            "spans_dropped_total",
            "spans dropped: the export queue was full or their export failed",
            stats.dropped,
        ),
        (
            "export_failures_total",
            "trace exports that failed (refused, an error status, or past the deadline)",
            stats.failed_exports,
        ),
    ]
    .iter()
    .map(|(name, help, value)| {
        format!(
            "# HELP {prefix}_trace_{name} {help}\n# TYPE {prefix}_trace_{name} counter\n\
             {prefix}_trace_{name} {value}\n"
        )
    })
    .collect()
}

/// Lets the last spans go out before the process exits, for at most [`EXIT_FLUSH`].
pub fn flush_at_exit() {
    if let Some(exporter) = exporter() {
        if !exporter.flush(EXIT_FLUSH) {
            tracing::warn!(stats = ?exporter.stats(), "exiting with spans not exported");
        }
    }
}

/// Opens [`START_SPAN`] under `parent` (a new trace without one) as of `started` (what
/// `total_startup_ms` counts from); the stage runs from now on hang under it.
pub fn begin_start(parent: Option<TraceContext>, started: Instant) {
    if exporter().is_none() {
        return;
    }
    let wall = SystemTime::now()
        .checked_sub(started.elapsed())
        .unwrap_or_else(SystemTime::now);
    let span = Span::started_at(START_SPAN, parent.as_ref(), wall, started);
    let mut operation = operation();
    operation.parent = span.context();
    operation.start = Some((span, started));
}

/// Ends [`START_SPAN`] at `done` (the moment `total_startup_ms` is taken, noted on it), failed
/// with `error` if given; nothing when none is open.
pub fn end_start(done: Instant, error: Option<&str>) {
    let start = {
        let mut operation = operation();
        operation.parent = None;
        operation.start.take()
    };
    if let Some((mut span, started)) = start {
        let total_ms = done.saturating_duration_since(started).as_millis() as u64;
        span.set("total_startup_ms", total_ms);
        if let Some(error) = error {
            span.fail(error);
        }
        export(span.end_at(done));
    }
}

/// Makes `parent` the parent of the stage runs from now on (`None`: untraced).
pub fn set_operation(parent: Option<TraceContext>) {
    operation().parent = parent;
}

/// Span `name` under the operation under way (inert without one).
pub fn span(name: &str) -> Span {
    match operation().parent {
        Some(parent) if exporter().is_some() => Span::start(name, Some(&parent)),
        _ => Span::off(),
    }
}

/// Runs stage `stage` with `run` inside a span named after it under the operation under way:
/// commands built meanwhile on this thread get its `$TRACEPARENT` ([`stage_env`]); the spans
/// the stage wrote into the document (or its error envelope) are taken out and queued.
pub fn run_stage(
    stage: &str,
    run: impl FnOnce() -> Result<ComputeDocument, StageError>,
) -> Result<ComputeDocument, StageError> {
    let mut span = span(stage);
    let previous = STAGE.replace(span.context());
    let result = run();
    STAGE.set(previous);
    let result = match result {
        Ok(mut document) => {
            export(document.take_spans());
            Ok(document)
        }
        Err(mut error) => {
            export(std::mem::take(&mut error.spans));
            span.fail(&error.message);
            Err(error)
        }
    };
    finish(span);
    result
}

/// Gives `command` the `$TRACEPARENT` of the stage run this thread is starting, and no trace
/// context at all otherwise (not even the process's own: a stage given one records).
pub fn stage_env(command: &mut Command) {
    command.env_remove(TRACEPARENT).env_remove(TRACESTATE);
    if let Some(stage) = STAGE.get() {
        command.env(TRACEPARENT, stage.traceparent());
    }
}

/// Answers a request with `handler` inside a server span `name` (`<method> <route>`, parented
/// on its `traceparent` header if valid), noting the method, route and the status `status`
/// reads.
pub fn serve<R>(
    name: &str,
    traceparent: Option<&str>,
    handler: impl FnOnce() -> R,
    status: impl FnOnce(&R) -> u16,
) -> R {
    if exporter().is_none() {
        return handler();
    }
    let parent = traceparent.and_then(|text| {
        TraceContext::parse(text.trim())
            .inspect_err(|error| tracing::warn!("ignoring the request's {error}"))
            .ok()
    });
    let mut span = Span::start(name, parent.as_ref());
    span.set_kind(SpanKind::Server);
    if let Some((method, route)) = name.split_once(' ') {
        span.set("http.request.method", method);
        span.set("http.route", route);
    }
    let previous = REQUEST.replace(span.context());
    let reply = handler();
    REQUEST.set(previous);
    let code = status(&reply);
    span.set("http.response.status_code", u64::from(code));
    if code >= 500 {
        span.fail(format!("answered {code}"));
    }
    finish(span);
    reply
}

/// Hands the span of the request this thread answers to the next operation the controller
/// takes up ([`take_hand_off`]): its stage runs hang under the request.
pub fn hand_off() {
    if let Some(request) = REQUEST.get() {
        operation().handed_off = Some(request);
    }
}

/// The span a request handed off, if any (taken: once).
pub fn take_hand_off() -> Option<TraceContext> {
    operation().handed_off.take()
}
