//! Wire format of the autoscaler-agent ⇄ vm-monitor protocol (version 1).
//!
//! A session starts with a version handshake: the agent sends
//! `{"min": <u8>, "max": <u8>}` and the monitor answers `{"version": 1}` when
//! the range contains 1, or `{"error": "…"}` (after which it closes).
//!
//! After that every message carries an integer `id`:
//! * inbound (agent → monitor) messages are *adjacently tagged*:
//!   `{"type": "DownscaleRequest", "content": {"target": {…}}, "id": 2}`;
//! * outbound (monitor → agent) messages are *flat*:
//!   `{"type": "DownscaleResult", "Ok": true, "Status": "…", "id": 2}`.
//!
//! Replies reuse the id of the request; ids minted by the monitor are odd and
//! increase by 2 (see [`MessageIdGenerator`]), so they never collide with the
//! agent's even ids.
//!
//! Decoding never panics: every failure is a [`DecodeError`] that carries the
//! message id when one could be recovered.

use serde::{Deserialize, Serialize};

/// The only protocol version this monitor speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// CPU and memory amounts as sent by the agent (`mem` is in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Number of vCPUs (fractional).
    pub cpu: f64,
    /// Memory in bytes.
    pub mem: u64,
}

/// The agent's half of the version handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRange {
    /// Lowest protocol version the agent supports.
    pub min: u8,
    /// Highest protocol version the agent supports.
    pub max: u8,
}

/// The monitor's answer to a [`VersionRange`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VersionReply {
    /// Agreed version.
    Version {
        /// The negotiated protocol version.
        version: u8,
    },
    /// No overlap (or an unreadable handshake); the monitor closes afterwards.
    Error {
        /// Human-readable reason.
        error: String,
    },
}

/// Negotiates the protocol version from the agent's raw handshake text.
///
/// Returns the reply to send; `VersionReply::Error` means the session must be
/// closed after sending it.
pub fn negotiate_version(text: &str) -> VersionReply {
    let range: VersionRange = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            return VersionReply::Error {
                error: format!("could not parse protocol version range: {e}"),
            }
        }
    };
    if range.min > range.max {
        return VersionReply::Error {
            error: format!(
                "invalid protocol version range: min {} > max {}",
                range.min, range.max
            ),
        };
    }
    if range.min <= PROTOCOL_VERSION && PROTOCOL_VERSION <= range.max {
        VersionReply::Version {
            version: PROTOCOL_VERSION,
        }
    } else {
        VersionReply::Error {
            error: format!(
                "no overlapping protocol version: agent supports v{}..=v{}, monitor supports v{}..=v{}",
                range.min, range.max, PROTOCOL_VERSION, PROTOCOL_VERSION
            ),
        }
    }
}

/// A decoded agent → monitor message: `{"type": …, "content": …, "id": …}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InboundMsg {
    /// What the agent asks or tells (from `type` and `content`).
    #[serde(flatten)]
    pub kind: InboundKind,
    /// Message id (replies reuse it).
    pub id: u64,
}

/// The kinds of message the agent sends, adjacently tagged on the wire: the variant name in
/// `type`, its fields in the object `content`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", content = "content")]
pub enum InboundKind {
    /// The agent has granted more resources.
    UpscaleNotification {
        /// New total resources of the VM.
        granted: Resources,
    },
    /// The agent wants to shrink the VM to `target`.
    DownscaleRequest {
        /// Proposed total resources after the downscale.
        target: Resources,
    },
    /// The agent could not decode one of our messages.
    InvalidMessage {
        /// The agent's description.
        error: String,
    },
    /// The agent failed to handle one of our messages.
    InternalError {
        /// The agent's description.
        error: String,
    },
    /// Liveness probe; answered with a `HealthCheck` of the same id. Its `content` is an
    /// object (ignored), `null` or absent.
    #[serde(deserialize_with = "empty_content")]
    HealthCheck,
}

/// Accepts an object (whatever it holds) or `null` as the content of a field-less message.
fn empty_content<'de, D: serde::Deserializer<'de>>(content: D) -> Result<(), D::Error> {
    Option::<serde_json::Map<String, serde_json::Value>>::deserialize(content).map(drop)
}

