//! `/database_schema`: codes and bodies as upstream, the SQL streamed (chunked, an
//! incomplete body when pg_dump fails after output started), pg_dump killed when the client
//! goes away or when it falls silent. The HTTP-level cases go through the real server and a
//! raw TCP client reading the bytes on the wire.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;
use crate::testing::*;
use compute_http::{Port, Reply};
use compute_spec::quote::Ident;
use hyper::Method;
use pg_test_support::probe::{process_alive, wait_dead, wait_for};
use pg_test_support::TestPostgres;
use serde_json::json;

/// A reply's status, its whole body (first chunk and stream), and how the stream failed.
fn drain(reply: Reply) -> (u16, Vec<u8>, Option<String>) {
    let mut bytes = reply.body;
    let mut failure = None;
    if let Some(mut rest) = reply.stream {
        while let Some(next) = rest.blocking_next() {
            match next {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(error) => {
                    failure = Some(error.to_string());
                    break;
                }
            }
        }
    }
    (reply.status.as_u16(), bytes, failure)
}

/// A directory whose `pg_dump` is `script` (a shell script; `$PIDFILE` is where it may
/// write its pid).
struct FakeBin {
    dir: tempfile::TempDir,
}

impl FakeBin {
    fn new(script: &str) -> FakeBin {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let text = format!("#!/bin/sh\nPIDFILE='{}'\n{script}\n", pidfile.display());
        let fake = dir.path().join("pg_dump");
        std::fs::write(&fake, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeBin { dir }
    }

    fn postgres(&self) -> PathBuf {
        self.dir.path().join("postgres")
    }

    /// The pid the script wrote (waiting for it).
    fn pid(&self) -> i32 {
        let path = self.dir.path().join("pid");
        wait_for(Duration::from_secs(10), || {
            std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| text.trim().parse().ok())
        })
        .expect("the fake pg_dump wrote no pid")
    }
}

fn limits(idle_ms: u64) -> Limits {
    Limits {
        idle: Duration::from_millis(idle_ms),
        total: PG_DUMP_DEADLINE,
    }
}

#[test]
fn database_schema_dumps_and_reports() {
    let server = TestPostgres::start();
    server.psql("CREATE DATABASE shop");
    server
        .client_for("shop")
        .batch_execute("CREATE TABLE public.items (id int PRIMARY KEY, name text)")
        .unwrap();
    server.psql(&format!("CREATE DATABASE {}", Ident("we\"ird; db\nname")));
    let api = api_for(&server, false);
    let get =
        |query: &str| database_schema(&api, &request(Method::GET, "/database_schema", query, b""));

    let reply = get("database=shop");
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    let (status, sql, failure) = drain(reply);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&sql));
    assert_eq!(failure, None);
    let sql = String::from_utf8(sql).unwrap();
    assert!(sql.contains("CREATE TABLE public.items"), "{sql}");
    assert!(sql.contains("PostgreSQL database dump complete"), "{sql}");

    let (status, sql, failure) = drain(get("database=we%22ird%3B+db%0Aname"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&sql));
    assert_eq!(failure, None);

    let reply = get("database=nosuch");
    assert_eq!(reply.status, 404);
    assert_eq!(body(&reply), json!({"error": "database does not exist"}));

    // PGDATABASE is never expanded as a connection string.
    let reply = get("database=host%3D%2Ftmp+dbname%3Dshop");
    assert_eq!(reply.status, 404);

    let reply = get("database=shop&database=other");
    assert_eq!(reply.status, 400);
    assert_eq!(
        body(&reply),
        json!({"error": "failed to deserialize query string: duplicate field `database`"})
    );

    let reply = get("");
    assert_eq!(reply.status, 400);
    assert_eq!(
        body(&reply),
        json!({"error": "failed to deserialize query string: missing field `database`"})
    );

    let document = api.shared.lock().document.clone().unwrap();
    let mut elsewhere = document.clone();
    elsewhere.pgbin = "/nonexistent/bin/postgres".into();
    let reply = dump_schema(&elsewhere, "shop", PG_DUMP_LIMITS);
    assert_eq!(reply.status, 500);
    assert!(body(&reply)["error"]
        .as_str()
        .unwrap()
        .starts_with("failed to execute pg_dump: starting /nonexistent/bin/pg_dump"));
}

