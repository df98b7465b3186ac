//! `GET /hadron_liveness_probe` (`pg_isready` against the compute, [`pg_catalog::health::liveness`]) and
//! `GET /autoscaling_metrics` (relayed from the `neon` extension's communicator socket).

use std::path::Path;
use std::time::Duration;

use compute_http::Reply;
use compute_spec::ComputeDocument;
use hyper::StatusCode;
use serde_json::json;

use crate::api::Api;

/// `pg_isready` is killed when it runs longer than this.
pub const PG_ISREADY_DEADLINE: Duration = Duration::from_secs(10);

/// The communicator's socket, in PGDATA (created by the `neon` extension only).
pub const COMMUNICATOR_SOCKET: &str = "neon-communicator.socket";

/// Connect, read and write deadline of the metrics exchange, and its overall deadline.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest metrics body relayed (16 MiB).
pub const METRICS_CAP: usize = 16 * 1024 * 1024;

// ---------------------------------------------------------------------------------------
// GET /hadron_liveness_probe

/// `GET /hadron_liveness_probe` (external, authenticated, any status):
/// `<pgbin dir>/pg_isready -h <socket dir> -p <port>`; 200 `"ok"` when it exits 0, else 500.
pub fn hadron_liveness_probe(api: &Api) -> Reply {
    let document = api.shared.lock().document.clone();
    let Some(document) = document else {
        return Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "liveness probe failed: the compute has no document yet",
        );
    };
    liveness(&document, PG_ISREADY_DEADLINE)
}

fn liveness(document: &ComputeDocument, deadline: Duration) -> Reply {
    match pg_catalog::health::liveness(document, deadline) {
        Ok(()) => Reply::json(StatusCode::OK, &json!("ok")),
        Err(error) => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("liveness probe failed: {error}"),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// GET /autoscaling_metrics

/// `GET /autoscaling_metrics` (external, **unauthenticated**, any status): relays
/// `GET /autoscaling_metrics` over `PGDATA/neon-communicator.socket`: the communicator's
/// status, `Content-Type` and body; 500 `{"error"}` when the socket is missing or the
/// exchange fails.
pub async fn autoscaling_metrics(api: Api) -> Reply {
    let pgdata = api
        .shared
        .lock()
        .document
        .as_ref()
        .map(|document| document.pgdata.clone());
    let Some(pgdata) = pgdata else {
        return Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed to get autoscaling metrics: the compute has no data directory yet",
        );
    };
    match relay(
        &pgdata.join(COMMUNICATOR_SOCKET),
        EXCHANGE_TIMEOUT,
        METRICS_CAP,
    )
    .await
    {
        Ok(reply) => reply,
        Err(message) => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to get autoscaling metrics: {message}"),
        ),
    }
}

