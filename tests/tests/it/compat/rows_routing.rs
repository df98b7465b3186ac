//! The rows of the compatibility table: routing (§2.1): unknown paths, methods (405 before auth), HEAD, request ids.

use super::*;

/// Routing (§2.1): unknown paths, methods (405 before auth), HEAD, request ids.
pub fn rows() -> Vec<Row> {
    use Check::*;
    vec![
        // ---- §2.1 routing: unknown paths, methods (405 before auth), HEAD, request ids.
        ext("GET", "/nope", "unknown path").expect(404, vec![Empty]),
        ext("GET", "/status/extra", "unknown subpath").expect(404, vec![Empty]),
        ext("POST", "/extensions", "internal route on external").expect(404, vec![Empty]),
        ext(
            "POST",
            "/refresh_configuration",
            "internal route on external",
        )
        .expect(404, vec![Empty]),
        int("GET", "/nope", "unknown path").expect(404, vec![Empty]),
        int("POST", "/configure", "external route on internal").expect(404, vec![Empty]),
        int("POST", "/terminate", "external route on internal").expect(404, vec![Empty]),
        int("POST", "/extension_server/", "empty filename").expect(404, vec![Empty]),
        ext("PUT", "/status", "405 no token").expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("DELETE", "/status", "405 bad token")
            .tok(Tok::BadSignature)
            .expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("POST", "/metrics", "405").expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("POST", "/metrics.json", "405").expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("GET", "/configure", "405").expect(405, vec![Empty, Header("allow", "POST")]),
        ext("GET", "/terminate", "405").expect(405, vec![Empty, Header("allow", "POST")]),
        ext("GET", "/check_writability", "405").expect(405, vec![Empty, Header("allow", "POST")]),
        ext("GET", "/promote", "405").expect(405, vec![Empty, Header("allow", "POST")]),
        ext("POST", "/insights", "405").expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("POST", "/dbs_and_roles", "405").expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("POST", "/database_schema", "405")
            .expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("POST", "/hadron_liveness_probe", "405")
            .expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("POST", "/autoscaling_metrics", "405")
            .expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("PUT", "/lfc/prewarm", "405")
            .expect(405, vec![Empty, Header("allow", "GET,HEAD,POST,DELETE")]),
        ext("DELETE", "/lfc/offload", "405")
            .expect(405, vec![Empty, Header("allow", "GET,HEAD,POST")]),
        int("GET", "/extensions", "405").expect(405, vec![Empty, Header("allow", "POST")]),
        int("GET", "/grants", "405").expect(405, vec![Empty, Header("allow", "POST")]),
        int("GET", "/refresh_configuration", "405")
            .expect(405, vec![Empty, Header("allow", "POST")]),
        int("GET", "/extension_server/foo", "405")
            .expect(405, vec![Empty, Header("allow", "POST")]),
        ext("GET", "/status", "X-Request-Id echoed")
            .tok(Tok::Ours)
            .header("X-Request-Id", "compat-req-1")
            .expect(200, vec![Header("x-request-id", "compat-req-1")]),
        ext("GET", "/nope", "X-Request-Id echoed on 404")
            .header("X-Request-Id", "compat-req-2")
            .expect(404, vec![Empty, Header("x-request-id", "compat-req-2")]),
        ext("PUT", "/status", "X-Request-Id echoed on 405")
            .header("X-Request-Id", "compat-req-3")
            .expect(405, vec![Empty, Header("x-request-id", "compat-req-3")]),
        ext("GET", "/status", "long X-Request-Id echoed")
            .tok(Tok::Ours)
            .header("X-Request-Id", LONG_REQUEST_ID)
            .expect(200, vec![Header("x-request-id", LONG_REQUEST_ID)]),
        ext("GET", "/status", "empty X-Request-Id echoed")
            .tok(Tok::Ours)
            .header("X-Request-Id", "")
            .expect(200, vec![Header("x-request-id", "")]),
        ext("GET", "/status", "X-Request-Id generated")
            .tok(Tok::Ours)
            .expect(
                200,
                vec![Custom("x-request-id is a UUID", request_id_is_uuid)],
            ),
        int("POST", "/nope", "X-Request-Id generated (internal)").expect(
            404,
            vec![Custom("x-request-id is a UUID", request_id_is_uuid)],
        ),
        ext("GET", "/status/", "trailing slash").expect(404, vec![Empty]),
        ext("GET", "/status?verbose=1", "query ignored")
            .tok(Tok::Ours)
            .expect(200, vec![Keys(STATUS_KEYS)]),
        ext("HEAD", "/configure", "HEAD on POST route")
            .expect(405, vec![Empty, Header("allow", "POST")]),
        ext("OPTIONS", "/status", "OPTIONS").expect(405, vec![Empty, Header("allow", "GET,HEAD")]),
        ext("GET", "/metrics", "20 KB header")
            .header("X-Filler", &"a".repeat(20_000))
            // deliberate difference: request heads are capped at 16 KiB and 64 fields, 431
            // (http.rs); upstream's hyper defaults accept this.
            .note("deliberate difference: 431 for a head over 16 KiB (http.rs)")
            .expect(431, vec![]),
        ext("HEAD", "/status", "HEAD on GET route")
            .tok(Tok::Ours)
            .expect(200, vec![Empty]),
        ext("HEAD", "/metrics", "HEAD on GET route").expect(200, vec![Empty]),
        ext("HEAD", "/lfc/offload", "HEAD on GET route")
            .tok(Tok::Ours)
            .expect(200, vec![Empty]),
    ]
}