#[test]
fn a_pg_dump_failing_after_output_ends_the_stream_with_an_error() {
    let server = TestPostgres::start();
    let mut document = api_for(&server, false)
        .shared
        .lock()
        .document
        .clone()
        .unwrap();
    let fake = FakeBin::new("echo 'CREATE TABLE part (id int);'\nsleep 0.2\nexit 1");
    document.pgbin = fake.postgres();
    let (status, body, failure) = drain(dump_schema(&document, "shop", PG_DUMP_LIMITS));
    assert_eq!(status, 200);
    assert_eq!(body, b"CREATE TABLE part (id int);\n");
    let failure = failure.expect("a failed pg_dump must not end the body cleanly");
    assert!(
        failure.contains("pg_dump failed (exit status: 1)"),
        "{failure}"
    );
}

#[test]
fn a_silent_pg_dump_is_killed_before_and_after_its_first_output() {
    let server = TestPostgres::start();
    let mut document = api_for(&server, false)
        .shared
        .lock()
        .document
        .clone()
        .unwrap();

    let silent = FakeBin::new("echo $$ > \"$PIDFILE\"\nexec sleep 1000");
    document.pgbin = silent.postgres();
    let started = Instant::now();
    let reply = dump_schema(&document, "shop", limits(300));
    assert_eq!(reply.status, 500);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        body(&reply),
        json!({"error": "failed to execute pg_dump: pg_dump wrote nothing for 0.3 s and was killed"})
    );
    assert!(
        !process_alive(silent.pid()),
        "the silent pg_dump was not killed"
    );

    let stalls = FakeBin::new("echo $$ > \"$PIDFILE\"\necho 'CREATE TABLE a ();'\nexec sleep 1000");
    document.pgbin = stalls.postgres();
    let (status, body, failure) = drain(dump_schema(&document, "shop", limits(300)));
    assert_eq!(status, 200);
    assert_eq!(body, b"CREATE TABLE a ();\n");
    let failure = failure.unwrap();
    assert!(failure.contains("wrote nothing for 0.3 s"), "{failure}");
    assert!(
        !process_alive(stalls.pid()),
        "the stalled pg_dump was not killed"
    );
}

/// Serves `api`'s external server on a free loopback port.
fn http_server(api: &crate::api::Api) -> SocketAddr {
    let router = crate::routes::router(api, Port::External);
    let listen = ([127, 0, 0, 1].into(), 0);
    compute_http::serve(
        router,
        api.shared.inflight.clone(),
        api.deadlines,
        listen,
        Port::External,
    )
    .unwrap()
}

/// The raw bytes of a `GET` answered on a `Connection: close` request, up to the end of the
/// connection.
fn raw_get(address: SocketAddr, target: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    response
}

fn head_of(response: &[u8]) -> String {
    let end = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap();
    String::from_utf8_lossy(&response[..end]).to_lowercase()
}

#[test]
fn over_http_a_dump_is_chunked_and_a_late_failure_leaves_it_unterminated() {
    let server = TestPostgres::start();
    server
        .client()
        .batch_execute("CREATE TABLE public.whole (id int)")
        .unwrap();
    let api = api_for(&server, false);
    let address = http_server(&api);

    let whole = raw_get(address, "/database_schema?database=postgres");
    let head = head_of(&whole);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(String::from_utf8_lossy(&whole).contains("CREATE TABLE public.whole"));
    assert!(
        whole.ends_with(b"\r\n0\r\n\r\n"),
        "a whole dump ends with the last chunk"
    );

    let fake = FakeBin::new("echo 'CREATE TABLE part (id int);'\nsleep 0.2\nexit 1");
    api.shared.update(|inner| {
        if let Some(document) = inner.document.as_mut() {
            document.pgbin = fake.postgres();
        }
    });
    let cut = raw_get(address, "/database_schema?database=postgres");
    let head = head_of(&cut);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let text = String::from_utf8_lossy(&cut);
    assert!(text.contains("CREATE TABLE part (id int);"), "{text}");
    assert!(
        !cut.ends_with(b"0\r\n\r\n"),
        "a failed dump must not carry the terminating chunk: {text:?}"
    );

    api.shared.update(|inner| {
        if let Some(document) = inner.document.as_mut() {
            document.pgbin = server.bin_dir().join("postgres");
        }
    });
    let missing = raw_get(address, "/database_schema?database=nosuch");
    assert!(head_of(&missing).starts_with("http/1.1 404"));
}