/// `GET /autoscaling_metrics` over the Unix socket `socket`
/// ([`compute_http::unix_client::get`]: the connect within `timeout`, then the whole exchange
/// within `timeout`, the body at most `cap` bytes), as a reply with the communicator's
/// status, `Content-Type` and body.
pub async fn relay(socket: &Path, timeout: Duration, cap: usize) -> Result<Reply, String> {
    if !socket.exists() {
        return Err(format!(
            "{} does not exist (the neon extension creates it)",
            socket.display()
        ));
    }
    let response =
        compute_http::unix_client::get(socket, "/autoscaling_metrics", timeout, cap).await?;
    Ok(Reply::bytes(
        response.status,
        response.relayable_content_type(),
        response.body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{api, api_for, body, document, spec};
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;
    use std::thread::JoinHandle;
    use std::time::Instant;

    /// A stand-in communicator: accepts one connection on `path`, checks the request, and
    /// writes `response` (then closes, unless `hang`).
    fn communicator(path: &Path, response: Vec<u8>, hang: bool) -> JoinHandle<String> {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).unwrap() == 0 {
                    break;
                }
                request.push(byte[0]);
            }
            if hang {
                std::thread::sleep(Duration::from_secs(1));
            } else {
                stream.write_all(&response).unwrap();
            }
            String::from_utf8(request).unwrap()
        })
    }

    fn api_with_pgdata(pgdata: &Path) -> Api {
        api(
            Some(document(
                Path::new("/nonexistent"),
                pgdata,
                pgdata,
                5432,
                spec(serde_json::json!({})),
            )),
            false,
        )
    }

    #[tokio::test]
    async fn relays_status_content_type_and_body() {
        let dir = tempfile::tempdir().unwrap();
        let server = communicator(
            &dir.path().join(COMMUNICATOR_SOCKET),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: 12\r\n\r\nlfc_hits 42\n"
                .to_vec(),
            false,
        );
        let reply = autoscaling_metrics(api_with_pgdata(dir.path())).await;
        let request = server.join().unwrap();
        assert!(
            request.starts_with("GET /autoscaling_metrics HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("\r\nHost: localhost\r\n"), "{request}");
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.content_type.as_deref(),
            Some("text/plain; version=0.0.4")
        );
        assert_eq!(reply.body, b"lfc_hits 42\n");
    }

    #[tokio::test]
    async fn relays_chunked_errors_through_a_long_path() {
        let root = tempfile::tempdir().unwrap();
        let pgdata = root.path().join("p".repeat(120));
        std::fs::create_dir(&pgdata).unwrap();
        let socket = pgdata.join(COMMUNICATOR_SOCKET);
        assert!(socket.as_os_str().len() >= compute_http::unix_client::SHORT_PATH_LIMIT);
        // Binding needs a short path too: bind in a short directory, then move the socket.
        let short = root.path().join("s.sock");
        let server = communicator(
            &short,
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"
                .to_vec(),
            false,
        );
        std::fs::rename(&short, &socket).unwrap();
        let reply = autoscaling_metrics(api_with_pgdata(&pgdata)).await;
        server.join().unwrap();
        assert_eq!(reply.status, 503);
        assert_eq!(reply.content_type.as_deref(), Some("application/json"));
        assert_eq!(reply.body, b"{\"a\":1}");
        let leftovers = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&format!("compute_ctl.short-socket.{}.", std::process::id()))
            })
            .count();
        assert_eq!(leftovers, 0, "the short symlink is removed");
    }

    #[tokio::test]
    async fn failures_are_500_json() {
        let dir = tempfile::tempdir().unwrap();
        let reply = autoscaling_metrics(api_with_pgdata(dir.path())).await;
        assert_eq!(reply.status, 500);
        let message = body(&reply)["error"].as_str().unwrap().to_string();
        assert!(
            message.contains("neon-communicator.socket does not exist"),
            "{message}"
        );
        assert_eq!(autoscaling_metrics(api(None, false)).await.status, 500);

        let socket = dir.path().join(COMMUNICATOR_SOCKET);
        let server = communicator(&socket, b"HTTP/1.1 200 OK\r\nContent-Le".to_vec(), false);
        let reply = autoscaling_metrics(api_with_pgdata(dir.path())).await;
        server.join().unwrap();
        assert_eq!(reply.status, 500);
        assert!(body(&reply)["error"]
            .as_str()
            .unwrap()
            .contains("closed mid-response"));
        std::fs::remove_file(&socket).unwrap();

        let server = communicator(&socket, Vec::new(), true);
        let started = Instant::now();
        let error = relay(&socket, Duration::from_millis(300), 1024)
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{error}");
        assert!(error.contains("reading the response"), "{error}");
        server.join().unwrap();
    }

    #[test]
    fn liveness_probe_runs_pg_isready() {
        let mut server = pg_test_support::TestPostgres::start();
        let api = api_for(&server, false);
        let reply = hadron_liveness_probe(&api);
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(body(&reply), serde_json::json!("ok"));
        server.stop_fast();
        let reply = hadron_liveness_probe(&api);
        assert_eq!(reply.status, 500);
        let message = body(&reply)["error"].as_str().unwrap().to_string();
        assert!(
            message.starts_with("liveness probe failed: pg_isready"),
            "{message}"
        );
        assert_eq!(
            hadron_liveness_probe(&crate::testing::api(None, false)).status,
            500
        );
    }
}