/// Why an inbound text frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct DecodeError {
    /// The id of the offending message, if it could be read.
    pub id: Option<u64>,
    /// What was wrong.
    pub reason: String,
}

/// Decodes one agent → monitor text frame.
pub fn decode_inbound(text: &str) -> Result<InboundMsg, DecodeError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| DecodeError {
        id: None,
        reason: format!("message is not valid JSON: {e}"),
    })?;
    // Best effort: recover the id so that the InvalidMessage reply can reuse it.
    let id = value.get("id").and_then(serde_json::Value::as_u64);
    let kind = value
        .get("type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("(no type)")
        .to_string();
    serde_json::from_value(value).map_err(|e| DecodeError {
        id,
        reason: format!("malformed {kind} message: {e}"),
    })
}

/// A monitor → agent message (serialized flat, `id` last).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboundMsg {
    /// Message payload (provides `type` and the fields).
    #[serde(flatten)]
    pub kind: OutboundKind,
    /// Message id: the request's id for replies, a fresh odd id otherwise.
    pub id: u64,
}

impl OutboundMsg {
    /// Builds a message.
    pub fn new(kind: OutboundKind, id: u64) -> Self {
        Self { kind, id }
    }

    /// Serializes to the JSON text sent on the wire.
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings, bools and integers cannot fail;
        // fall back to a hand-written InternalError rather than panicking.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                "{{\"type\":\"InternalError\",\"error\":{},\"id\":{}}}",
                serde_json::Value::String(format!("serialization failed: {e}")),
                self.id
            )
        })
    }
}

/// The kinds of message the monitor sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum OutboundKind {
    /// We could not decode an agent message.
    InvalidMessage {
        /// Why.
        error: String,
    },
    /// We failed to handle an agent message.
    InternalError {
        /// Why.
        error: String,
    },
    /// Urgent: memory use crossed the threshold.
    UpscaleRequest {},
    /// Acknowledges an `UpscaleNotification`.
    UpscaleConfirmation {},
    /// Answers a `DownscaleRequest` (field names capitalised for the Go agent).
    DownscaleResult {
        /// Whether the downscale may proceed.
        #[serde(rename = "Ok")]
        ok: bool,
        /// Explanation.
        #[serde(rename = "Status")]
        status: String,
    },
    /// Answers a `HealthCheck`.
    HealthCheck {},
}

/// Mints monitor-side message ids: 1, 3, 5, …
#[derive(Debug, Clone)]
pub struct MessageIdGenerator {
    next: u64,
}

impl Default for MessageIdGenerator {
    fn default() -> Self {
        Self { next: 1 }
    }
}

impl MessageIdGenerator {
    /// Returns the next odd id.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next;
        self.next = self.next.wrapping_add(2);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_shapes_are_flat_and_exact() {
        let cases = [
            (
                OutboundKind::DownscaleResult {
                    ok: true,
                    status: "fine".into(),
                },
                3,
                r#"{"type":"DownscaleResult","Ok":true,"Status":"fine","id":3}"#,
            ),
            (
                OutboundKind::UpscaleRequest {},
                5,
                r#"{"type":"UpscaleRequest","id":5}"#,
            ),
            (
                OutboundKind::UpscaleConfirmation {},
                4,
                r#"{"type":"UpscaleConfirmation","id":4}"#,
            ),
            (
                OutboundKind::HealthCheck {},
                8,
                r#"{"type":"HealthCheck","id":8}"#,
            ),
            (
                OutboundKind::InvalidMessage {
                    error: "bad".into(),
                },
                7,
                r#"{"type":"InvalidMessage","error":"bad","id":7}"#,
            ),
            (
                OutboundKind::InternalError {
                    error: "oops".into(),
                },
                2,
                r#"{"type":"InternalError","error":"oops","id":2}"#,
            ),
        ];
        for (kind, id, want) in cases {
            assert_eq!(OutboundMsg::new(kind, id).to_json(), want);
        }
    }

