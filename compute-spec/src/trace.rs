//! The spans a stage records for compute-ctl to export: [`SpanRecord`], with W3C Trace
//! Context ids ([`TraceId`], [`SpanId`]: lowercase hex, as in a `traceparent`).
//!
//! A stage never talks to a trace collector: it records its finished spans into its own
//! section of the document (`spans`; on failure, into the error envelope), parented on the
//! span compute-ctl opened for the stage run, and compute-ctl exports them. The `compute-trace`
//! crate records and exports; this module is only the format.

use std::fmt;
use std::str::FromStr;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A span id or trace id that is not lowercase-or-uppercase hex of the right length, or is
/// all zeros (W3C Trace Context forbids both).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {text:?}: expected {digits} hex characters, not all zero")]
pub struct TraceIdError {
    what: &'static str,
    digits: usize,
    text: String,
}

/// Parses `text` as `N` bytes of hex, refusing all zeros.
fn parse_hex<const N: usize>(what: &'static str, text: &str) -> Result<[u8; N], TraceIdError> {
    let error = || TraceIdError {
        what,
        digits: N * 2,
        text: text.chars().take(64).collect(),
    };
    if text.len() != N * 2 || !text.is_ascii() {
        return Err(error());
    }
    let mut bytes = [0u8; N];
    for (index, byte) in bytes.iter_mut().enumerate() {
        let pair = &text[index * 2..index * 2 + 2];
        *byte = u8::from_str_radix(pair, 16).map_err(|_| error())?;
    }
    if bytes.iter().all(|byte| *byte == 0) {
        return Err(error());
    }
    Ok(bytes)
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
}

macro_rules! trace_hex {
    ($(#[$doc:meta])* $name:ident, $len:literal, $pattern:literal, $what:literal, $schema_doc:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name(pub [u8; $len]);

        impl FromStr for $name {
            type Err = TraceIdError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                parse_hex::<$len>($what, text).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": $pattern,
                    "description": $schema_doc,
                })
            }
        }
    };
}

trace_hex!(
    /// A trace: 16 bytes, not all zero, written as 32 lowercase hex characters.
    TraceId,
    16,
    "^[0-9a-fA-F]{32}$",
    "trace id",
    "A W3C trace id: 32 hex characters, not all zero"
);
trace_hex!(
    /// A span: 8 bytes, not all zero, written as 16 lowercase hex characters.
    SpanId,
    8,
    "^[0-9a-fA-F]{16}$",
    "span id",
    "A W3C span id: 16 hex characters, not all zero"
);

/// One attribute value of a span: text, a whole number or a flag (OTLP's `AnyValue`
/// string, int and bool).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum AttributeValue {
    /// A flag.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// Text.
    Text(String),
}

impl From<&str> for AttributeValue {
    fn from(text: &str) -> Self {
        AttributeValue::Text(text.to_string())
    }
}

impl From<String> for AttributeValue {
    fn from(text: String) -> Self {
        AttributeValue::Text(text)
    }
}

impl From<bool> for AttributeValue {
    fn from(flag: bool) -> Self {
        AttributeValue::Bool(flag)
    }
}

impl From<i64> for AttributeValue {
    fn from(number: i64) -> Self {
        AttributeValue::Int(number)
    }
}

impl From<u64> for AttributeValue {
    fn from(number: u64) -> Self {
        AttributeValue::Int(i64::try_from(number).unwrap_or(i64::MAX))
    }
}

impl From<u32> for AttributeValue {
    fn from(number: u32) -> Self {
        AttributeValue::Int(number.into())
    }
}

impl From<usize> for AttributeValue {
    fn from(number: usize) -> Self {
        AttributeValue::Int(i64::try_from(number).unwrap_or(i64::MAX))
    }
}

/// What side of a call a span is (OTLP's `SpanKind`; producer and consumer are not used).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    /// Work inside the process (the default).
    #[default]
    Internal,
    /// Serving a request (compute-ctl's `/configure`, `/terminate`, `/promote`).
    Server,
    /// A request to another server (a fetch from a pageserver).
    Client,
}

impl SpanKind {
    fn is_internal(&self) -> bool {
        *self == SpanKind::Internal
    }
}

/// One finished span: what ran, when (Unix nanoseconds), its place in the trace, and what it
/// noted. The OTLP `Span` fields of the same names, less events and links.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SpanRecord {
    /// What ran (`fetch`, a reconcile phase's name, `pg-basebackup-fetch`, …).
    pub name: String,
    /// The trace the span belongs to.
    pub trace_id: TraceId,
    /// The span itself.
    pub span_id: SpanId,
    /// The span it ran under; absent for a trace's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<SpanId>,
    /// What side of a call it is; absent for `internal`.
    #[serde(default, skip_serializing_if = "SpanKind::is_internal")]
    pub kind: SpanKind,
    /// When it began, in nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// When it ended, in nanoseconds since the Unix epoch (not before `start_unix_nanos`).
    pub end_unix_nanos: u64,
    /// What it noted (`attempt`, `bytes`, `steps`, …), in the order noted.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub attributes: IndexMap<String, AttributeValue>,
    /// Why it failed (an OTLP error status); absent when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SpanRecord {
    /// The span's length in nanoseconds (0 if its end is before its start).
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nanos.saturating_sub(self.start_unix_nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_of_their_length_and_never_zero() {
        let trace: TraceId = "4BF92F3577B34DA6A3CE929D0E0E4736".parse().unwrap();
        assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let span: SpanId = "00f067aa0ba902b7".parse().unwrap();
        assert_eq!(span.0[1], 0xf0);
        for bad in [
            "",
            "00f067aa0ba902b",
            "00f067aa0ba902b7a",
            "00f067aa0ba902bg",
            "0000000000000000",
            "é0f067aa0ba902b",
        ] {
            let error = bad.parse::<SpanId>().unwrap_err().to_string();
            assert!(
                error.contains("span id") && error.contains("16 hex"),
                "{error}"
            );
        }
        assert!("00000000000000000000000000000000"
            .parse::<TraceId>()
            .is_err());
    }

    #[test]
    fn a_record_round_trips_with_its_attributes_typed() {
        let text = r#"{"name":"fetch","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736",
            "span_id":"00f067aa0ba902b7","parent_span_id":"53995c3f42cd8ad8",
            "start_unix_nanos":1700000000000000000,"end_unix_nanos":1700000000250000000,
            "attributes":{"attempt":2,"source":"pageserver","retried":true}}"#;
        let record: SpanRecord = serde_json::from_str(text).unwrap();
        assert_eq!(record.duration_nanos(), 250_000_000);
        assert_eq!(record.attributes["attempt"], AttributeValue::Int(2));
        assert_eq!(record.attributes["retried"], AttributeValue::Bool(true));
        assert_eq!(record.attributes["source"], "pageserver".into());
        let back: SpanRecord =
            serde_json::from_value(serde_json::to_value(&record).unwrap()).unwrap();
        assert_eq!(back, record);
        let bad = text.replace("00f067aa0ba902b7", "zz");
        let error = serde_json::from_str::<SpanRecord>(&bad).unwrap_err();
        assert!(error.to_string().contains("span id"), "{error}");
    }
}
