//! Remote extensions through compute-ctl's handlers, against a real archive server and a
//! real PostgreSQL running from a private installation (nothing is written under /usr):
//! `POST /extension_server/…` as the `neon` extension's hook would call it, then
//! `CREATE EXTENSION`; `POST /extensions` downloading first, in one call; upstream's error
//! codes; the request counter in `/metrics`.
//!
//! A test binary of its own (not a module of `tests/it`): it sets `PG_BIN_DIR` for the whole
//! process, which would move the Postgres of every test sharing the process.
#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

#[path = "../../pg-extensions-fetch/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;

use common::{archive, Answer, ArchiveServer, Farm};
use compute_ctl::api::Api;
use compute_ctl::state::{ComputeStatus, Shared};
use compute_http::{ApiRequest, Port, Reply};
use compute_spec::ComputeDocument;
use hyper::Method;
use pg_test_support::{TestDir, TestPostgres};
use serde_json::{json, Value};

const DEMO_CONTROL: &str = "default_version = '1.0'\nrelocatable = true\n";

fn api(document: ComputeDocument, base_url: Option<String>) -> Api {
    let shared = Arc::new(Shared::new());
    shared.update(|inner| inner.document = Some(document));
    shared.transition(ComputeStatus::Init).unwrap();
    shared.transition(ComputeStatus::Running).unwrap();
    let (wake, _) = std::sync::mpsc::channel();
    Api {
        shared,
        wake,
        compute_id: None,
        auth: Arc::new(compute_http::auth::Auth::Open),
        deadlines: compute_http::Deadlines::default(),
        lfc: Arc::default(),
        ext_stats: Arc::default(),
        promotion: Arc::default(),
        remote_ext: Arc::new(pg_extensions_fetch::on_demand::OnDemand::new(base_url)),
        ready: Arc::default(),
    }
}

fn post(api: &Api, path: &str, body: Value) -> Reply {
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (path, None),
    };
    let request = ApiRequest {
        method: Method::POST,
        path: path.to_string(),
        query,
        authorization: None,
        traceparent: None,
        body: if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        },
    };
    compute_ctl::routes::route(api, Port::Internal, &request)
}

fn error_of(reply: &Reply) -> String {
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    body["error"].as_str().unwrap().to_string()
}

fn document(pg: &TestPostgres, pgbin: &Path, remote: Option<Value>) -> ComputeDocument {
    let mut spec = json!({
        "format_version": 1.0,
        "cluster": {"roles": [], "databases": []},
    });
    if let Some(remote) = remote {
        spec["remote_extensions"] = remote;
    }
    serde_json::from_value(json!({
        "document_version": 1,
        "spec": spec,
        "pgdata": pg.data_dir(),
        "pgbin": pgbin,
        "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": pg.port(), "socket_dir": pg.socket_dir()},
    }))
    .unwrap()
}

