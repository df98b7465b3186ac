//! The checks in front of every route's handler, as tower layers (axum `from_fn`
//! middleware) that [`crate::routes::router`] stacks per route from its table entry, in
//! upstream's order after routing: authentication ([`authenticate`]), the JSON
//! `Content-Type` ([`json_content_type`]), then the body ([`buffer_body`]: at most
//! [`MAX_BODY`], 413; within the body deadline, 408; both close the connection).
//!
//! A connection is busy (never closed to make room, see the server's connection slots)
//! from its request's headers on, except while [`buffer_body`] waits for the body of a
//! request that no token vouched for: a client that promises a body and never sends it is
//! then as evictable as one that never finishes its headers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Body as _;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH};
use hyper::StatusCode;

use crate::reply::{Rejection, Reply};
use crate::routes::Context;
use crate::server::MAX_BODY;
use crate::slots::Slot;

/// A request extension: a token vouched for the request.
#[derive(Clone, Copy, Debug)]
struct Authenticated;

/// Refuses a request without a valid token when `required` (see [`crate::auth`]); the
/// refusal's status and upstream's `{"error"}` text.
pub async fn authenticate<S: Context>(
    State((state, required)): State<(S, bool)>,
    mut request: Request,
    next: Next,
) -> Response {
    if required {
        let authorization = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        if let Err(refused) = state.auth().check(authorization, state.compute_id()) {
            return Reply::error(refused.status(), refused).into_response();
        }
        request.extensions_mut().insert(Authenticated);
    }
    next.run(request).await
}

/// axum's JSON `Content-Type` check (415), worded as `style` says; none when `None`.
pub async fn json_content_type(
    State(style): State<Option<Rejection>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(style) = style {
        if let Err(reply) = crate::extract::json_content_type(request.headers(), style).await {
            return reply.into_response();
        }
    }
    next.run(request).await
}

/// Reads the whole body within `deadline` and at most [`MAX_BODY`] bytes, and hands it on
/// buffered; answers 413 or 408 (closing the connection) instead. While the body of a request
/// without a token is awaited, its connection may be closed to make room.
pub async fn buffer_body(
    State(deadline): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|length| length.trim().parse::<u64>().ok());
    let evictable = parts
        .extensions
        .get::<Arc<Slot>>()
        .filter(|_| parts.extensions.get::<Authenticated>().is_none() && !body.is_end_stream())
        .cloned();
    if let Some(slot) = &evictable {
        slot.awaiting_body();
    }
    let read = read_body(body, declared, deadline).await;
    if let Some(slot) = &evictable {
        slot.busy();
    }
    match read {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(reply) => reply.into_response(),
    }
}

async fn read_body(
    body: Body,
    declared: Option<u64>,
    deadline: Duration,
) -> Result<Vec<u8>, Reply> {
    let too_large = || {
        Reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "failed to buffer the request body: length limit exceeded",
        )
        .closing()
    };
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return Err(too_large());
    }
    let limited = Limited::new(body, MAX_BODY);
    match tokio::time::timeout(deadline, limited.collect()).await {
        Err(_) => Err(Reply::error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} ms",
                deadline.as_millis()
            ),
        )
        .closing()),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(error)) => Err(Reply::error(
            StatusCode::BAD_REQUEST,
            format!("failed to read the request body: {error}"),
        )
        .closing()),
        Ok(Ok(collected)) => Ok(collected.to_bytes().to_vec()),
    }
}
