//! [`Secret`]: a string that never shows itself in `Debug` or logs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret string (password hash, storage token). Serialised as the plain string, because
/// stages must pass it on, but `Debug` prints `********` so a logged struct cannot leak it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself. Call only where the value is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"********\"")
    }
}

/// What plans and logs show in place of a secret.
pub const REDACTED: &str = "********";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("SCRAM-SHA-256$4096:abc");
        assert_eq!(format!("{secret:?}"), "\"********\"");
        assert_eq!(
            serde_json::to_string(&secret).unwrap(),
            "\"SCRAM-SHA-256$4096:abc\""
        );
    }
}
