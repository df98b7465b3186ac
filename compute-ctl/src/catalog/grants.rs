//! `POST /grants` (internal): [`pg_catalog::grants`] behind upstream's answers.

use super::apply_request;
// What the tests below reach through `super::*`.
use crate::api::Api;
use compute_http::{ApiRequest, Reply};
use hyper::StatusCode;
#[cfg(test)]
use {
    super::{set_role_grants, GrantsRequest, ParseBody, Privilege},
    compute_spec::quote::Ident,
};

/// `POST /grants` (internal): grants the role the privileges it lacks on the schema, in one
/// statement; 201 echoing the request. The body is checked before the status, as upstream's
/// extractor runs first.
pub fn grants(api: &Api, request: &ApiRequest) -> Reply {
    apply_request(
        api,
        request,
        pg_catalog::set_role_grants,
        |grants: &pg_catalog::GrantsRequest| Reply::json(StatusCode::CREATED, grants),
        "failed to grant role privileges to the schema",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::fixtures::{canary_present, NASTY};
    use crate::testing::*;
    use hyper::Method;
    use pg_test_support::TestPostgres;
    use serde_json::json;

    #[test]
    fn body_rejections_as_upstream() {
        let reply = GrantsRequest::parse(b"{").unwrap_err();
        assert_eq!(reply.status, 400);
        assert!(body(&reply)["error"]
            .as_str()
            .unwrap()
            .starts_with("failed to parse the request body as json: "));
        let reply = GrantsRequest::parse(
            br#"{"database":"d","schema":"s","role":"r","privileges":["USAGE","usage"]}"#,
        )
        .unwrap_err();
        assert_eq!(reply.status, 422);
        let message = body(&reply)["error"].as_str().unwrap().to_string();
        assert!(
            message.starts_with("failed to deserialize the json body into the target type: privileges[1]: unknown variant `usage`, expected one of `SELECT`"),
            "{message}"
        );
        // serde's text as upstream's extractor gives it: the position included.
        let reply =
            GrantsRequest::parse(br#"{"database":"d","schema":"s","privileges":[]}"#).unwrap_err();
        assert_eq!(reply.status, 422);
        assert_eq!(
            body(&reply)["error"],
            "failed to deserialize the json body into the target type: missing field `role` at line 1 column 45"
        );
        let reply = GrantsRequest::parse(
            br#"{"database":"d","schema":"s","role":"r","privileges":"USAGE"}"#,
        )
        .unwrap_err();
        assert_eq!(
            body(&reply)["error"],
            "failed to deserialize the json body into the target type: privileges: invalid type: string \"USAGE\", expected a sequence at line 1 column 60"
        );
        let parsed = GrantsRequest::parse(
            br#"{"database":"d","schema":"s","role":"r","privileges":["USAGE","TEMPORARY"],"extra":1}"#,
        )
        .unwrap();
        assert_eq!(parsed.privileges, [Privilege::Usage, Privilege::Temporary]);
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            json!({"database": "d", "schema": "s", "privileges": ["USAGE", "TEMPORARY"], "role": "r"})
        );
    }

    fn post(api: &Api, body: &[u8]) -> Reply {
        grants(api, &request(Method::POST, "/grants", "", body))
    }

    fn grant_body(database: &str, schema: &str, role: &str, privileges: &[&str]) -> Vec<u8> {
        json!({"database": database, "schema": schema, "privileges": privileges, "role": role})
            .to_string()
            .into_bytes()
    }

    fn has_privilege(
        server: &TestPostgres,
        database: &str,
        role: &str,
        schema: &str,
        privilege: &str,
    ) -> bool {
        server
            .client_for(database)
            .query_one(
                "SELECT has_schema_privilege($1, $2, $3)",
                &[&role, &schema, &privilege],
            )
            .unwrap()
            .get(0)
    }

    #[test]
    fn grants_grant_what_is_missing() {
        let server = TestPostgres::start();
        server.psql("CREATE DATABASE app");
        server.psql("CREATE ROLE r1 LOGIN");
        server
            .client_for("app")
            .batch_execute(
                "CREATE SCHEMA s; CREATE TABLE public.canary (); GRANT USAGE ON SCHEMA s TO r1",
            )
            .unwrap();
        let api = api_for(&server, true);
        let body_bytes = grant_body("app", "s", "r1", &["USAGE", "CREATE", "CREATE"]);
        let reply = post(&api, &body_bytes);
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(
            body(&reply),
            json!({"database": "app", "schema": "s", "privileges": ["USAGE", "CREATE", "CREATE"], "role": "r1"})
        );
        assert!(has_privilege(&server, "app", "r1", "s", "CREATE"));

        let document = api.shared.lock().document.clone().unwrap();
        let request_again = GrantsRequest::parse(&body_bytes).unwrap();
        assert_eq!(set_role_grants(&document, &request_again).unwrap(), None);

        let only_missing =
            GrantsRequest::parse(&grant_body("app", "public", "r1", &["USAGE", "CREATE"])).unwrap();
        server
            .client_for("app")
            .batch_execute(
                "REVOKE ALL ON SCHEMA public FROM PUBLIC; GRANT USAGE ON SCHEMA public TO r1",
            )
            .unwrap();
        assert_eq!(
            set_role_grants(&document, &only_missing)
                .unwrap()
                .as_deref(),
            Some("GRANT CREATE ON SCHEMA \"public\" TO \"r1\"")
        );

        // A role or schema that does not exist, a privilege the schema does not have.
        for (schema, role, privileges) in [
            ("s", "nobody", &["USAGE"][..]),
            ("nosuch", "r1", &["USAGE"][..]),
            ("s", "r1", &["SELECT"][..]),
        ] {
            let reply = post(&api, &grant_body("app", schema, role, privileges));
            assert_eq!(reply.status, 500, "{schema} {role}");
            let message = body(&reply)["error"].as_str().unwrap().to_string();
            assert!(
                message.starts_with("failed to grant role privileges to the schema: "),
                "{message}"
            );
        }
        let reply = post(&api, &grant_body("nosuchdb", "s", "r1", &["USAGE"]));
        assert_eq!(reply.status, 500);
        assert!(body(&reply)["error"].as_str().unwrap().contains("nosuchdb"));
        assert!(canary_present(&server, "app"));
    }

    #[test]
    fn grants_quote_hostile_names() {
        let server = TestPostgres::start();
        server.psql("CREATE DATABASE app");
        server.psql(&format!("CREATE ROLE {} LOGIN", Ident(NASTY)));
        server
            .client_for("app")
            .batch_execute(&format!(
                "CREATE SCHEMA {}; CREATE TABLE public.canary ()",
                Ident(NASTY)
            ))
            .unwrap();
        let api = api_for(&server, true);
        let reply = post(&api, &grant_body("app", NASTY, NASTY, &["USAGE", "CREATE"]));
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert!(has_privilege(&server, "app", NASTY, NASTY, "USAGE"));
        assert!(has_privilege(&server, "app", NASTY, NASTY, "CREATE"));
        assert!(canary_present(&server, "app"));
        // Unknown hostile names fail in Postgres, never as SQL syntax.
        let reply = post(
            &api,
            &grant_body("app", "public", &format!("{NASTY}2"), &["USAGE"]),
        );
        assert_eq!(reply.status, 500);
        let message = body(&reply)["error"].as_str().unwrap().to_string();
        assert!(message.contains("does not exist"), "{message}");
        assert!(canary_present(&server, "app"));
    }
}
