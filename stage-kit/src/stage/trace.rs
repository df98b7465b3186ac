//! A stage's spans: recorded in memory under the trace context compute-ctl passes in
//! `$TRACEPARENT` (the span it opened for this run), written into the stage's section of the
//! document at exit, or into the error envelope on failure; compute-ctl exports them. A stage
//! never talks to a collector, unless run by hand with `--export-trace` (and the `OTEL_*`
//! variables): then it opens a root span named after itself and exports at exit, waiting at
//! most the export timeout.

use std::sync::Mutex;
use std::time::Duration;

use compute_spec::document::ComputeDocument;
use compute_spec::error::StageError;
use compute_spec::trace::SpanRecord;
use compute_trace::{record, Config, Exporter, Span, TraceContext};

/// `--export-trace`, the flag every stage takes (`#[command(flatten)]`).
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct TraceArgs {
    /// Export this run's spans to the OTLP collector the OTEL_EXPORTER_OTLP_* variables name
    /// before exiting (for a stage run by hand: under compute-ctl the stage records its spans
    /// into the document and compute-ctl exports them).
    #[arg(long)]
    pub export_trace: bool,
}

/// The stage's trace set-up, once per process.
struct StageTrace {
    stage: String,
    /// By hand with `--export-trace`: the stage's own root span and the exporter.
    by_hand: Option<(Span, Exporter, Duration)>,
}

static TRACE: Mutex<Option<StageTrace>> = Mutex::new(None);

fn state() -> std::sync::MutexGuard<'static, Option<StageTrace>> {
    TRACE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts recording the spans of stage `stage` (the first call wins): under `$TRACEPARENT`
/// when set, and under a root span of the stage's own when `args` asks for an export.
pub fn begin(stage: &str, args: TraceArgs) {
    let mut state = state();
    if state.is_some() {
        return;
    }
    let parent = TraceContext::from_env();
    let mut by_hand = None;
    if args.export_trace {
        match Config::from_env(stage) {
            Ok(Some(config)) => {
                let timeout = config.timeout;
                match Exporter::start(config) {
                    Ok(exporter) => {
                        by_hand = Some((Span::start(stage, parent.as_ref()), exporter, timeout))
                    }
                    Err(error) => tracing::warn!("--export-trace: no exporter thread: {error}"),
                }
            }
            Ok(None) => tracing::warn!(
                "--export-trace: no OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) is set, or \
                 OTEL_SDK_DISABLED is: nothing is exported"
            ),
            Err(error) => tracing::warn!("--export-trace: {error}; nothing is exported"),
        }
    }
    let root = match &by_hand {
        Some((span, _, _)) => span.context(),
        None => parent,
    };
    if let Some(root) = root {
        record::begin(root);
    }
    *state = Some(StageTrace {
        stage: stage.to_string(),
        by_hand,
    });
}

/// The spans recorded so far, with the stage's own root span ended (failed with `failure`)
/// when run by hand, and those exported, waiting at most the export timeout.
fn collect(failure: Option<&str>) -> Vec<SpanRecord> {
    let (mut spans, dropped) = record::take();
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "more than {} spans: the rest were not recorded",
            record::MAX_SPANS
        );
    }
    let by_hand = state().as_mut().and_then(|state| state.by_hand.take());
    if let Some((mut root, exporter, timeout)) = by_hand {
        if let Some(failure) = failure {
            root.fail(failure);
        }
        spans.extend(root.end());
        exporter.export(spans.iter().cloned());
        exporter.flush(timeout);
        let stats = exporter.stats();
        tracing::info!(
            exported = stats.exported,
            dropped = stats.dropped,
            "--export-trace: spans exported"
        );
    }
    spans
}

/// Writes the recorded spans into the stage's section of `document`.
pub(super) fn into_document(document: &mut ComputeDocument) {
    let stage = state().as_ref().map(|state| state.stage.clone());
    let Some(stage) = stage else {
        return;
    };
    let spans = collect(None);
    if spans.is_empty() {
        return;
    }
    match document.stage_spans_mut(&stage) {
        Some(section) => section.extend(spans),
        None => tracing::debug!(stage, "no section of this stage: its spans are not kept"),
    }
}

/// Writes the recorded spans into `error` (the envelope of a failed stage).
pub(super) fn into_error(error: &mut StageError) {
    if state().is_some() {
        let message = error.message.clone();
        error.spans.extend(collect(Some(&message)));
    }
}
