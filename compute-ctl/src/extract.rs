//! What the handlers read from a request besides its JSON body: the query string (form
//! decoding, as upstream's `serde_urlencoded`-based extractor, by the `form_urlencoded`
//! crate) and the `Content-Type` check of the JSON body routes (upstream's 415).
//!
//! JSON bodies are decoded by [`crate::http::parse_json`].

use crate::http::Reply;

/// The decoded `(name, value)` pairs of a query string (`a=1&b=x%20y`): `+` is a space,
/// `%XX` the byte, a malformed escape stays as written, invalid UTF-8 becomes U+FFFD.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(query.as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
}

/// The value of `name` in a query string; the first occurrence wins.
pub fn query_value(query: &str, name: &str) -> Option<String> {
    query_pairs(query)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

/// The value of `name` in a query string, or the serde_urlencoded error text for a field
/// given twice (`duplicate field `name``), which upstream's extractor rejects.
pub fn query_single(query: &str, name: &str) -> Result<Option<String>, String> {
    let mut values = query_pairs(query)
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value);
    let first = values.next();
    if values.next().is_some() {
        return Err(format!("duplicate field `{name}`"));
    }
    Ok(first)
}

/// Whether a `Content-Type` is one upstream's JSON extractor accepts: `application/json` or
/// `application/*+json`, parameters allowed (`text/json` is not).
pub fn is_json_content_type(content_type: Option<&str>) -> bool {
    let essence = content_type
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase());
    essence.as_deref().is_some_and(|essence| {
        essence == "application/json"
            || essence
                .strip_prefix("application/")
                .is_some_and(|subtype| subtype.ends_with("+json") && !subtype.contains('/'))
    })
}

/// Upstream's 415 for a JSON body route whose `Content-Type` is missing or not JSON (see
/// [`is_json_content_type`]).
pub fn require_json_content_type(content_type: Option<&str>) -> Result<(), Reply> {
    if is_json_content_type(content_type) {
        Ok(())
    } else {
        Err(Reply::error(
            415,
            "expected request with `content-type: application/json`",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::body;
    use serde_json::json;

    fn decoded(text: &str) -> String {
        query_value(&format!("v={text}"), "v").unwrap()
    }

    #[test]
    fn query_strings_decode_like_forms() {
        assert_eq!(
            query_value("database=a%20b+c", "database").as_deref(),
            Some("a b c")
        );
        assert_eq!(
            query_value("x=1&database=", "database").as_deref(),
            Some("")
        );
        assert_eq!(query_value("database", "database").as_deref(), Some(""));
        assert_eq!(query_value("a=1", "database"), None);
        assert_eq!(query_value("", "database"), None);
        assert_eq!(decoded("%22%3B%0A%zz%4"), "\";\n%zz%4");
        assert_eq!(decoded("%C3%A9%FF"), "é\u{FFFD}");
        assert_eq!(
            query_pairs("a=1&&b=x%3Dy=z").collect::<Vec<_>>(),
            [
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "x=y=z".to_string())
            ]
        );
    }

    #[test]
    fn duplicate_fields_and_content_types() {
        assert_eq!(
            query_single("database=a", "database"),
            Ok(Some("a".to_string()))
        );
        assert_eq!(query_single("x=1", "database"), Ok(None));
        assert_eq!(
            query_single("database=a&database=b", "database"),
            Err("duplicate field `database`".to_string())
        );
        for good in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(require_json_content_type(Some(good)).is_ok(), "{good}");
        }
        for bad in [
            None,
            Some("text/json"),
            Some("text/plain"),
            Some("application/jsonx"),
            Some(""),
        ] {
            let reply = require_json_content_type(bad).unwrap_err();
            assert_eq!(reply.status, 415);
            assert_eq!(
                body(&reply),
                json!({"error": "expected request with `content-type: application/json`"})
            );
        }
    }
}
