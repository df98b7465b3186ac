//! compute-ctl's traces (the `compute-trace` crate): the one exporter of the compute, set up
//! from the `OTEL_*` environment at start (off unless an endpoint is set), and the spans
//! compute-ctl opens itself — `start_compute` (parented on `$TRACEPARENT`, or on the
//! `/configure` that started a pooled compute), one per stage run (its `$TRACEPARENT`, under
//! which the stage records), `pg-supervise` until Postgres is ready, and the requests
//! `POST /configure`, `/terminate` and `/promote` (parented on their `traceparent` header).
//! The stages' own spans come back in the document (or the error envelope) and are queued
//! here with the rest: a stage never waits for the collector, nor does a start.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use compute_http::{ApiRequest, Reply};
use compute_spec::trace::{SpanKind, SpanRecord};
use compute_trace::{Config, Exporter, Span, Stats, TraceContext};

/// The service name spans are exported under unless `OTEL_SERVICE_NAME` says otherwise
/// (upstream's).
pub const SERVICE: &str = "compute_ctl";

/// How long compute-ctl waits at exit for the last spans to be posted (not at all once a post
/// has failed, nor while one has hung for longer: `Exporter::flush`).
const EXIT_FLUSH: Duration = Duration::from_millis(500);

static EXPORTER: OnceLock<Option<Exporter>> = OnceLock::new();
static STARTUP: OnceLock<Option<TraceContext>> = OnceLock::new();

thread_local! {
    /// The span of the request this thread is answering (`serve`).
    static REQUEST: Cell<Option<TraceContext>> = const { Cell::new(None) };
}

/// Sets tracing up from the environment (the first call wins): the exporter, and the
/// control plane's `$TRACEPARENT`, read once.
pub fn init() {
    STARTUP.get_or_init(TraceContext::from_env);
    EXPORTER.get_or_init(|| match Config::from_env(SERVICE) {
        Ok(None) => None,
        Ok(Some(config)) => {
            let endpoint = config.shown_endpoint();
            match Exporter::start(config) {
                Ok(exporter) => {
                    tracing::info!(%endpoint, "exporting traces (OTLP/HTTP)");
                    Some(exporter)
                }
                Err(error) => {
                    tracing::error!(%error, "cannot start the trace exporter: tracing is off");
                    None
                }
            }
        }
        Err(error) => {
            tracing::error!("tracing is off: {error}");
            None
        }
    });
}

fn exporter() -> Option<&'static Exporter> {
    EXPORTER.get().and_then(Option::as_ref)
}

/// The trace context the control plane passed at start (`$TRACEPARENT`), if any.
pub fn startup_parent() -> Option<TraceContext> {
    STARTUP.get().copied().flatten()
}

/// Span `name` under `parent`, or the root of a new trace without one; inert when tracing is
/// off.
pub fn root_or_child(
    name: &str,
    parent: Option<&TraceContext>,
    wall: SystemTime,
    at: Instant,
) -> Span {
    match exporter() {
        Some(_) => Span::started_at(name, parent, wall, at),
        None => Span::off(),
    }
}

/// Span `name` under `parent`, now; inert without a parent or when tracing is off.
pub fn child(name: &str, parent: Option<&TraceContext>) -> Span {
    match (exporter(), parent) {
        (Some(_), Some(parent)) => Span::start(name, Some(parent)),
        _ => Span::off(),
    }
}

/// Queues finished spans for export (nothing when tracing is off; never waits).
pub fn export(spans: impl IntoIterator<Item = SpanRecord>) {
    if let Some(exporter) = exporter() {
        exporter.export(spans);
    }
}

/// Ends `span` now and queues it.
pub fn finish(span: Span) {
    export(span.end());
}

/// Answers `request` with `handler` inside a server span `name` (parented on its
/// `traceparent` header) that the handler's work hangs under ([`current_request`]).
pub fn serve(name: &str, request: &ApiRequest, handler: impl FnOnce() -> Reply) -> Reply {
    if exporter().is_none() {
        return handler();
    }
    let parent = request.traceparent.as_deref().and_then(|text| {
        TraceContext::parse(text.trim())
            .inspect_err(|error| tracing::warn!("ignoring the request's {error}"))
            .ok()
    });
    let mut span = Span::start(name, parent.as_ref());
    span.set_kind(SpanKind::Server);
    span.set("http.request.method", request.method.as_str());
    span.set("http.route", request.path.as_str());
    let previous = REQUEST.replace(span.context());
    let reply = handler();
    REQUEST.set(previous);
    span.set(
        "http.response.status_code",
        u64::from(reply.status.as_u16()),
    );
    if reply.status.is_server_error() {
        span.fail(format!("answered {}", reply.status));
    }
    finish(span);
    reply
}

/// The span of the request this thread is answering, if traced.
pub fn current_request() -> Option<TraceContext> {
    REQUEST.get()
}

/// What the exporter did so far (zeros when tracing is off).
pub fn stats() -> Stats {
    exporter().map(Exporter::stats).unwrap_or_default()
}

/// Lets the last spans go out before the process exits, for at most [`EXIT_FLUSH`].
pub fn flush_at_exit() {
    if let Some(exporter) = exporter() {
        if !exporter.flush(EXIT_FLUSH) {
            tracing::warn!(stats = ?exporter.stats(), "exiting with spans not exported");
        }
    }
}
