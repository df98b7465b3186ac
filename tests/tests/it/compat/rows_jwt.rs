//! The rows of the compatibility table: the JWT table (§2.3): on `GET /status`, then on other routes.

use super::*;

/// The JWT table (§2.3): on `GET /status`, then on other routes.
pub fn rows() -> Vec<Row> {
    use Check::*;
    vec![
        // ---- §2.3 JWT table (on GET /status, then on other routes).
        ext("GET", "/status", "no Authorization")
            .expect(400, vec![Error("invalid authorization token")]),
        ext("GET", "/status", "Basic scheme")
            .tok(Tok::Raw("Basic Y29tcHV0ZTpwYXNz"))
            .expect(400, vec![Error("invalid authorization token")]),
        ext("GET", "/status", "Token scheme")
            .tok(Tok::Raw("Token abc"))
            .expect(400, vec![Error("invalid authorization token")]),
        ext("GET", "/status", "Bearer without token")
            .tok(Tok::Raw("Bearer"))
            .expect(400, vec![Error("invalid authorization token")]),
        ext("GET", "/status", "lower-case scheme")
            .tok(Tok::LowerCaseScheme)
            .expect(200, vec![Keys(STATUS_KEYS)]),
        ext("GET", "/status", "X-Request-Id echoed on 401")
            .tok(Tok::BadSignature)
            .header("X-Request-Id", "compat-req-4")
            .expect(
                401,
                vec![
                    Header("x-request-id", "compat-req-4"),
                    Error("failed to verify authorization token"),
                ],
            ),
        ext("GET", "/status", "not a JWT")
            .tok(Tok::Garbage)
            .expect(401, vec![Error("failed to verify authorization token")]),
        ext("GET", "/status", "bad signature")
            .tok(Tok::BadSignature)
            .expect(401, vec![Error("failed to verify authorization token")]),
        ext("GET", "/status", "HS256 token, EdDSA set")
            .tok(Tok::WrongAlgorithm)
            .expect(401, vec![Error("failed to verify authorization token")]),
        ext("GET", "/status", "expired beyond 60 s leeway")
            .tok(Tok::Expired)
            .expect(401, vec![Error("failed to verify authorization token")]),
        ext("GET", "/status", "expired within leeway")
            .tok(Tok::JustExpired)
            .expect(200, vec![Keys(STATUS_KEYS)]),
        ext("GET", "/status", "no exp")
            .tok(Tok::NoExp)
            .expect(200, vec![Keys(STATUS_KEYS)]),
        ext("GET", "/status", "unknown scope")
            .tok(Tok::UnknownScope)
            .expect(401, vec![Error("failed to verify authorization token")]),
        ext("GET", "/status", "admin, bare-string aud")
            .tok(Tok::AdminBareAud)
            .expect(401, vec![Error("failed to verify authorization token")]),
        ext("GET", "/status", "admin without aud")
            .tok(Tok::AdminNoAud)
            .expect(
                401,
                vec![Error("missing audience in authorization token claims")],
            ),
        ext("GET", "/status", "admin, wrong aud")
            .tok(Tok::AdminWrongAud)
            .expect(
                401,
                vec![Error("invalid audience in authorization token claims")],
            ),
        ext("GET", "/status", "no compute_id")
            .tok(Tok::NoComputeId)
            .expect(
                403,
                vec![Error("missing compute_id in authorization token claims")],
            ),
        ext("GET", "/status", "other compute")
            .tok(Tok::OtherCompute)
            .expect(
                403,
                vec![Error("invalid compute ID in authorization token claims")],
            ),
        ext("GET", "/status", "admin")
            .tok(Tok::Admin)
            .expect(200, running_status()),
        ext("GET", "/status", "admin naming another compute")
            .tok(Tok::AdminOtherCompute)
            .expect(200, vec![Keys(STATUS_KEYS)]),
        ext("GET", "/status", "ours")
            .tok(Tok::Ours)
            .expect(200, running_status()),
        ext("POST", "/check_writability", "no token")
            .expect(400, vec![Error("invalid authorization token")]),
        ext("POST", "/check_writability", "other compute")
            .tok(Tok::OtherCompute)
            .expect(
                403,
                vec![Error("invalid compute ID in authorization token claims")],
            ),
        ext("POST", "/terminate", "no token")
            .expect(400, vec![Error("invalid authorization token")]),
        ext("POST", "/terminate", "expired")
            .tok(Tok::Expired)
            .expect(401, vec![Error("failed to verify authorization token")]),
        ext("POST", "/configure", "other compute (auth before body)")
            .tok(Tok::OtherCompute)
            .body(None, "x")
            .expect(
                403,
                vec![Error("invalid compute ID in authorization token claims")],
            ),
        ext("GET", "/lfc/prewarm", "admin without aud")
            .tok(Tok::AdminNoAud)
            .expect(
                401,
                vec![Error("missing audience in authorization token claims")],
            ),
        ext("GET", "/database_schema?database=app", "no token")
            .expect(400, vec![Error("invalid authorization token")]),
    ]
}
