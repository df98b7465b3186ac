//! The stage and on-demand downloads against real PostgreSQL running from a private
//! installation (a copy/symlink farm of the Debian one: nothing is written under /usr):
//! control files before start, a preload library downloaded before start and loaded,
//! `CREATE EXTENSION` of a SQL-only and of a C extension after their download, and a
//! preload library the spec does not allow failing the stage.
//!
//! A test binary of its own (not a module of `tests/it`): it sets `PG_BIN_DIR` for the whole
//! process, which would move the Postgres of every test sharing the process.
#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{archive, Answer, ArchiveServer, Farm};
use pg_extensions_fetch::{access, Downloader, Installation, Limits};
use pg_test_support::{TestDir, TestPostgres};
use serde_json::{json, Value};

const DEMO_CONTROL: &str =
    "comment = 'a SQL-only test extension'\ndefault_version = '1.0'\nrelocatable = true\n";

fn spec(preload: &str) -> Value {
    json!({
        "format_version": 1.0,
        "cluster": {
            "roles": [], "databases": [],
            "settings": [{"name": "shared_preload_libraries", "value": preload, "vartype": "string"}]
        },
        "remote_extensions": {
            "public_extensions": ["ext_demo", "hstore"],
            "custom_extensions": ["auto_explain"],
            "library_index": {"auto_explain": "auto_explain", "hstore": "hstore", "pg_prewarm": "pg_prewarm"},
            "extension_data": {
                "ext_demo": {"control_data": {"ext_demo.control": DEMO_CONTROL}, "archive_path": "x"},
                "hstore": {"control_data": {"hstore.control": fs::read_to_string(real_share().join("extension/hstore.control")).unwrap()}, "archive_path": "x"},
                "auto_explain": {"control_data": {}, "archive_path": "x"},
                "pg_prewarm": {"control_data": {}, "archive_path": "x"}
            }
        }
    })
}

fn real_share() -> std::path::PathBuf {
    let bin = common::real_bin_dir();
    let version = bin.parent().unwrap().file_name().unwrap().to_owned();
    Path::new("/usr/share/postgresql").join(version)
}

/// Runs the stage binary on a document for `spec`; returns (exit code, stdout JSON).
fn run_stage(farm: &Farm, base_url: &str, spec: Value) -> (i32, Value) {
    let document = json!({
        "document_version": 1,
        "spec": spec,
        "pgdata": farm.root.join("pgdata"),
        "pgbin": farm.postgres(),
        "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": 5432, "socket_dir": "/tmp"}
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_pg-extensions-fetch"))
        .args(["-r", base_url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &document).unwrap();
    let output = child.wait_with_output().unwrap();
    let code = output.status.code().unwrap();
    (code, serde_json::from_slice(&output.stdout).unwrap())
}

#[test]
fn remote_extensions_reach_a_real_postgres() {
    let dir = TestDir::new("ext");
    let farm = Farm::new(dir.path(), &["hstore", "auto_explain", "ext_demo"]);
    // Every server this test starts runs from the farm.
    std::env::set_var("PG_BIN_DIR", &farm.bin);
    let installation = Installation::discover(&farm.postgres()).unwrap();
    assert!(
        installation.extension_dir.starts_with(&farm.root),
        "{installation:?}"
    );
    assert!(
        installation.library_dir.starts_with(&farm.root),
        "{installation:?}"
    );

    let real_lib = common::real_bin_dir().parent().unwrap().join("lib");
    let real_ext = real_share().join("extension");
    let server = ArchiveServer::start();
    let pg_major = installation.pg_major.clone();
    let auto_explain = fs::read(real_lib.join("auto_explain.so")).unwrap();
    server.serve(
        &pg_major,
        "auto_explain",
        Answer::ok(archive(&[("lib/auto_explain.so", &auto_explain)])),
    );
    server.serve(
        &pg_major,
        "ext_demo",
        Answer::ok(archive(&[
            ("share/extension/ext_demo.control", DEMO_CONTROL.as_bytes()),
            (
                "share/extension/ext_demo--1.0.sql",
                b"CREATE FUNCTION ext_demo_answer() RETURNS int LANGUAGE sql AS 'SELECT 42';\n",
            ),
        ])),
    );
    server.serve(&pg_major, "hstore", Answer::ok(common::hstore_archive()));

    // The stage: control files, then the preload library's archive.
    let (code, document) = run_stage(&farm, &server.base_url, spec("neon,auto_explain"));
    assert_eq!(code, 0, "{document}");
    let section = &document["extensions"];
    assert_eq!(section["control_files_written"], 2, "{section}");
    assert_eq!(section["preloaded"], json!(["auto_explain"]), "{section}");
    assert_eq!(section["num_ext_downloaded"], 1, "{section}");
    assert!(
        section["total_ext_download_size"].as_u64().unwrap() > 1000,
        "{section}"
    );
    assert_eq!(
        section["largest_ext_size"],
        section["total_ext_download_size"]
    );
    assert!(installation.library_dir.join("auto_explain.so").is_file());
    assert!(installation
        .extension_dir
        .join("ext_demo.control")
        .is_file());
    assert!(!real_ext.join("ext_demo.control").exists());

    // Postgres from the farm loads the downloaded library and sees the control files.
    let pg = TestPostgres::builder()
        .setting("shared_preload_libraries", "auto_explain")
        .start();
    assert!(pg.bin_dir().starts_with(&farm.root));
    let mut client = pg.client();
    let preload: String = client
        .query_one("SHOW shared_preload_libraries", &[])
        .unwrap()
        .get(0);
    assert_eq!(preload, "auto_explain");
    let available: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_available_extensions WHERE name IN ('ext_demo', 'hstore')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(available, 2);
    // Without its script the extension cannot be created yet...
    let early = client
        .batch_execute("CREATE EXTENSION ext_demo")
        .unwrap_err();
    assert!(format!("{early:?}").contains("ext_demo"), "{early:?}");

    // ... then the download Postgres would ask for (as /extension_server does).
    let remote: compute_spec::spec::RemoteExtensions =
        serde_json::from_value(spec("")["remote_extensions"].clone()).unwrap();
    let downloader = Downloader::new(server.base_url.clone(), installation, Limits::default());
    for (name, is_library) in [("ext_demo", false), ("hstore.so", true)] {
        let extension = access::resolve(&remote, name, is_library).unwrap();
        downloader.fetch(&extension).unwrap();
    }
    client
        .batch_execute("CREATE EXTENSION ext_demo; CREATE EXTENSION hstore")
        .unwrap();
    let answer: i32 = client
        .query_one("SELECT ext_demo_answer()", &[])
        .unwrap()
        .get(0);
    assert_eq!(answer, 42);
    let value: String = client
        .query_one("SELECT ('a=>1'::hstore -> 'a')", &[])
        .unwrap()
        .get(0);
    assert_eq!(value, "1");
    assert!(!real_ext.join("ext_demo--1.0.sql").exists());

    // A preload library whose extension the spec does not list fails the stage.
    let (code, envelope) = run_stage(&farm, &server.base_url, spec("pg_prewarm"));
    assert_eq!(code, 2, "{envelope}");
    let message = envelope["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"pg_prewarm\""), "{message}");
    assert!(message.contains("cluster.settings"), "{message}");
    assert!(
        message.contains("extension pg_prewarm is not found"),
        "{message}"
    );
    assert_eq!(server.requests(&pg_major, "pg_prewarm"), 0);
}