/// A wrapper around the real pg_dump that records its pid (pg_dump replaces the shell).
fn recording_pg_dump(server: &TestPostgres) -> FakeBin {
    let real = server.bin_dir().join("pg_dump");
    FakeBin::new(&format!(
        "echo $$ > \"$PIDFILE\"\nexec '{}' \"$@\"",
        real.display()
    ))
}

#[test]
fn pg_dump_is_killed_when_the_client_goes_away() {
    // pg_dump locks every table in one transaction.
    let server = TestPostgres::builder()
        .setting("max_locks_per_transaction", 1024)
        .start();
    // Thousands of tables with long comments: a dump of about 24 MB, far more than the
    // pipe, the chunk queue and the sockets' buffers hold.
    let mut client = server.client();
    for batch in 0..6 {
        client
            .batch_execute(&format!(
                "DO $$ BEGIN FOR i IN {}..{} LOOP \
                 EXECUTE pg_catalog.format('CREATE TABLE public.%I (a int, b text, \
                 c timestamptz, d numeric)', 'wide_table_' || i); \
                 EXECUTE pg_catalog.format('COMMENT ON TABLE public.%I IS %L', \
                 'wide_table_' || i, pg_catalog.repeat('x', 8000)); END LOOP; END $$",
                batch * 500 + 1,
                batch * 500 + 500
            ))
            .unwrap();
    }
    let api = api_for(&server, false);
    let wrapper = recording_pg_dump(&server);
    api.shared.update(|inner| {
        if let Some(document) = inner.document.as_mut() {
            document.pgbin = wrapper.postgres();
        }
    });
    let address = http_server(&api);

    let stream = TcpStream::connect(address).unwrap();
    nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
    let mut stream = stream;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET /database_schema?database=postgres HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    let mut first = vec![0; 2048];
    let mut read = 0;
    while read < 1024 {
        let n = stream.read(&mut first[read..]).unwrap();
        assert!(n > 0, "the server closed the connection early");
        read += n;
    }
    assert!(String::from_utf8_lossy(&first[..read]).starts_with("HTTP/1.1 200"));
    let pid = wrapper.pid();
    // Still writing: the client has read only the first bytes.
    std::thread::sleep(Duration::from_millis(300));
    assert!(process_alive(pid), "pg_dump ended before the client left");
    drop(stream);
    let left = Instant::now();
    assert!(
        wait_dead(pid, Duration::from_secs(5)),
        "pg_dump {pid} still runs 5 s after the client went away"
    );
    eprintln!("pg_dump gone {:?} after the client left", left.elapsed());
}

#[test]
fn a_departed_client_of_a_silent_pg_dump_frees_it_within_the_idle_limit() {
    let server = TestPostgres::start();
    let api = api_for(&server, false);
    let fake = FakeBin::new("echo $$ > \"$PIDFILE\"\necho 'CREATE TABLE a ();'\nexec sleep 1000");
    api.shared.update(|inner| {
        if let Some(document) = inner.document.as_mut() {
            document.pgbin = fake.postgres();
        }
    });
    let address = http_server(&api);
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET /database_schema?database=postgres HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    let mut first = [0; 512];
    let n = stream.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let pid = fake.pid();
    drop(stream);
    let left = Instant::now();
    // Noticed through hyper dropping the body, or at worst at the route's idle limit.
    assert!(
        wait_dead(pid, PG_DUMP_IDLE + Duration::from_secs(5)),
        "pg_dump {pid} outlived its client"
    );
    eprintln!(
        "silent pg_dump gone {:?} after the client left",
        left.elapsed()
    );
}
