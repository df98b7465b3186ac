//! [`Timestamp`]: a moment in UTC, written as RFC 3339 with milliseconds and `Z`
//! (`2026-11-24T22:00:00.123Z`), the form `pg-supervise`'s `activity` event carries.
//!
//! Reading accepts RFC 3339 in UTC (`Z` or `+00:00`) with any fraction (`…:01Z`,
//! `…:01.123456Z`): the shape [`PATTERN`] says, then the date and time checked by
//! `humantime::parse_rfc3339`; anything else (another offset, a space for `T`, a date out of
//! range) is refused. A value holds whole milliseconds (a finer
//! fraction is cut, as the writer cuts it), so a value and its text round-trip exactly. Its
//! range is what the text form can say: from 1970-01-01T00:00:00.000Z to
//! 9999-12-31T23:59:59.999Z; [`Timestamp::from`] a `SystemTime` outside it is clamped.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The shape of the text form, as a regular expression (also in the JSON Schema).
pub const PATTERN: &str = concat!(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}",
    r"T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|\+00:00)$"
);

/// The first millisecond the text form cannot say (year 10000).
const END_MILLIS: u64 = 253_402_300_800_000;

/// A moment in UTC, to the millisecond; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Milliseconds since the Unix epoch, below [`END_MILLIS`].
    millis: u64,
}

/// Why a text is not a [`Timestamp`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an RFC 3339 UTC timestamp like 2026-11-24T22:00:00.123Z ({reason})")]
pub struct TimestampError {
    text: String,
    reason: String,
}

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> u64 {
        self.millis
    }

    /// The moment as a `SystemTime`.
    pub fn system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.millis)
    }

    /// Parses the text form (see the module documentation).
    pub fn parse(text: &str) -> Result<Timestamp, TimestampError> {
        let refused = |reason: String| TimestampError {
            text: text.to_string(),
            reason,
        };
        if !well_formed(text) {
            return Err(refused(
                "not of the form YYYY-MM-DDTHH:MM:SS[.fraction]Z".into(),
            ));
        }
        let time = humantime::parse_rfc3339(text).map_err(|error| refused(error.to_string()))?;
        Ok(Timestamp::from(time))
    }
}

/// Whether `text` has the shape of [`PATTERN`].
fn well_formed(text: &str) -> bool {
    let bytes = text.as_bytes();
    let Some(head) = bytes.get(..19) else {
        return false;
    };
    let head_ok = head.iter().enumerate().all(|(at, byte)| match at {
        4 | 7 => *byte == b'-',
        10 => *byte == b'T',
        13 | 16 => *byte == b':',
        _ => byte.is_ascii_digit(),
    });
    let rest = &bytes[19..];
    let zone = if rest.ends_with(b"Z") {
        1
    } else if rest.ends_with(b"+00:00") {
        6
    } else {
        return false;
    };
    let fraction = &rest[..rest.len() - zone];
    let fraction_ok = match fraction.split_first() {
        None => true,
        Some((b'.', digits)) => !digits.is_empty() && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    head_ok && fraction_ok
}

impl From<SystemTime> for Timestamp {
    /// Cuts to the millisecond; a moment before 1970 or after 9999 is clamped to the range.
    fn from(time: SystemTime) -> Timestamp {
        let millis = time.duration_since(UNIX_EPOCH).map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
        Timestamp {
            millis: millis.min(END_MILLIS - 1),
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(timestamp: Timestamp) -> SystemTime {
        timestamp.system_time()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // In range by construction, so humantime's formatter cannot fail.
        fmt::Display::fmt(&humantime::format_rfc3339_millis(self.system_time()), f)
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(text: &str) -> Result<Timestamp, TimestampError> {
        Timestamp::parse(text)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = <Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "pattern": PATTERN,
            "description": "RFC 3339 in UTC, written with milliseconds and `Z` \
                            (2026-11-24T22:00:00.123Z).",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_round_trips_exactly() {
        for text in [
            "2026-11-24T22:00:00.123Z",
            "1970-01-01T00:00:00.000Z",
            "2024-02-29T23:59:59.999Z",
            "9999-12-31T23:59:59.999Z",
        ] {
            let json = format!("\"{text}\"");
            let timestamp: Timestamp = serde_json::from_str(&json).unwrap();
            assert_eq!(serde_json::to_string(&timestamp).unwrap(), json);
            assert_eq!(timestamp.to_string(), text);
        }
        let at = Timestamp::parse("2026-11-24T22:00:00.123Z").unwrap();
        assert_eq!(at.unix_millis(), 1_795_989_600_123 - 5 * 86_400_000);
    }

    #[test]
    fn other_utc_forms_are_read_and_written_in_the_wire_form() {
        let cases = [
            ("2027-01-15T08:00:01Z", "2027-01-15T08:00:01.000Z"),
            ("2027-01-15T08:00:01.5Z", "2027-01-15T08:00:01.500Z"),
            ("2027-01-15T08:00:01.123999999Z", "2027-01-15T08:00:01.123Z"),
            ("2027-01-15T08:00:01.123+00:00", "2027-01-15T08:00:01.123Z"),
        ];
        for (read, written) in cases {
            assert_eq!(Timestamp::parse(read).unwrap().to_string(), written);
        }
    }

    #[test]
    fn bad_text_is_refused_with_the_text_and_the_expected_form() {
        for bad in [
            "",
            "yesterday",
            "2026-11-24 22:00:00.123Z",
            "2026-11-24T22:00:00.123",
            "2026-11-24T22:00:00.123+01:00",
            "2026-13-24T22:00:00.123Z",
            "2026-02-30T22:00:00Z",
            "1969-12-31T23:59:59.999Z",
            "2026-11-24T22:00:00.12xZ",
            "2026-11-24T22:00:00.Z",
            "2026-11-24T22:00:00.123ZZ",
            "2026-11-24T22:00:00,123Z",
            "+2026-11-24T22:00:00Z",
            "２026-11-24T22:00:00Z",
        ] {
            let error = Timestamp::parse(bad).unwrap_err().to_string();
            assert!(error.contains(&format!("{bad:?}")), "{error}");
            assert!(error.contains("2026-11-24T22:00:00.123Z"), "{error}");
            assert!(serde_json::from_value::<Timestamp>(bad.into()).is_err());
        }
        assert!(serde_json::from_str::<Timestamp>("1795989600123").is_err());
    }

    #[test]
    fn system_times_are_cut_to_the_millisecond_and_clamped() {
        let time = UNIX_EPOCH + Duration::new(1_795_989_600, 123_456_789);
        let timestamp = Timestamp::from(time);
        assert_eq!(timestamp.unix_millis(), 1_795_989_600_123);
        assert_eq!(timestamp.to_string(), "2026-11-29T22:00:00.123Z");
        assert_eq!(
            timestamp.system_time(),
            UNIX_EPOCH + Duration::from_millis(1_795_989_600_123)
        );
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(
            Timestamp::from(before).to_string(),
            "1970-01-01T00:00:00.000Z"
        );
        let after = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(
            Timestamp::from(after).to_string(),
            "9999-12-31T23:59:59.999Z"
        );
    }
}
