//! The rows of the compatibility table: read-only external routes (§2.4), LFC (§6) and promote (§7).

use super::*;

/// Read-only external routes (§2.4), LFC (§6) and promote (§7).
pub fn rows(inputs: &Inputs) -> Vec<Row> {
    use Check::*;
    let promote = inputs.promote.clone();
    let promote_invalid = inputs.promote_invalid.clone();
    vec![
        // ---- §2.4 read-only external routes.
        ext("GET", "/metrics.json", "ours")
            .tok(Tok::Ours)
            .expect(200, vec![Keys(METRICS_KEYS)]),
        ext("GET", "/metrics.json", "admin")
            .tok(Tok::Admin)
            .expect(200, vec![Keys(METRICS_KEYS)]),
        ext("GET", "/metrics", "unauthenticated").expect(
            200,
            vec![
                Header("content-type", METRICS_TYPE),
                Contains("compute_ctl_up{build_tag=\"latest\",status=\"running\"} 1\n"),
                Custom("one compute_ctl_up series", one_compute_ctl_up),
                Contains("# TYPE pg_cctl_pagestream_request_errors_total counter"),
                Contains("\npg_cctl_pagestream_request_errors_total 0\n"),
            ],
        ),
        ext("GET", "/metrics", "bad token ignored")
            .tok(Tok::BadSignature)
            .expect(200, vec![Header("content-type", METRICS_TYPE)]),
        ext(
            "GET",
            "/autoscaling_metrics",
            "unauthenticated, no communicator socket",
        )
        .expect(500, vec![ErrorPrefix("")]),
        ext("GET", "/insights", "no pg_stat_statements")
            .tok(Tok::Ours)
            // deliberate difference: upstream's failure string has doubled braces
            // (`{{"pg_stat_statements": []}}`); ours is an empty list (sql.rs::insights).
            .note("deliberate difference: empty list, not doubled braces")
            .expect(200, vec![Json(json!("{\"pg_stat_statements\": []}"))]),
        ext("POST", "/check_writability", "ours")
            .tok(Tok::Ours)
            .expect(200, vec![Json(json!(true))]),
        ext("POST", "/check_writability", "admin, twice")
            .tok(Tok::Admin)
            .expect(200, vec![Json(json!(true))]),
        ext("GET", "/dbs_and_roles", "ours").tok(Tok::Ours).expect(
            200,
            vec![
                Keys(&[("roles", Ty::Array), ("databases", Ty::Array)]),
                Custom("roles/databases shapes", dbs_and_roles),
                Contains("\"app_owner\""),
            ],
        ),
        ext("GET", "/database_schema?database=app", "existing database")
            .tok(Tok::Ours)
            .expect(
                200,
                vec![
                    Header("content-type", JSON),
                    Contains("PostgreSQL database dump"),
                ],
            ),
        ext(
            "GET",
            "/database_schema?database=missing_db",
            "missing database",
        )
        .tok(Tok::Ours)
        .expect(404, vec![Error("database does not exist")]),
        ext(
            "GET",
            "/database_schema?database=no%20such%20db",
            "encoded name, missing",
        )
        .tok(Tok::Ours)
        .expect(404, vec![Error("database does not exist")]),
        ext("GET", "/database_schema?database=", "empty name")
            .tok(Tok::Ours)
            // PGDATABASE="" falls back to the user's database, which does not exist, and
            // its FATAL does not name "" — upstream's generic 500.
            .expect(500, vec![Error("failed to execute pg_dump")]),
        ext(
            "GET",
            "/database_schema?database=app&format=x",
            "unknown parameter ignored",
        )
        .tok(Tok::Ours)
        .expect(200, vec![Contains("PostgreSQL database dump")]),
        ext("GET", "/database_schema", "no query")
            .tok(Tok::Ours)
            .expect(
                400,
                vec![ErrorPrefix("failed to deserialize query string: ")],
            ),
        ext("GET", "/database_schema?db=app", "wrong parameter")
            .tok(Tok::Ours)
            .expect(
                400,
                vec![Error(
                    "failed to deserialize query string: missing field `database`",
                )],
            ),
        ext(
            "GET",
            "/database_schema?database=app&database=x",
            "duplicate parameter",
        )
        .tok(Tok::Ours)
        .expect(
            400,
            vec![Error(
                "failed to deserialize query string: duplicate field `database`",
            )],
        ),
        ext("GET", "/hadron_liveness_probe", "postgres up")
            .tok(Tok::Ours)
            .expect(200, vec![Json(json!("ok"))]),
        ext("GET", "/hadron_liveness_probe", "no token")
            .expect(400, vec![Error("invalid authorization token")]),
        ext("POST", "/terminate?mode=slow", "bad mode")
            .tok(Tok::Ours)
            // Upstream's optional-query rejection: plain text, original case. Whether the
            // field path (`mode: `) precedes serde's text is not pinned down here.
            .expect(
                400,
                vec![
                    Header("content-type", PLAIN),
                    TextPrefix("Failed to deserialize query string: "),
                    Contains("unknown variant `slow`, expected `fast` or `immediate`"),
                ],
            ),
        ext("POST", "/terminate?mode=fast&mode=slow", "duplicate mode")
            .tok(Tok::Ours)
            .expect(
                400,
                vec![
                    Header("content-type", PLAIN),
                    TextPrefix("Failed to deserialize query string: "),
                    Contains("duplicate field `mode`"),
                ],
            ),
        // ---- §6 LFC (GET before POST: the POSTs start background runs).
        ext("GET", "/lfc/prewarm", "initial")
            .tok(Tok::Ours)
            .expect(200, vec![Json(json!({"status": "not_prewarmed"}))]),
        ext("GET", "/lfc/offload", "initial")
            .tok(Tok::Ours)
            .expect(200, vec![Json(json!({"status": "not_offloaded"}))]),
        ext(
            "POST",
            "/lfc/prewarm?from_endpoint=a&from_endpoint=b",
            "duplicate query",
        )
        .tok(Tok::Ours)
        .expect(
            400,
            vec![
                Header("content-type", PLAIN),
                TextPrefix("Failed to deserialize query string: "),
                Contains("duplicate field `from_endpoint`"),
            ],
        ),
        ext("POST", "/lfc/prewarm", "start")
            .tok(Tok::Ours)
            .expect(202, vec![Empty]),
        ext("DELETE", "/lfc/prewarm", "cancel")
            .tok(Tok::Ours)
            .expect(202, vec![Empty]),
        ext("GET", "/lfc/prewarm", "after a run")
            .tok(Tok::Ours)
            .expect(200, vec![Custom("prewarm state after a run", prewarm_ran)]),
        ext("POST", "/lfc/offload", "start")
            .tok(Tok::Ours)
            .expect(202, vec![Empty]),
        ext("GET", "/lfc/offload", "after a run")
            .tok(Tok::Ours)
            .expect(200, vec![Custom("offload state after a run", offload_ran)]),
        ext("POST", "/lfc/offload", "other compute")
            .tok(Tok::OtherCompute)
            .expect(
                403,
                vec![Error("invalid compute ID in authorization token claims")],
            ),
        ext("GET", "/metrics", "LFC counters and upstream families").expect(
            200,
            vec![
                Custom("upstream's unlabelled families", upstream_families),
                Contains("\ncompute_ctl_lfc_prewarms_total 1\n"),
                Contains("\ncompute_ctl_lfc_offloads_total 1\n"),
            ],
        ),
        // ---- §7 promote (plain-text framework rejections; the state object on failure).
        ext("POST", "/promote", "no content type")
            .tok(Tok::Ours)
            .body(None, promote.to_string())
            .expect(
                415,
                vec![
                    Header("content-type", PLAIN),
                    Text("Expected request with `Content-Type: application/json`"),
                ],
            ),
        ext("POST", "/promote", "syntax error")
            .tok(Tok::Ours)
            .body(Some(JSON), "{")
            .expect(
                400,
                vec![
                    Header("content-type", PLAIN),
                    Contains("Failed to parse the request body as JSON: "),
                ],
            ),
        ext("POST", "/promote", "missing wal_flush_lsn")
            .tok(Tok::Ours)
            .json(&json!({"spec": neon_spec(&["sk1:5454"])}))
            .expect(
                422,
                vec![
                    Header("content-type", PLAIN),
                    Contains("Failed to deserialize the JSON body into the target type: "),
                    Contains("missing field `wal_flush_lsn`"),
                ],
            ),
        ext("POST", "/promote", "bad LSN")
            .tok(Tok::Ours)
            .json(&json!({"spec": neon_spec(&["sk1:5454"]), "wal_flush_lsn": "not-an-lsn"}))
            .expect(
                422,
                vec![
                    Header("content-type", PLAIN),
                    Contains("Failed to deserialize the JSON body into the target type: "),
                    Contains("wal_flush_lsn"),
                ],
            ),
        ext("POST", "/promote", "invalid spec")
            .tok(Tok::Ours)
            .json(&promote_invalid)
            .expect(
                400,
                vec![ErrorContains(
                    "duplicate entry in safekeeper_connstrings: sk1:5454!",
                )],
            ),
        ext("POST", "/promote", "primary is not a replica")
            .tok(Tok::Ours)
            .json(&promote)
            .expect(
                500,
                vec![Json(
                    json!({"status": "failed", "error": "compute mode \"primary\" is not replica"}),
                )],
            ),
        ext("POST", "/promote", "result cached")
            .tok(Tok::Admin)
            .json(&promote)
            .expect(500, vec![Field("/status", json!("failed"))]),
    ]
}
