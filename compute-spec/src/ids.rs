//! Identifier types with Neon's text forms: [`Lsn`] (`16/B5A50` halves) and
//! [`TenantId`] / [`TimelineId`] (32 lowercase hex characters).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A WAL position. Text form: two uppercase hex halves without padding, `"0/16B5A50"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The "no position" LSN, `0/0`: "latest" for a pageserver, nothing for initdb.
    pub const INVALID: Lsn = Lsn(0);

    /// True for `0/0`.
    pub fn is_invalid(self) -> bool {
        self.0 == 0
    }
}

/// Why a string is not an LSN or an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdParseError {
    /// The LSN text is not `HEX/HEX`.
    #[error("invalid LSN {0:?}: expected two hex halves like \"0/16B5A50\"")]
    Lsn(String),
    /// The id is not 32 hex characters.
    #[error("invalid id {0:?}: expected 32 hex characters")]
    Id(String),
}

impl FromStr for Lsn {
    type Err = IdParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || IdParseError::Lsn(text.to_string());
        let (high, low) = text.trim().split_once('/').ok_or_else(error)?;
        let valid_half = |half: &str| !half.is_empty() && half.len() <= 8;
        if !valid_half(high) || !valid_half(low) {
            return Err(error());
        }
        let high = u32::from_str_radix(high, 16).map_err(|_| error())?;
        let low = u32::from_str_radix(low, 16).map_err(|_| error())?;
        Ok(Lsn(((high as u64) << 32) | low as u64))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

macro_rules! string_serde {
    ($type:ty) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_serde!(Lsn);

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; 16]);

        impl FromStr for $name {
            type Err = IdParseError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let error = || IdParseError::Id(text.to_string());
                if text.len() != 32 || !text.is_ascii() {
                    return Err(error());
                }
                let mut bytes = [0u8; 16];
                for (index, byte) in bytes.iter_mut().enumerate() {
                    let pair = &text[index * 2..index * 2 + 2];
                    *byte = u8::from_str_radix(pair, 16).map_err(|_| error())?;
                }
                Ok($name(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for byte in self.0 {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }

        string_serde!($name);
    };
}

hex_id!(
    /// A Neon tenant: 16 bytes, written as 32 lowercase hex characters.
    TenantId
);
hex_id!(
    /// A Neon timeline: 16 bytes, written as 32 lowercase hex characters.
    TimelineId
);

macro_rules! string_schema {
    ($type:ty, $name:literal, $pattern:literal, $description:literal) => {
        impl schemars::JsonSchema for $type {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": $pattern,
                    "description": $description,
                })
            }
        }
    };
}

string_schema!(
    Lsn,
    "Lsn",
    "^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$",
    "A WAL position as two hex halves, e.g. 0/16B5A50"
);
string_schema!(
    TenantId,
    "TenantId",
    "^[0-9a-fA-F]{32}$",
    "A Neon tenant id: 32 hex characters"
);
string_schema!(
    TimelineId,
    "TimelineId",
    "^[0-9a-fA-F]{32}$",
    "A Neon timeline id: 32 hex characters"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_form_round_trips() {
        let lsn: Lsn = "0/16B5A50".parse().unwrap();
        assert_eq!(lsn, Lsn(0x16B5A50));
        assert_eq!(lsn.to_string(), "0/16B5A50");
        assert_eq!(Lsn(0x1_0000_00FF).to_string(), "1/FF");
        assert_eq!("a/ff".parse::<Lsn>().unwrap(), Lsn(0xA_0000_00FF));
        assert_eq!(Lsn::INVALID.to_string(), "0/0");
    }

    #[test]
    fn lsn_rejects_malformed_text() {
        for bad in ["", "0", "0/", "/1", "g/1", "1/2/3", "123456789/0", "-1/0"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn ids_are_lowercase_hex() {
        let text = "b0554b632bd4d547a63b86c3630317e8";
        let tenant: TenantId = text.parse().unwrap();
        assert_eq!(tenant.to_string(), text);
        let upper: TimelineId = text.to_uppercase().parse().unwrap();
        assert_eq!(upper.to_string(), text);
        assert!("TENANT_ID".parse::<TenantId>().is_err());
        assert!("b0554b632bd4d547a63b86c3630317e"
            .parse::<TenantId>()
            .is_err());
        assert!("é0554b632bd4d547a63b86c3630317e"
            .parse::<TenantId>()
            .is_err());
    }

    #[test]
    fn serde_uses_text_forms() {
        let json = serde_json::to_string(&Lsn(0x16B5A50)).unwrap();
        assert_eq!(json, "\"0/16B5A50\"");
        let back: Lsn = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Lsn(0x16B5A50));
        assert!(serde_json::from_str::<Lsn>("\"zz\"").is_err());
    }
}