#[test]
fn extension_server_and_extensions_download_what_postgres_needs() {
    let dir = TestDir::new("cext");
    let farm = Farm::new(dir.path(), &["hstore", "ext_demo"]);
    std::env::set_var("PG_BIN_DIR", &farm.bin);
    let pg = TestPostgres::start();
    assert!(pg.bin_dir().starts_with(&farm.root));
    let pg_major = pg_extensions_fetch::Installation::discover(&farm.postgres())
        .unwrap()
        .pg_major;

    let real_lib = common::real_bin_dir().parent().unwrap().join("lib");
    let version = real_lib.parent().unwrap().file_name().unwrap().to_owned();
    let real_ext = Path::new("/usr/share/postgresql")
        .join(version)
        .join("extension");
    let server = ArchiveServer::start();
    server.serve(
        &pg_major,
        "ext_demo",
        Answer::ok(archive(&[
            ("share/extension/ext_demo.control", DEMO_CONTROL.as_bytes()),
            (
                "share/extension/ext_demo--1.0.sql",
                b"CREATE FUNCTION ext_demo_answer() RETURNS int LANGUAGE sql AS 'SELECT 7';\n",
            ),
        ])),
    );
    server.serve(&pg_major, "hstore", Answer::ok(common::hstore_archive()));
    server.serve(&pg_major, "broken", Answer::status(500));
    let mut cut = archive(&[("lib/cut.so", &[7u8; 100_000][..])]);
    cut.truncate(cut.len() / 2);
    server.serve(&pg_major, "cut", Answer::ok(cut));

    let data = json!({"control_data": {}, "archive_path": "x"});
    let remote = json!({
        "public_extensions": ["ext_demo", "hstore"],
        "custom_extensions": ["broken", "cut", "gone"],
        "library_index": {"hstore": "hstore"},
        "extension_data": {"ext_demo": data, "hstore": data, "broken": data, "cut": data}
    });
    let api = api(
        document(&pg, &farm.postgres(), Some(remote.clone())),
        Some(server.base_url.clone()),
    );
    let mut client = pg.client();

    // As the `neon` extension's hook: the missing files, then CREATE EXTENSION works.
    assert!(client.batch_execute("CREATE EXTENSION ext_demo").is_err());
    let reply = post(&api, "/extension_server/ext_demo", Value::Null);
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(reply.body.is_empty());
    client.batch_execute("CREATE EXTENSION ext_demo").unwrap();
    let answer: i32 = client
        .query_one("SELECT ext_demo_answer()", &[])
        .unwrap()
        .get(0);
    assert_eq!(answer, 7);
    // Downloaded once: a second request does nothing.
    assert_eq!(
        post(&api, "/extension_server/ext_demo", Value::Null).status,
        200
    );
    assert_eq!(server.requests(&pg_major, "ext_demo"), 1);

    // POST /extensions downloads the C extension and creates it in one call.
    let reply = post(
        &api,
        "/extensions",
        json!({"extension": "hstore", "database": "postgres", "version": "1.8"}),
    );
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let value: String = client
        .query_one("SELECT ('k=>v'::hstore -> 'k')", &[])
        .unwrap()
        .get(0);
    assert_eq!(value, "v");
    // The library alone, as Postgres asks for it: already there.
    assert_eq!(
        post(
            &api,
            "/extension_server/hstore.so?is_library=true",
            Value::Null
        )
        .status,
        200
    );
    assert_eq!(server.requests(&pg_major, "hstore"), 1);
    assert!(!real_ext.join("ext_demo.control").exists());

    // Upstream's codes.
    let forbidden = post(&api, "/extension_server/postgis", Value::Null);
    assert_eq!(
        (forbidden.status.as_u16(), error_of(&forbidden)),
        (404, "extension postgis is not found".into())
    );
    let library = post(
        &api,
        "/extension_server/nope.so.1?is_library=true",
        Value::Null,
    );
    assert_eq!(
        (library.status.as_u16(), error_of(&library)),
        (404, "library nope is not found".into())
    );
    let gone = post(&api, "/extension_server/gone", Value::Null);
    assert_eq!(
        (gone.status.as_u16(), error_of(&gone)),
        (404, "real_ext_name gone is not found".into())
    );
    let broken = post(&api, "/extension_server/broken", Value::Null);
    assert_eq!(broken.status, 500);
    assert!(error_of(&broken).contains("500"), "{}", error_of(&broken));
    let cut = post(&api, "/extension_server/cut", Value::Null);
    assert_eq!(cut.status, 500);
    assert!(error_of(&cut).contains("cut.tar.zst"), "{}", error_of(&cut));
    let failed_create = post(
        &api,
        "/extensions",
        json!({"extension": "broken", "database": "postgres", "version": "1.0"}),
    );
    assert_eq!(failed_create.status, 500);
    assert!(
        error_of(&failed_create)
            .starts_with("failed to install extension: downloading remote extension broken"),
        "{}",
        error_of(&failed_create)
    );

    // The counter, with upstream's labels.
    let request = ApiRequest {
        method: Method::GET,
        path: "/metrics".into(),
        query: None,
        authorization: None,
        traceparent: None,
        body: Vec::new(),
    };
    let metrics = compute_ctl::routes::route(&api, Port::Internal, &request);
    let text = String::from_utf8(metrics.body).unwrap();
    for line in [
        "# TYPE compute_ctl_remote_ext_requests_total counter",
        "compute_ctl_remote_ext_requests_total{filename=\"ext_demo.tar.zst\",http_status=\"200 OK\"} 1",
        "compute_ctl_remote_ext_requests_total{filename=\"broken.tar.zst\",http_status=\"500 Internal Server Error\"} 2",
        "compute_ctl_remote_ext_requests_total{filename=\"cut.tar.zst\",http_status=\"200 OK\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }

    // Without -r: 412; without remote_extensions in the spec: 409.
    let no_url = api_without(&pg, &farm, Some(remote), None);
    let reply = post(&no_url, "/extension_server/ext_demo", Value::Null);
    assert_eq!(
        (reply.status.as_u16(), error_of(&reply)),
        (412, "remote storage is not configured".into())
    );
    let no_spec = api_without(&pg, &farm, None, Some(server.base_url.clone()));
    let reply = post(&no_spec, "/extension_server/ext_demo", Value::Null);
    assert_eq!(
        (reply.status.as_u16(), error_of(&reply)),
        (
            409,
            "information about remote extensions is unavailable".into()
        )
    );
}

fn api_without(pg: &TestPostgres, farm: &Farm, remote: Option<Value>, url: Option<String>) -> Api {
    api(document(pg, &farm.postgres(), remote), url)
}
