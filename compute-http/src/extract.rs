//! What the handlers read from a request besides its JSON body, by axum's own extractors
//! (upstream's routes use them, so the rejections are theirs): the query string
//! (`axum::extract::Query`, serde_urlencoded) and the `Content-Type` check of the JSON body
//! routes (`axum::Json`'s 415).
//!
//! JSON bodies are decoded by [`crate::parse_json_in`] (`axum::Json::from_bytes`).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Query};
use hyper::header::CONTENT_TYPE;
use hyper::{HeaderMap, StatusCode, Uri};
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::reply::{Rejection, Reply};

/// The query string (without `?`; `None` when the URL has none) decoded into `T` by axum's
/// `Query` extractor: `+` is a space, `%XX` the byte, a malformed escape stays as written,
/// invalid UTF-8 becomes U+FFFD; a field given twice, a missing one or a bad value is its
/// 400 `Failed to deserialize query string: …`, worded as `rejection` says.
pub fn query<T: DeserializeOwned>(query: Option<&str>, rejection: Rejection) -> Result<T, Reply> {
    let uri = match query {
        None => Uri::from_static("/"),
        Some(query) => Uri::try_from(format!("/?{query}")).map_err(|error| {
            rejection.reply(
                StatusCode::BAD_REQUEST,
                format!("Failed to deserialize query string: {error}"),
            )
        })?,
    };
    Query::<T>::try_from_uri(&uri)
        .map(|Query(value)| value)
        .map_err(|refused| rejection.reply(refused.status(), refused.body_text()))
}

/// axum's JSON `Content-Type` check (`application/json` or `application/*+json`,
/// parameters allowed; `text/json` is not): its 415 worded as `rejection` says.
pub async fn json_content_type(headers: &HeaderMap, rejection: Rejection) -> Result<(), Reply> {
    let mut probe = axum::extract::Request::new(axum::body::Body::empty());
    if let Some(content_type) = headers.get(CONTENT_TYPE) {
        probe
            .headers_mut()
            .insert(CONTENT_TYPE, content_type.clone());
    }
    match axum::Json::<IgnoredAny>::from_request(probe, &()).await {
        Err(refused @ JsonRejection::MissingJsonContentType(_)) => {
            Err(rejection.reply(refused.status(), refused.body_text()))
        }
        // The empty probe body's own rejection: the real body is read and parsed later.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;
    use serde_json::{json, Value};

    fn body(reply: &Reply) -> Value {
        serde_json::from_slice(&reply.body).unwrap()
    }

    #[derive(Debug, serde::Deserialize)]
    struct Database {
        database: Option<String>,
    }

    fn database(query: &str) -> Option<String> {
        super::query::<Database>(Some(query), Rejection::Lower)
            .unwrap()
            .database
    }

    #[test]
    fn query_strings_decode_like_forms() {
        assert_eq!(database("database=a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(database("x=1&database=").as_deref(), Some(""));
        assert_eq!(database("database").as_deref(), Some(""));
        assert_eq!(database("a=1"), None);
        assert_eq!(database(""), None);
        assert_eq!(
            database("database=%22%3B%0A%zz%4").as_deref(),
            Some("\";\n%zz%4")
        );
        assert_eq!(database("database=%C3%A9%FF").as_deref(), Some("é\u{FFFD}"));
        #[derive(Debug, serde::Deserialize)]
        struct Pair {
            a: String,
            b: String,
        }
        let pair: Pair = query(Some("a=1&&b=x%3Dy=z"), Rejection::Lower).unwrap();
        assert_eq!((pair.a.as_str(), pair.b.as_str()), ("1", "x=y=z"));
        let none: Database = query(None, Rejection::Lower).unwrap();
        assert_eq!(none.database, None);
    }

    #[tokio::test]
    async fn duplicate_fields_and_content_types() {
        let duplicate =
            query::<Database>(Some("database=a&database=b"), Rejection::Lower).unwrap_err();
        assert_eq!(duplicate.status, 400);
        assert_eq!(
            body(&duplicate),
            json!({"error": "failed to deserialize query string: duplicate field `database`"})
        );
        let headers = |value: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            }
            headers
        };
        for good in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            let checked = json_content_type(&headers(Some(good)), Rejection::Lower).await;
            assert!(checked.is_ok(), "{good}");
        }
        for bad in [
            None,
            Some("text/json"),
            Some("text/plain"),
            Some("application/jsonx"),
            Some(""),
        ] {
            let reply = json_content_type(&headers(bad), Rejection::Lower)
                .await
                .unwrap_err();
            assert_eq!(reply.status, 415);
            assert_eq!(
                body(&reply),
                json!({"error": "expected request with `content-type: application/json`"})
            );
        }
        let plain = json_content_type(&headers(Some("text/json")), Rejection::PlainText)
            .await
            .unwrap_err();
        assert_eq!(plain.status, 415);
        assert_eq!(
            String::from_utf8_lossy(&plain.body),
            "Expected request with `Content-Type: application/json`"
        );
    }
}
