//! vm-monitor protocol messages (`vm_monitor::protocol`): the version-range handshake and
//! every agent → monitor text frame, and the replies built from them.
//!
//! The first input byte picks the handshake or a message; the rest is the frame's text.
//! Invariants: no panic; a decode error's reply (`InvalidMessage`, carrying the error and the
//! message's id when it could be read) is JSON that parses back to the same type, text and
//! id; a decoded message's reply keeps its id.

use serde_json::Value;
use vm_monitor::protocol::{
    decode_inbound, negotiate_version, InboundKind, OutboundKind, OutboundMsg, VersionReply,
};

fn reply_round_trips(reply: &OutboundMsg, kind: &str) {
    let json = reply.to_json();
    let value: Value = match serde_json::from_str(&json) {
        Ok(value) => value,
        Err(error) => panic!("a reply is not JSON ({error}): {json}"),
    };
    assert_eq!(
        value.get("type").and_then(Value::as_str),
        Some(kind),
        "{json}"
    );
    assert_eq!(
        value.get("id").and_then(Value::as_u64),
        Some(reply.id),
        "{json}"
    );
    if let OutboundKind::InvalidMessage { error } | OutboundKind::InternalError { error } =
        &reply.kind
    {
        assert_eq!(
            value.get("error").and_then(Value::as_str),
            Some(error.as_str())
        );
    }
}

/// The body.
pub fn run(data: &[u8]) {
    let Some((&which, frame)) = data.split_first() else {
        return;
    };
    let text = crate::text(frame);
    if which % 4 == 0 {
        match negotiate_version(&text) {
            VersionReply::Version { version } => assert!(version > 0),
            VersionReply::Error { error } => assert!(!error.is_empty()),
        }
        return;
    }
    match decode_inbound(&text) {
        Err(error) => {
            assert!(!error.reason.is_empty(), "a decode error without a reason");
            let reply = OutboundMsg::new(
                OutboundKind::InvalidMessage {
                    error: error.reason,
                },
                error.id.unwrap_or(0),
            );
            reply_round_trips(&reply, "InvalidMessage");
        }
        Ok(message) => {
            let (kind, name) = match &message.kind {
                InboundKind::HealthCheck => (OutboundKind::HealthCheck {}, "HealthCheck"),
                InboundKind::UpscaleNotification { .. } => {
                    (OutboundKind::UpscaleConfirmation {}, "UpscaleConfirmation")
                }
                InboundKind::DownscaleRequest { target } => (
                    OutboundKind::DownscaleResult {
                        ok: false,
                        status: format!("{target:?}"),
                    },
                    "DownscaleResult",
                ),
                InboundKind::InvalidMessage { error } | InboundKind::InternalError { error } => (
                    OutboundKind::InternalError {
                        error: error.clone(),
                    },
                    "InternalError",
                ),
            };
            reply_round_trips(&OutboundMsg::new(kind, message.id), name);
        }
    }
}
