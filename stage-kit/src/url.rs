//! Building URL paths from values that come from input (a spec, a request): each value is one
//! path segment, percent-encoded, never a way to another path.

/// `value` as one URL path segment: every byte but RFC 3986's unreserved characters
/// (`A–Z a–z 0–9 - . _ ~`) percent-encoded, so `/`, `?`, `#` and `%` cannot change the path.
/// An empty value and the dot segments `.` and `..` are refused (a server or proxy
/// normalising the path would move up a level, or drop the segment); the error says why.
pub fn path_segment(value: &str) -> Result<String, String> {
    match value {
        "" => return Err("it is empty".to_string()),
        "." | ".." => {
            return Err(format!(
                "{value:?} is a relative path segment, which would change the path"
            ))
        }
        _ => {}
    }
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                encoded.push(char::from(byte))
            }
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded_and_dot_segments_refused() {
        assert_eq!(
            path_segment("ep-cool_darkness.1~").unwrap(),
            "ep-cool_darkness.1~"
        );
        assert_eq!(path_segment("../x").unwrap(), "..%2Fx");
        assert_eq!(
            path_segment("a/b?c#d%e f").unwrap(),
            "a%2Fb%3Fc%23d%25e%20f"
        );
        assert_eq!(path_segment("é").unwrap(), "%C3%A9");
        assert_eq!(path_segment("...").unwrap(), "...");
        for refused in ["", ".", ".."] {
            assert!(path_segment(refused).is_err(), "{refused:?}");
        }
    }
}