    #[test]
    fn inbound_adjacently_tagged() {
        let m = decode_inbound(
            r#"{"type":"UpscaleNotification","content":{"granted":{"cpu":1.5,"mem":4294967296}},"id":2}"#,
        )
        .unwrap();
        assert_eq!(m.id, 2);
        assert_eq!(
            m.kind,
            InboundKind::UpscaleNotification {
                granted: Resources {
                    cpu: 1.5,
                    mem: 4 << 30
                }
            }
        );
        let m = decode_inbound(
            r#"{"type":"DownscaleRequest","content":{"target":{"cpu":0.25,"mem":1024}},"id":4}"#,
        )
        .unwrap();
        assert_eq!(
            m.kind,
            InboundKind::DownscaleRequest {
                target: Resources {
                    cpu: 0.25,
                    mem: 1024
                }
            }
        );
        for text in [
            r#"{"type":"HealthCheck","content":{},"id":6}"#,
            r#"{"type":"HealthCheck","id":6}"#,
        ] {
            assert_eq!(decode_inbound(text).unwrap().kind, InboundKind::HealthCheck);
        }
        let m =
            decode_inbound(r#"{"type":"InternalError","content":{"error":"x"},"id":8}"#).unwrap();
        assert_eq!(m.kind, InboundKind::InternalError { error: "x".into() });
        let m =
            decode_inbound(r#"{"type":"InvalidMessage","content":{"error":"y"},"id":9}"#).unwrap();
        assert_eq!(m.kind, InboundKind::InvalidMessage { error: "y".into() });
    }

    #[test]
    fn inbound_garbage_is_an_error_with_best_effort_id() {
        let e = decode_inbound("not json").unwrap_err();
        assert_eq!(e.id, None);
        let e = decode_inbound(r#"{"type":"Nope","content":{},"id":12}"#).unwrap_err();
        assert_eq!(e.id, Some(12));
        assert!(e.reason.contains("Nope"), "{e}");
        let e = decode_inbound(r#"{"type":"DownscaleRequest","content":{"target":1},"id":14}"#)
            .unwrap_err();
        assert_eq!(e.id, Some(14));
        let e = decode_inbound(r#"{"type":"HealthCheck","id":-1}"#).unwrap_err();
        assert_eq!(e.id, None);
        assert!(decode_inbound(r#"{"content":{},"id":3}"#).is_err());
        assert!(decode_inbound("[]").is_err());
        assert!(decode_inbound("").is_err());
        assert!(decode_inbound(r#"{"type":"HealthCheck","content":5,"id":1}"#).is_err());
    }

    #[test]
    fn health_check_content_is_an_object_null_or_absent() {
        for text in [
            r#"{"type":"HealthCheck","content":null,"id":2}"#,
            r#"{"type":"HealthCheck","content":{"any":[1]},"id":2}"#,
        ] {
            assert_eq!(decode_inbound(text).unwrap().kind, InboundKind::HealthCheck);
        }
        for content in ["[]", "\"x\"", "true"] {
            let text = format!(r#"{{"type":"HealthCheck","content":{content},"id":4}}"#);
            let e = decode_inbound(&text).unwrap_err();
            assert_eq!(e.id, Some(4), "{text}");
        }
        let e = decode_inbound(r#"{"type":"UpscaleNotification","id":14}"#).unwrap_err();
        assert_eq!(e.id, Some(14));
        assert!(e.reason.contains("UpscaleNotification"), "{e}");
    }

    #[test]
    fn version_negotiation() {
        assert_eq!(
            serde_json::to_string(&negotiate_version(r#"{"min":1,"max":1}"#)).unwrap(),
            r#"{"version":1}"#
        );
        assert_eq!(
            negotiate_version(r#"{"min":1,"max":3}"#),
            VersionReply::Version { version: 1 }
        );
        for bad in [
            r#"{"min":2,"max":3}"#,
            r#"{"min":0,"max":0}"#,
            r#"{"min":3,"max":1}"#,
            "x",
            "{}",
        ] {
            let reply = negotiate_version(bad);
            assert!(
                matches!(reply, VersionReply::Error { .. }),
                "{bad}: {reply:?}"
            );
            let json = serde_json::to_value(&reply).unwrap();
            assert!(json["error"].is_string(), "{json}");
        }
    }

    #[test]
    fn ids_are_odd_and_increase_by_two() {
        let mut g = MessageIdGenerator::default();
        let ids: Vec<u64> = (0..4).map(|_| g.next_id()).collect();
        assert_eq!(ids, [1, 3, 5, 7]);
    }
}
