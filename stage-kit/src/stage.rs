//! The stage contract: read the document on stdin, add a section, write it on stdout.
//!
//! [`run`] does the plumbing every stage binary shares: read and parse stdin, pass an
//! earlier stage's error envelope through (exiting non-zero at once), call the stage, write
//! the document or the error envelope, log the error on stderr, and choose the exit code.
//! A closed stdout means the next stage died: that is a run-time failure (exit 1). Stdin is
//! read up to [`DOCUMENT_MAX_BYTES`] (128 MiB); more is bad input (exit 2).
//!
//! Tracing: a stage records its spans ([`span`]) under the context compute-ctl passes in
//! `$TRACEPARENT`, and [`finish`] writes them into the stage's section of the document
//! ([`fail`]: into the error envelope) for compute-ctl to export; a stage never waits for a
//! collector unless run by hand with `--export-trace` ([`TraceArgs`], [`begin_trace`]).

use std::io::Write;
use std::process::ExitCode;

use serde_json::Value;

use compute_spec::document::{ComputeDocument, DOCUMENT_VERSION};
use compute_spec::error::{exit_code, ErrorEnvelope, ErrorKind, StageError};

use crate::bounded::{Problem, DOCUMENT_MAX_BYTES};

mod trace;

pub use compute_trace::record::{span, Recorded};
pub use trace::{begin as begin_trace, TraceArgs};

/// What arrived on stdin.
pub enum StageInput {
    /// A compute document.
    Document(Box<ComputeDocument>),
    /// An earlier stage's error envelope, to pass through unchanged.
    Failed(Value),
}

/// Parses a stage's input text.
pub fn parse_input(stage: &str, text: &str) -> Result<StageInput, StageError> {
    let value: Value = serde_json::from_str(text).map_err(|error| {
        StageError::new(
            stage,
            ErrorKind::InvalidDocument,
            format!("stdin is not JSON: {error}; pipe the output of compute-spec into this stage"),
        )
    })?;
    if value.get("error").is_some() && value.get("document_version").is_none() {
        return Ok(StageInput::Failed(value));
    }
    let version = value.get("document_version").and_then(Value::as_u64);
    match version {
        Some(version) if version > DOCUMENT_VERSION as u64 => {
            return Err(StageError::new(
                stage,
                ErrorKind::InvalidDocument,
                format!(
                    "document_version {version} is newer than this stage understands \
                     ({DOCUMENT_VERSION}): upgrade the stage"
                ),
            ))
        }
        None => {
            return Err(StageError::new(
                stage,
                ErrorKind::InvalidDocument,
                "stdin is not a compute document (no document_version): pipe the output of \
                 compute-spec into this stage",
            ))
        }
        Some(_) => {}
    }
    let document: ComputeDocument = compute_spec::parse::decode_value(value).map_err(|error| {
        StageError::new(
            stage,
            ErrorKind::InvalidDocument,
            format!("stdin is not a valid compute document: {error}"),
        )
    })?;
    Ok(StageInput::Document(Box::new(document)))
}

/// Reads stdin whole (at most [`DOCUMENT_MAX_BYTES`]) and parses it.
pub fn read_input(stage: &str) -> Result<StageInput, StageError> {
    let text = crate::bounded::read_stdin_string(DOCUMENT_MAX_BYTES).map_err(|error| {
        let kind = match error.problem {
            Problem::Read(_) => ErrorKind::Io,
            _ => ErrorKind::InvalidDocument,
        };
        StageError::new(
            stage,
            kind,
            format!(
                "reading the document on stdin: {}; pipe the output of compute-spec into \
                 this stage",
                error.problem
            ),
        )
    })?;
    parse_input(stage, &text)
}

/// Runs a stage: stdin → `stage_fn` → stdout, with the error envelope and exit codes.
pub fn run(
    stage: &str,
    stage_fn: impl FnOnce(ComputeDocument) -> Result<ComputeDocument, StageError>,
) -> ExitCode {
    // Records under $TRACEPARENT unless the stage's main set tracing up already.
    begin_trace(stage, TraceArgs::default());
    let result = match read_input(stage) {
        Ok(StageInput::Failed(envelope)) => {
            tracing::error!("an earlier stage failed; passing its error through");
            write_json(&envelope);
            return ExitCode::from(exit_code::RUNTIME);
        }
        Ok(StageInput::Document(document)) => stage_fn(*document),
        Err(error) => Err(error),
    };
    finish(result)
}

/// Writes the document (exit 0) or the error envelope (its exit code).
pub fn finish(result: Result<ComputeDocument, StageError>) -> ExitCode {
    match result {
        Ok(mut document) => {
            trace::into_document(&mut document);
            match write_json(&document) {
                true => ExitCode::from(exit_code::OK),
                false => ExitCode::from(exit_code::RUNTIME),
            }
        }
        Err(error) => fail(error),
    }
}

/// Logs the error on stderr, writes its envelope on stdout, and returns its exit code.
pub fn fail(mut error: StageError) -> ExitCode {
    trace::into_error(&mut error);
    tracing::error!(kind = ?error.kind, "{}: {}", error.stage, error.message);
    let code = error.exit_code();
    write_json(&ErrorEnvelope { error });
    ExitCode::from(code)
}

/// Writes one JSON value and a newline on stdout; false when stdout is closed.
pub fn write_json(value: &impl serde::Serialize) -> bool {
    let mut stdout = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut stdout, value)
        .map_err(std::io::Error::from)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => true,
        Err(error) => {
            tracing::error!("writing the document to stdout: {error} (did the next stage exit?)");
            false
        }
    }
}

/// Milliseconds since `start`, as the document's timings are written.
pub fn elapsed_ms(start: std::time::Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelopes_pass_through() {
        let text = r#"{"error":{"stage":"a","kind":"io","message":"m","retryable":false}}"#;
        assert!(matches!(parse_input("b", text), Ok(StageInput::Failed(_))));
    }

    #[test]
    fn garbage_is_an_invalid_document() {
        for text in [
            "not json",
            "{}",
            r#"{"document_version": 99}"#,
            r#"{"document_version": 1}"#,
        ] {
            let error = match parse_input("b", text) {
                Err(error) => error,
                Ok(_) => panic!("{text} accepted"),
            };
            assert_eq!(error.kind, ErrorKind::InvalidDocument, "{text}");
            assert_eq!(error.exit_code(), exit_code::USAGE);
        }
    }
}
