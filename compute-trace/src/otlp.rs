//! The OTLP/HTTP request body: an `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`
//! in protobuf's binary encoding (`Content-Type: application/x-protobuf`), what upstream's
//! exporter sends. Written by hand from the field numbers of the OTLP protocol files: one
//! resource, one instrumentation scope, the spans. The tests decode it with the official
//! `opentelemetry-proto` classes (`tests/it/receiver.rs`).

use compute_spec::trace::{AttributeValue, SpanKind, SpanRecord};

/// The instrumentation scope spans are reported under.
pub const SCOPE: &str = "compute-tools";

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

// Wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    tag(out, field, LEN);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn message(out: &mut Vec<u8>, field: u32, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    fill(&mut inner);
    bytes(out, field, &inner);
}

fn fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
    tag(out, field, FIXED64);
    out.extend_from_slice(&value.to_le_bytes());
}

fn enumeration(out: &mut Vec<u8>, field: u32, value: u64) {
    tag(out, field, VARINT);
    varint(out, value);
}

/// `KeyValue {1: key, 2: AnyValue {1: string | 2: bool | 3: int64}}`.
fn key_value(out: &mut Vec<u8>, field: u32, key: &str, value: &AttributeValue) {
    message(out, field, |kv| {
        bytes(kv, 1, key.as_bytes());
        message(kv, 2, |any| match value {
            AttributeValue::Text(text) => bytes(any, 1, text.as_bytes()),
            AttributeValue::Bool(flag) => enumeration(any, 2, u64::from(*flag)),
            // int64: a negative number is its two's complement, ten bytes.
            AttributeValue::Int(number) => enumeration(any, 3, *number as u64),
        });
    });
}

/// `Span` (fields 1 trace_id, 2 span_id, 4 parent_span_id, 5 name, 6 kind, 7/8 start/end,
/// 9 attributes, 15 status {2 message, 3 code}).
fn span(out: &mut Vec<u8>, record: &SpanRecord) {
    message(out, 2, |span| {
        bytes(span, 1, &record.trace_id.0);
        bytes(span, 2, &record.span_id.0);
        if let Some(parent) = &record.parent_span_id {
            bytes(span, 4, &parent.0);
        }
        bytes(span, 5, record.name.as_bytes());
        let kind = match record.kind {
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
        };
        enumeration(span, 6, kind);
        fixed64(span, 7, record.start_unix_nanos);
        fixed64(span, 8, record.end_unix_nanos.max(record.start_unix_nanos));
        for (key, value) in &record.attributes {
            key_value(span, 9, key, value);
        }
        if let Some(error) = &record.error {
            message(span, 15, |status| {
                bytes(status, 2, error.as_bytes());
                enumeration(status, 3, 2);
            });
        }
    });
}

/// The request body exporting `spans` for the resource `resource`.
pub fn encode(resource: &[(String, AttributeValue)], spans: &[SpanRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    message(&mut out, 1, |resource_spans| {
        message(resource_spans, 1, |resource_message| {
            for (key, value) in resource {
                key_value(resource_message, 1, key, value);
            }
        });
        message(resource_spans, 2, |scope_spans| {
            message(scope_spans, 1, |scope| {
                bytes(scope, 1, SCOPE.as_bytes());
                bytes(scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
            });
            for record in spans {
                span(scope_spans, record);
            }
        });
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_negative_ints_follow_the_protobuf_encoding() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        let mut out = Vec::new();
        key_value(&mut out, 9, "n", &AttributeValue::Int(-1));
        // KeyValue(9, len) { key(1) "n", value(2) { int(3) ten bytes of 0xff…0x01 } }
        assert_eq!(out[0], (9 << 3) | 2);
        assert_eq!(
            &out[out.len() - 11..],
            &[24, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }
}
