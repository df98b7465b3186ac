//! W3C Trace Context: the `traceparent` text (`00-<trace id>-<parent id>-<flags>`) that
//! carries a trace from the control plane to compute-ctl (the `TRACEPARENT` environment
//! variable, or an HTTP request's `traceparent` header) and from compute-ctl to each stage it
//! runs; and new random ids.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use compute_spec::trace::{SpanId, TraceId};

/// The environment variable a trace context travels in between processes (the convention
/// upstream and most tools follow for a process's parent span).
pub const TRACEPARENT: &str = "TRACEPARENT";

/// Its companion, vendor data that upstream also reads; compute-tools does not forward it.
pub const TRACESTATE: &str = "TRACESTATE";

/// Where a span hangs in a trace: the trace and the span that is the parent of new spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace.
    pub trace_id: TraceId,
    /// The parent of the spans started under this context.
    pub span_id: SpanId,
    /// The `sampled` flag: when the caller decided not to record the trace, nothing under
    /// it is recorded either (upstream's parent-based sampling).
    pub sampled: bool,
}

/// Why a `traceparent` text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextError(String);

impl std::fmt::Display for ContextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ContextError {}

impl TraceContext {
    /// Parses a W3C `traceparent`: version `00` is exactly
    /// `00-<32 lowercase hex>-<16 lowercase hex>-<2 hex>`; a later version may add fields after
    /// the flags; version `ff`, zero ids, uppercase hex and anything else are refused.
    pub fn parse(text: &str) -> Result<TraceContext, ContextError> {
        let refused = |why: &str| {
            let shown: String = text.chars().take(80).collect();
            ContextError(format!(
                "traceparent {shown:?} is not a W3C trace context ({why}); expected \
                 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"
            ))
        };
        let lower_hex = |part: &str| {
            part.bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
        };
        let mut parts = text.split('-');
        let (Some(version), Some(trace), Some(span), Some(flags)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refused("too few fields"));
        };
        if version.len() != 2 || !lower_hex(version) || version == "ff" {
            return Err(refused("bad version"));
        }
        if version == "00" && parts.next().is_some() {
            return Err(refused("version 00 has four fields"));
        }
        if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return Err(refused("a field has the wrong length"));
        }
        if !lower_hex(trace) || !lower_hex(span) || !lower_hex(flags) {
            return Err(refused("not lowercase hex"));
        }
        let trace_id: TraceId = trace.parse().map_err(|_| refused("zero trace id"))?;
        let span_id: SpanId = span.parse().map_err(|_| refused("zero span id"))?;
        let flags = u8::from_str_radix(flags, 16).map_err(|_| refused("bad flags"))?;
        Ok(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The `traceparent` text of this context (version 00).
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }

    /// The context in `$TRACEPARENT`, if set and valid; a malformed one is logged and
    /// ignored (as the W3C rules say: a new trace starts instead).
    pub fn from_env() -> Option<TraceContext> {
        let text = std::env::var(TRACEPARENT).ok()?;
        match TraceContext::parse(text.trim()) {
            Ok(context) => Some(context),
            Err(error) => {
                tracing::warn!("ignoring ${TRACEPARENT}: {error}");
                None
            }
        }
    }
}

/// A new random trace id.
pub fn new_trace_id() -> TraceId {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes);
    TraceId(bytes)
}

/// A new random span id.
pub fn new_span_id() -> SpanId {
    let mut bytes = [0u8; 8];
    fill_random(&mut bytes);
    SpanId(bytes)
}

/// Fills `bytes` from the kernel's random source; should that fail, from a mix of the clock,
/// the process id and a counter (unique, if not secret: an id is no secret). Never all zero.
fn fill_random(bytes: &mut [u8]) {
    if getrandom::fill(bytes).is_err() || bytes.iter().all(|byte| *byte == 0) {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        let mut state = nanos
            ^ (u64::from(std::process::id()) << 32)
            ^ COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for chunk in bytes.chunks_mut(8) {
            // splitmix64: each step a well-mixed 64-bit value.
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut mixed = state;
            mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            mixed ^= mixed >> 31;
            let mixed = mixed | 1;
            chunk.copy_from_slice(&mixed.to_le_bytes()[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_round_trips() {
        let context = TraceContext::parse(GOOD).unwrap();
        assert!(context.sampled);
        assert_eq!(context.span_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(context.traceparent(), GOOD);
        let unsampled = TraceContext::parse(&GOOD.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled);
        // A later version may carry more fields; only the four known ones are read.
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-extra";
        assert!(TraceContext::parse(future).unwrap().sampled);
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let error = TraceContext::parse(bad).unwrap_err().to_string();
            assert!(error.contains("not a W3C trace context"), "{bad}: {error}");
        }
    }

    #[test]
    fn new_ids_differ_and_are_never_zero() {
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| new_span_id().to_string()).collect();
        assert_eq!(ids.len(), 1000);
        assert_ne!(new_trace_id().0, [0u8; 16]);
        let mut zero = [0u8; 8];
        fill_random(&mut zero);
        assert_ne!(zero, [0u8; 8]);
    }
}
