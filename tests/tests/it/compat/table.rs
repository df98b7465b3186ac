//! The compatibility table put together: the inputs the rows send, the rows of the running
//! compute in order (route families in `rows_*.rs`, state-changing rows last), and the rows of
//! a compute whose start failed.

use super::*;

/// The request bodies the rows send, made once from the compute's spec.
pub struct Inputs {
    /// The compute's spec.
    pub spec: Value,
    /// The spec with `cluster.roles` of the wrong type.
    pub wrong_type: Value,
    /// A body one byte over upstream's limit.
    pub over_limit: Vec<u8>,
    /// A valid `/promote` body.
    pub promote: Value,
    /// A `/promote` body whose spec repeats a safekeeper.
    pub promote_invalid: Value,
    /// A `/configure` body whose spec repeats a safekeeper.
    pub configure_invalid: Value,
    /// A valid `/configure` body.
    pub configure: Value,
    /// A valid `/configure` body with unknown members everywhere.
    pub configure_unknown: Value,
    /// A `/grants` body.
    pub grants: Value,
    /// An `/extensions` body.
    pub extension: Value,
}

impl Inputs {
    /// The bodies for `spec`.
    pub fn new(spec: &Value) -> Inputs {
        let mut wrong_type = spec.clone();
        wrong_type["cluster"]["roles"] = json!(1);
        let over_limit = vec![b' '; MAX_BODY + 1];
        let promote = json!({"spec": neon_spec(&["sk1:5454"]), "wal_flush_lsn": "0/3000060"});
        let promote_invalid =
            json!({"spec": neon_spec(&["sk1:5454", "sk1:5454"]), "wal_flush_lsn": "0/3000060"});
        let configure_invalid =
            json!({"spec": neon_spec(&["sk1:5454", "sk1:5454"]), "compute_ctl_config": {}});
        // The key set in a /configure is required but ignored: it cannot lock anyone out.
        let configure = json!({"spec": spec, "compute_ctl_config": {"jwks": {"keys": []}}});
        // Unknown members anywhere are ignored (no deny_unknown_fields upstream).
        let mut with_unknown = spec.clone();
        with_unknown["some_future_field"] = json!({"x": 1});
        with_unknown["cluster"]["some_future_field"] = json!([1]);
        let configure_unknown = json!({
            "spec": with_unknown,
            "compute_ctl_config": {"jwks": {"keys": []}, "some_future_field": true},
            "some_future_field": "x",
        });
        let grants = json!({"database": "app", "schema": "public", "privileges": ["USAGE", "CREATE"], "role": "app_reader"});
        let extension = json!({"extension": "pg_trgm", "database": "app", "version": "1.6"});
        Inputs {
            spec: spec.clone(),
            wrong_type,
            over_limit,
            promote,
            promote_invalid,
            configure_invalid,
            configure,
            configure_unknown,
            grants,
            extension,
        }
    }
}

/// Every row for the running compute, in the order they run.
pub fn table(spec: &Value) -> Vec<Row> {
    let inputs = Inputs::new(spec);
    let mut rows = rows_routing::rows();
    rows.extend(rows_jwt::rows());
    rows.extend(rows_read_only::rows(&inputs));
    rows.extend(rows_internal::rows(&inputs));
    rows.extend(rows_state::rows(&inputs));
    rows
}

/// keeps serving in `failed`; every route that needs a running compute answers 412.
pub fn failed_table(spec: &Value) -> Vec<Row> {
    use Check::*;
    let failed = || vec![Error("invalid compute status: failed")];
    let configure = json!({"spec": spec, "compute_ctl_config": {}});
    vec![
        ext("GET", "/status", "failed start").tok(Tok::Ours).expect(
            200,
            vec![
                Keys(STATUS_KEYS),
                Field("/status", json!("failed")),
                Custom("error is a non-empty string", failed_error),
            ],
        ),
        ext("GET", "/metrics", "over IPv6 loopback")
            .server(Srv::ExtV6)
            .expect(200, vec![Header("content-type", METRICS_TYPE)]),
        ext("GET", "/metrics", "failed").expect(
            200,
            vec![
                Contains("compute_ctl_up{build_tag=\"latest\",status=\"failed\"} 1\n"),
                Custom("one compute_ctl_up series", one_compute_ctl_up),
            ],
        ),
        ext("POST", "/check_writability", "failed")
            .tok(Tok::Ours)
            .expect(412, failed()),
        ext("GET", "/insights", "failed").tok(Tok::Ours).expect(412, failed()),
        ext("POST", "/configure", "valid spec while failed")
            .tok(Tok::Ours)
            .json(&configure)
            .expect(412, failed()),
        int("POST", "/extensions", "failed")
            .json(&json!({"extension": "pg_trgm", "database": "app", "version": "1.6"}))
            .expect(412, failed()),
        int("POST", "/grants", "failed")
            .json(&json!({"database": "app", "schema": "public", "privileges": ["USAGE"], "role": "app_reader"}))
            .expect(412, failed()),
        ext("POST", "/configure", "invalid spec while failed: 400 before 412")
            .tok(Tok::Ours)
            .json(&json!({"spec": neon_spec(&[]), "compute_ctl_config": {}}))
            .expect(400, vec![ErrorContains("safekeeper_connstrings")]),
        ext("GET", "/dbs_and_roles", "postgres down")
            .tok(Tok::Ours)
            .expect(500, vec![ErrorPrefix("")]),
        ext("GET", "/database_schema?database=app", "postgres down")
            .tok(Tok::Ours)
            .expect(500, vec![Error("failed to execute pg_dump")]),
        ext("GET", "/hadron_liveness_probe", "postgres down")
            .tok(Tok::Ours)
            .expect(500, vec![ErrorPrefix("")]),
        ext("GET", "/lfc/prewarm", "failed")
            .tok(Tok::Ours)
            .expect(200, vec![Json(json!({"status": "not_prewarmed"}))]),
        ext("POST", "/terminate", "from failed")
            .tok(Tok::Ours)
            // deliberate difference: upstream answers 412 `invalid compute status: failed`
            // and leaves only a signal; ours terminates (control.rs::terminate).
            .note("deliberate difference: /terminate from failed works (upstream 412)")
            .expect(200, vec![Json(json!({"lsn": null}))]),
        ext("POST", "/terminate", "again within linger")
            .tok(Tok::Ours)
            .expect(201, vec![Json(json!({"lsn": null}))]),
    ]
}

pub fn failed_error(reply: &Reply) -> Result<(), String> {
    let body = reply.json()?;
    match body["error"].as_str() {
        Some(error) if !error.trim().is_empty() => Ok(()),
        _ => Err(format!("error is {}", body["error"])),
    }
}

// ---------------------------------------------------------------------------------------
