//! What a handler reads ([`ApiRequest`]) and answers ([`Reply`]), and the JSON body
//! decoding with upstream's rejection texts ([`parse_json_in`]).

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::body::{BodyStream, ReplyBody};

/// One request, read and ready for a handler.
#[derive(Debug)]
pub struct ApiRequest {
    /// The method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query string (without `?`); `None` when the URL has no `?`.
    pub query: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The W3C `traceparent` header (the caller's trace context), if any.
    pub traceparent: Option<String>,
    /// The body (at most [`crate::MAX_BODY`]).
    pub body: Vec<u8>,
}

/// The body of every JSON error: `{"error": message}`.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: String,
}

/// A handler's answer.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status code.
    pub status: StatusCode,
    /// The body.
    pub body: Vec<u8>,
    /// Its content type (none for an empty body).
    pub content_type: Option<Cow<'static, str>>,
    /// Close the connection after this reply (the request was not read whole).
    pub close: bool,
    /// The rest of a streamed body, sent after [`Reply::body`] (chunked encoding).
    pub stream: Option<BodyStream>,
}

impl Reply {
    /// A JSON body; a value serde cannot write (a map with non-string keys) is a 500.
    pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Reply {
        match serde_json::to_vec(value) {
            Ok(body) => Reply::bytes(status, Cow::Borrowed("application/json"), body),
            Err(error) => Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("writing the response body: {error}"),
            ),
        }
    }

    /// `{"error": message}`.
    pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Reply {
        Reply::json(
            status,
            &ErrorBody {
                error: message.to_string(),
            },
        )
    }

    /// Plain text with a content type.
    pub fn text(status: StatusCode, content_type: &'static str, body: String) -> Reply {
        Reply::bytes(status, Cow::Borrowed(content_type), body.into_bytes())
    }

    /// Any body with its content type.
    pub fn bytes(status: StatusCode, content_type: Cow<'static, str>, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body,
            content_type: Some(content_type),
            close: false,
            stream: None,
        }
    }

    /// `first`, then the chunks of `rest` (chunked encoding: see [`crate::body`]).
    pub fn streaming(
        status: StatusCode,
        content_type: Cow<'static, str>,
        first: Vec<u8>,
        rest: BodyStream,
    ) -> Reply {
        Reply {
            stream: Some(rest),
            ..Reply::bytes(status, content_type, first)
        }
    }

    /// An empty body.
    pub fn empty(status: StatusCode) -> Reply {
        Reply {
            status,
            body: Vec::new(),
            content_type: None,
            close: false,
            stream: None,
        }
    }

    /// Closes the connection after this reply (the request was not read whole).
    pub fn closing(mut self) -> Reply {
        self.close = true;
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let body = match self.stream {
            None => ReplyBody::whole(self.body),
            Some(rest) => ReplyBody::Streamed {
                first: Some(Bytes::from(self.body)),
                rest,
            },
        };
        let mut response = Response::new(axum::body::Body::new(body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        if let Some(content_type) = self
            .content_type
            .and_then(|value| HeaderValue::from_str(&value).ok())
        {
            headers.insert(CONTENT_TYPE, content_type);
        }
        if self.close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// How an axum extractor's rejection is answered ([`parse_json_in`],
/// [`crate::extract::query`], [`crate::extract::json_content_type`]): axum words them
/// `Failed to parse the request body as JSON: …` (400), `Failed to deserialize the JSON body
/// into the target type: <path>: …` (422), `Failed to deserialize query string: …` (400),
/// `Expected request with `Content-Type: application/json`` (415).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// `{"error": …}` lower-cased whole, as upstream's JSON extractor (`/configure`).
    Lower,
    /// `{"error": …}` with the framework's words lower-cased and serde's as written
    /// (`/grants`, `/extensions`: their 422s keep the wire names' case, e.g.
    /// `invalid type: string "USAGE"`).
    AsWritten,
    /// Plain text in the framework's own case, as upstream's raw extractor (`/promote`).
    PlainText,
}

impl Rejection {
    /// An axum rejection (`status`, its `body_text`) worded as this style says.
    pub fn reply(self, status: StatusCode, text: String) -> Reply {
        match self {
            Rejection::Lower => Reply::error(status, text.to_lowercase()),
            Rejection::AsWritten => match text.split_once(": ") {
                Some((words, detail)) => {
                    Reply::error(status, format!("{}: {detail}", words.to_lowercase()))
                }
                None => Reply::error(status, text.to_lowercase()),
            },
            Rejection::PlainText => Reply::text(status, "text/plain; charset=utf-8", text),
        }
    }
}

/// Parses a JSON request body as upstream's JSON extractor does: see [`parse_json_in`] and
/// [`Rejection::Lower`].
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    parse_json_in(body, Rejection::Lower)
}

/// Parses a JSON request body with axum's JSON extractor (`axum::Json::from_bytes`, what
/// upstream's routes use): 400 for a syntax error or trailing data, 422 for a body of the
/// wrong shape, naming the JSON path; its rejection worded as `rejection` says.
pub fn parse_json_in<T: DeserializeOwned>(body: &[u8], rejection: Rejection) -> Result<T, Reply> {
    axum::Json::<T>::from_bytes(body)
        .map(|axum::Json(value)| value)
        .map_err(|refused| rejection.reply(refused.status(), refused.body_text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_are_400_or_422_with_the_path() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Body {
            spec: Inner,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            count: u32,
        }
        let syntax = parse_json::<Body>(b"{").unwrap_err();
        assert_eq!(syntax.status, 400);
        let text = String::from_utf8(syntax.body).unwrap();
        assert!(
            text.contains("failed to parse the request body as json: eof"),
            "{text}"
        );
        let shape = parse_json::<Body>(br#"{"spec": {"count": "x"}}"#).unwrap_err();
        assert_eq!(shape.status, 422);
        let text = String::from_utf8(shape.body).unwrap();
        assert!(
            text.contains("failed to deserialize the json body into the target type: spec.count: invalid type"),
            "{text}"
        );
        assert_eq!(
            parse_json::<Body>(br#"{"spec": {"count": 1}} x"#)
                .unwrap_err()
                .status,
            400
        );
        assert!(parse_json::<Body>(br#"{"spec": {"count": 1}}"#).is_ok());
    }
}
