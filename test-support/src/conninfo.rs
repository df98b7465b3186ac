//! Connection strings: libpq key/value quoting and URL percent-encoding.

use std::fmt::Write as _;

/// Quotes a libpq key/value connection-string value when it needs it.
pub(crate) fn quote_conn_value(value: &str) -> String {
    if !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return value.to_string();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Percent-encodes everything except RFC 3986 unreserved characters.
pub(crate) fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_conn_value("/dev/shm/x"), "/dev/shm/x");
        assert_eq!(quote_conn_value("a b"), "'a b'");
        assert_eq!(quote_conn_value("it's"), "'it\\'s'");
        assert_eq!(quote_conn_value(""), "''");
        assert_eq!(percent_encode("/dev/shm/a_b"), "%2Fdev%2Fshm%2Fa_b");
    }
}
