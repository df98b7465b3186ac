//! The rows of the compatibility table: the internal server (§2.5, no auth).

use super::*;

/// The internal server (§2.5, no auth).
pub fn rows(inputs: &Inputs) -> Vec<Row> {
    use Check::*;
    let grants = inputs.grants.clone();
    let extension = inputs.extension.clone();
    vec![
        // ---- §2.5 internal server (no auth).
        int("POST", "/extension_server/foo.control", "no remote storage")
            .expect(412, vec![Error("remote storage is not configured")]),
        int("POST", "/extension_server/libfoo.so?is_library=true", "library, no remote storage")
            .expect(412, vec![Error("remote storage is not configured")]),
        int("POST", "/extension_server/foo?is_library=maybe", "bad query")
            .expect(400, vec![ErrorPrefix("failed to deserialize query string: ")]),
        int("POST", "/extensions", "no content type")
            .body(None, extension.to_string())
            .expect(415, vec![Error(E415)]),
        int("POST", "/extensions", "text/json")
            .body(Some("text/json"), extension.to_string())
            .expect(415, vec![Error(E415)]),
        int("POST", "/extensions", "syntax error")
            .body(Some(JSON), "{\"extension\":")
            .expect(400, vec![ErrorPrefix(UNPARSABLE)]),
        int("POST", "/extensions", "missing version")
            .json(&json!({"extension": "pg_trgm", "database": "app"}))
            .expect(
                422,
                vec![ErrorPrefix(UNDESERIALIZABLE), ErrorContains("missing field `version`")],
            ),
        int("POST", "/extensions", "install pg_trgm 1.6")
            .json(&extension)
            .expect(201, vec![Json(json!({"extension": "pg_trgm", "version": "1.6"}))]),
        int("POST", "/extensions", "already installed")
            .json(&extension)
            .expect(201, vec![Json(json!({"extension": "pg_trgm", "version": "1.6"}))]),
        int("POST", "/extensions", "unknown version")
            .json(&json!({"extension": "hstore", "database": "app", "version": "9.9"}))
            .expect(500, vec![ErrorPrefix("failed to install extension: ")]),
        int("POST", "/grants", "no content type")
            .body(None, grants.to_string())
            .expect(415, vec![Error(E415)]),
        int("POST", "/grants", "lower-case privilege")
            .json(&json!({"database": "app", "schema": "public", "privileges": ["usage"], "role": "app_reader"}))
            .expect(
                422,
                vec![ErrorPrefix(
                    "failed to deserialize the json body into the target type: privileges[0]: unknown variant `usage`",
                )],
            ),
        int("POST", "/grants", "privileges not a list")
            .json(&json!({"database": "app", "schema": "public", "privileges": "USAGE", "role": "app_reader"}))
            .expect(
                422,
                vec![ErrorPrefix(
                    "failed to deserialize the json body into the target type: privileges: invalid type: string \"USAGE\"",
                )],
            ),
        int("POST", "/grants", "missing role")
            .json(&json!({"database": "app", "schema": "public", "privileges": ["USAGE"]}))
            .expect(
                422,
                vec![ErrorPrefix(UNDESERIALIZABLE), ErrorContains("missing field `role`")],
            ),
        int("POST", "/grants", "grant").json(&grants).expect(201, vec![Json(grants.clone())]),
        int("POST", "/grants", "unknown database")
            .json(&json!({"database": "no_such_db", "schema": "public", "privileges": ["USAGE"], "role": "app_reader"}))
            .expect(
                500,
                vec![ErrorPrefix("failed to grant role privileges to the schema: ")],
            ),
        int("POST", "/extensions", "unknown database")
            .json(&json!({"extension": "pg_trgm", "database": "no_such_db", "version": "1.6"}))
            .expect(500, vec![ErrorPrefix("failed to install extension: ")]),
        int("POST", "/grants", "unknown role")
            .json(&json!({"database": "app", "schema": "public", "privileges": ["USAGE"], "role": "no_such_role"}))
            .expect(
                500,
                vec![ErrorPrefix("failed to grant role privileges to the schema: ")],
            ),
        int("GET", "/status", "internal status without token")
            // deliberate difference: ours serves /status and /metrics.json on the internal
            // (loopback) server without a token; upstream has no such routes there (404).
            .note("deliberate difference: internal /status (routes.rs)")
            .expect(200, running_status()),
        int("GET", "/metrics", "internal metrics")
            // deliberate difference: /metrics, /healthz, /readyz on both servers (routes.rs).
            .note("deliberate difference: internal /metrics (routes.rs)")
            .expect(200, vec![Header("content-type", METRICS_TYPE)]),
        ext("GET", "/healthz", "ours, unauthenticated")
            // deliberate difference: our probe routes (upstream 404).
            .note("deliberate difference: /healthz is ours (routes.rs)")
            .expect(200, vec![Json(json!({"status": "ok"}))]),
        int("POST", "/failpoints", "release build")
            // Upstream registers /failpoints only in `testing` builds: 404 elsewhere.
            .json(&json!([]))
            .expect(404, vec![Empty]),
    ]
}
