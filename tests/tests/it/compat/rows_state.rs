//! The rows of the compatibility table: the state-changing rows, last: refresh, configure, terminate.

use super::*;

/// The state-changing rows, last: refresh, configure, terminate.
pub fn rows(inputs: &Inputs) -> Vec<Row> {
    use Check::*;
    let spec = inputs.spec.clone();
    let wrong_type = inputs.wrong_type.clone();
    let over_limit = inputs.over_limit.clone();
    let configure_invalid = inputs.configure_invalid.clone();
    let configure = inputs.configure.clone();
    let configure_unknown = inputs.configure_unknown.clone();
    let grants = inputs.grants.clone();
    let extension = inputs.extension.clone();
    vec![
        // ---- state-changing rows: refresh, configure, terminate.
        int("POST", "/refresh_configuration", "running")
            .expect(200, vec![Empty])
            .then(Then::WaitStatus("running")),
        ext("GET", "/metrics", "refresh counted").expect(
            200,
            vec![
                Contains("\npg_cctl_pagestream_request_errors_total 1\n"),
                // Upstream's configurator moves to `refresh_configuration` with set_status
                // (gauge updated), then back to `running` directly (gauge untouched).
                Contains(
                    "compute_ctl_up{build_tag=\"latest\",status=\"refresh-configuration\"} 1\n",
                ),
                Custom("one compute_ctl_up series", one_compute_ctl_up),
            ],
        ),
        ext("POST", "/configure", "no content type")
            .tok(Tok::Ours)
            .body(None, configure.to_string())
            .expect(415, vec![Error(E415)]),
        ext("POST", "/configure", "text/json")
            .tok(Tok::Ours)
            .body(Some("text/json"), configure.to_string())
            .expect(415, vec![Error(E415)]),
        ext("POST", "/configure", "unparsable content type")
            .tok(Tok::Ours)
            .body(Some("json"), configure.to_string())
            .expect(415, vec![Error(E415)]),
        ext("POST", "/configure", "syntax error")
            .tok(Tok::Ours)
            .body(Some("application/json; charset=utf-8"), "{\"spec\": ")
            .expect(400, vec![ErrorPrefix(UNPARSABLE)]),
        ext("POST", "/configure", "+json accepted, syntax error")
            .tok(Tok::Ours)
            .body(Some("application/vnd.neon+json"), "{")
            .expect(400, vec![ErrorPrefix(UNPARSABLE)]),
        ext("POST", "/configure", "trailing garbage")
            .tok(Tok::Ours)
            .body(Some(JSON), format!("{configure} x"))
            .expect(400, vec![ErrorPrefix(UNPARSABLE)]),
        ext("POST", "/configure", "missing compute_ctl_config")
            .tok(Tok::Ours)
            .json(&json!({"spec": spec}))
            .expect(
                422,
                vec![
                    ErrorPrefix(UNDESERIALIZABLE),
                    ErrorContains("missing field `compute_ctl_config`"),
                ],
            ),
        ext("POST", "/configure", "compute_ctl_config of the wrong type")
            .tok(Tok::Ours)
            .json(&json!({"spec": spec, "compute_ctl_config": 1}))
            .expect(
                422,
                vec![ErrorPrefix(
                    "failed to deserialize the json body into the target type: compute_ctl_config: invalid type: integer `1`",
                )],
            ),
        ext("POST", "/configure", "not an object")
            .tok(Tok::Ours)
            .json(&json!([]))
            .expect(422, vec![ErrorPrefix(UNDESERIALIZABLE)]),
        ext("POST", "/configure", "missing spec")
            .tok(Tok::Ours)
            .json(&json!({"compute_ctl_config": {}}))
            .expect(
                422,
                vec![ErrorPrefix(UNDESERIALIZABLE), ErrorContains("missing field `spec`")],
            ),
        ext("POST", "/configure", "wrong type names the path")
            .tok(Tok::Ours)
            .json(&json!({"spec": wrong_type, "compute_ctl_config": {}}))
            .expect(
                422,
                vec![ErrorPrefix(
                    "failed to deserialize the json body into the target type: spec.cluster.roles: invalid type: integer `1`",
                )],
            ),
        ext("POST", "/configure", "over 2 MiB")
            .tok(Tok::Ours)
            .body(Some(JSON), over_limit.clone())
            .expect(
                413,
                vec![Error("failed to buffer the request body: length limit exceeded")],
            ),
        ext("POST", "/configure", "over 2 MiB, chunked (no length)")
            .tok(Tok::Ours)
            .header("Transfer-Encoding", "chunked")
            .body(Some(JSON), over_limit)
            .expect(
                413,
                vec![Error("failed to buffer the request body: length limit exceeded")],
            ),
        ext("POST", "/configure", "exactly 2 MiB is read (then 400)")
            .tok(Tok::Ours)
            .body(Some(JSON), vec![b' '; MAX_BODY])
            .expect(400, vec![ErrorPrefix(UNPARSABLE)]),
        ext("POST", "/configure", "exactly 2 MiB chunked is read (then 400)")
            .tok(Tok::Ours)
            .header("Transfer-Encoding", "chunked")
            .body(Some(JSON), vec![b' '; MAX_BODY])
            .expect(400, vec![ErrorPrefix(UNPARSABLE)]),
        ext("POST", "/configure", "empty body")
            .tok(Tok::Ours)
            .body(Some(JSON), "")
            .expect(400, vec![ErrorPrefix(UNPARSABLE)]),
        ext("POST", "/configure", "content type in mixed case")
            .tok(Tok::Ours)
            .body(Some("Application/JSON"), "{")
            .expect(400, vec![ErrorPrefix(UNPARSABLE)]),
        ext("POST", "/configure", "invalid spec (duplicate safekeepers)")
            .tok(Tok::Ours)
            .json(&configure_invalid)
            .expect(
                400,
                vec![ErrorContains(
                    "duplicate entry in safekeeper_connstrings: sk1:5454!",
                )],
            ),
        ext("POST", "/configure", "reconfigure, keys in body ignored")
            .tok(Tok::Ours)
            .json(&configure)
            .expect(200, running_status()),
        ext("POST", "/configure", "unknown members ignored")
            .tok(Tok::Ours)
            .json(&configure_unknown)
            .expect(200, running_status()),
        ext("GET", "/status", "key set unchanged by /configure")
            .tok(Tok::Ours)
            .expect(200, running_status()),
        ext("POST", "/terminate", "fast")
            .tok(Tok::Ours)
            .expect(200, vec![Json(json!({"lsn": null}))]),
        ext("POST", "/terminate", "again within linger")
            .tok(Tok::Admin)
            .expect(201, vec![Json(json!({"lsn": null}))]),
        ext("POST", "/terminate?mode=immediate", "again, immediate")
            .tok(Tok::Ours)
            .expect(201, vec![Json(json!({"lsn": null}))]),
        ext("GET", "/status", "terminated")
            .tok(Tok::Ours)
            .expect(200, vec![Field("/status", json!("terminated"))]),
        ext("POST", "/configure", "after terminate")
            .tok(Tok::Ours)
            .json(&configure)
            .expect(412, vec![Error("invalid compute status: terminated")]),
        ext("POST", "/configure", "invalid spec after terminate: 400 before 412")
            .tok(Tok::Ours)
            .json(&configure_invalid)
            .expect(
                400,
                vec![ErrorContains(
                    "duplicate entry in safekeeper_connstrings: sk1:5454!",
                )],
            ),
        ext("POST", "/check_writability", "after terminate")
            .tok(Tok::Ours)
            .expect(412, vec![Error("invalid compute status: terminated")]),
        int("POST", "/refresh_configuration", "after terminate").expect(
            500,
            vec![Error("Cannot refresh compute configuration in state Terminated")],
        ),
        int("POST", "/extensions", "after terminate")
            .json(&extension)
            .expect(412, vec![Error("invalid compute status: terminated")]),
        int("POST", "/grants", "after terminate")
            .json(&grants)
            .expect(412, vec![Error("invalid compute status: terminated")]),
        ext("GET", "/insights", "after terminate")
            .tok(Tok::Ours)
            .expect(412, vec![Error("invalid compute status: terminated")]),
        ext("GET", "/hadron_liveness_probe", "postgres down")
            .tok(Tok::Ours)
            .expect(500, vec![ErrorPrefix("")]),
        ext("GET", "/metrics", "terminated is never exported").expect(
            200,
            vec![
                Contains(
                    "compute_ctl_up{build_tag=\"latest\",status=\"termination-pending-fast\"} 1\n",
                ),
                Custom("one compute_ctl_up series", one_compute_ctl_up),
            ],
        ),
    ]
}
