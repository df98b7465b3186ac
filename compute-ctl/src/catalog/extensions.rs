//! `POST /extensions` (internal): [`pg_catalog::extensions`] behind upstream's answers, with
//! compute-ctl's remote extension download as the crate's preparation hook.

use compute_spec::ComputeDocument;
use pg_catalog::extensions::Prepare;
use pg_catalog::ExtensionRequest;

use super::apply_request;
#[cfg(test)]
use super::{install_extension, ParseBody};
use crate::api::Api;
use compute_http::{ApiRequest, Reply};
use hyper::StatusCode;

/// Remote extensions (pg-extensions-fetch): a missing one the spec allows is downloaded
/// before `CREATE EXTENSION` ([`pg_extensions_fetch::on_demand::OnDemand::ensure_for_create`]).
struct RemoteFetch<'a>(&'a Api);

impl Prepare for RemoteFetch<'_> {
    fn prepare(&self, document: &ComputeDocument, extension: &str) -> Result<(), String> {
        self.0
            .remote_ext
            .ensure_for_create(document, extension)
            .map(drop)
    }
}

/// `POST /extensions` (internal): creates the extension in `public` at the version, or
/// updates it to the version; 201 `{"extension","version"}`. The body is checked before the
/// status, as upstream's extractor runs first.
pub fn extensions(api: &Api, request: &ApiRequest) -> Reply {
    apply_request(
        api,
        request,
        |document: &ComputeDocument, extension: &ExtensionRequest| {
            pg_catalog::extensions::install(document, extension, &RemoteFetch(api))
        },
        |extension: &ExtensionRequest| Reply::json(StatusCode::CREATED, &extension.installed()),
        "failed to install extension",
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
        let reply = ExtensionRequest::parse(br#"{"extension":1,"database":"d","version":"1"}"#)
            .unwrap_err();
        assert_eq!(
            body(&reply)["error"],
            "failed to deserialize the json body into the target type: extension: invalid type: integer `1`, expected a string at line 1 column 14"
        );
        assert_eq!(ExtensionRequest::parse(b"[]").unwrap_err().status, 422);
        assert_eq!(ExtensionRequest::parse(b"{").unwrap_err().status, 400);
        assert_eq!(
            ExtensionRequest::parse(br#"{"extension":"e","database":"d","version":"1"} x"#)
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn grants_and_extensions_need_running() {
        let api = api_for_nothing();
        let reply = crate::catalog::grants(
            &api,
            &request(
                Method::POST,
                "/grants",
                "",
                br#"{"database":"d","schema":"s","privileges":["USAGE"],"role":"r"}"#,
            ),
        );
        assert_eq!(reply.status, 412);
        assert_eq!(
            body(&reply),
            json!({"error": "invalid compute status: empty"})
        );
        let reply = extensions(
            &api,
            &request(
                Method::POST,
                "/extensions",
                "",
                br#"{"extension":"e","database":"d","version":"1"}"#,
            ),
        );
        assert_eq!(reply.status, 412);
        // The body is checked before the status, as upstream's extractor runs first.
        let reply = extensions(&api, &request(Method::POST, "/extensions", "", b"{}"));
        assert_eq!(reply.status, 422);
    }

    fn extension_body(extension: &str, database: &str, version: &str) -> Vec<u8> {
        json!({"extension": extension, "database": database, "version": version})
            .to_string()
            .into_bytes()
    }

    fn installed_version(server: &TestPostgres, database: &str, extension: &str) -> Option<String> {
        server
            .client_for(database)
            .query_opt(
                "SELECT extversion FROM pg_extension WHERE extname = $1",
                &[&extension],
            )
            .unwrap()
            .map(|row| row.get(0))
    }

    #[test]
    fn extensions_create_update_and_keep() {
        let server = TestPostgres::start();
        server.psql("CREATE DATABASE app");
        server
            .client_for("app")
            .batch_execute("CREATE TABLE public.canary ()")
            .unwrap();
        let api = api_for(&server, true);
        let post =
            |body: Vec<u8>| extensions(&api, &request(Method::POST, "/extensions", "", &body));

        let reply = post(extension_body("pg_trgm", "app", "1.5"));
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(
            body(&reply),
            json!({"extension": "pg_trgm", "version": "1.5"})
        );
        assert_eq!(
            installed_version(&server, "app", "pg_trgm").as_deref(),
            Some("1.5")
        );
        let schema: String = server
            .client_for("app")
            .query_one("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'", &[])
            .unwrap()
            .get(0);
        assert_eq!(schema, "public");

        assert_eq!(post(extension_body("pg_trgm", "app", "1.6")).status, 201);
        assert_eq!(
            installed_version(&server, "app", "pg_trgm").as_deref(),
            Some("1.6")
        );
        let document = api.shared.lock().document.clone().unwrap();
        let same = ExtensionRequest::parse(&extension_body("pg_trgm", "app", "1.6")).unwrap();
        assert_eq!(install_extension(&document, &same).unwrap(), None);

        let reply = post(extension_body("pg_trgm", "app", "9.9"));
        assert_eq!(reply.status, 500);
        let message = body(&reply)["error"].as_str().unwrap().to_string();
        assert!(
            message.starts_with("failed to install extension: "),
            "{message}"
        );

        // Hostile names and versions reach Postgres as one quoted name and one literal.
        for (extension, version) in [(NASTY, "1.0"), ("seg", NASTY)] {
            let reply = post(extension_body(extension, "app", version));
            assert_eq!(reply.status, 500, "{extension:?} {version:?}");
            let message = body(&reply)["error"].as_str().unwrap().to_string();
            assert!(!message.contains("syntax error"), "{message}");
        }
        assert_eq!(installed_version(&server, "app", "seg"), None);
        assert!(canary_present(&server, "app"));
    }
}
