//! compute-trace: OpenTelemetry traces of compute-tools' processes.
//!
//! * [`context`]: the W3C trace context (`traceparent`): how a trace reaches compute-ctl from
//!   the control plane (`$TRACEPARENT`, an HTTP request's header) and each stage from
//!   compute-ctl (`$TRACEPARENT` in the stage's environment); random ids.
//! * [`span`]: [`Span`], an open span ended into a
//!   [`SpanRecord`](compute_spec::trace::SpanRecord) (the model's type, which a stage writes
//!   into its section of the document).
//! * [`record`]: a stage's recorder: spans kept in memory and written into the document by
//!   `stage_kit::stage`, never sent from the stage.
//! * [`config`]: the exporter's settings from the standard `OTEL_*` variables (off unless an
//!   endpoint is set).
//! * [`export`]: [`Exporter`], a bounded queue and one thread posting OTLP/HTTP protobuf
//!   ([`otlp`]) within a deadline per post; drops and counts when full or when the collector
//!   fails, so tracing never delays a start.
//! * [`process`]: compute-ctl's tracing: the one exporter of the process, `start_compute`,
//!   a span per stage run (and the stage's `$TRACEPARENT`), the requests' server spans.
//!
//! **Why a small exporter of our own** rather than the `opentelemetry`, `opentelemetry_sdk`
//! and `opentelemetry-otlp` crates upstream uses: those bring `prost`, a `reqwest` (and its
//! TLS stack) or `tonic`, and an async runtime's worth of build time — minutes on the
//! project's two cores, into every stage binary — for what compute-tools needs of them: one
//! protobuf message, written here in a hundred lines ([`otlp`], checked against the official
//! `opentelemetry-proto` classes by the tests), posted with the `ureq` client the workspace
//! already builds, which has the per-request deadline the design needs. It also lets the
//! stages record without an SDK: a short-lived stage must not flush an exporter at exit (a
//! silent collector would hold every stage for the export timeout), so stages only record
//! ([`record`]) and compute-ctl alone exports. The cost: no TLS to the collector (an
//! `http://` endpoint, normally a collector beside the compute) and no gRPC.
//!
//! Invariants: recording never blocks on the network; [`Exporter::export`] never waits
//! (bounded queue, drop and count); each post has a deadline; header values (credentials)
//! are never logged. Tests: unit tests beside the code; `tests/it/` exports to a receiver
//! built on the official `opentelemetry-proto` package and to a listener that never answers.

pub mod config;
pub mod context;
pub mod export;
pub mod otlp;
pub mod process;
pub mod record;
pub mod span;

pub use config::Config;
pub use context::TraceContext;
pub use export::{Exporter, Stats};
pub use span::Span;
