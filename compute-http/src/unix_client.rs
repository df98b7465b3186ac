//! An HTTP/1.1 client for a server on a Unix socket (hyper's client, a task on the caller's
//! runtime): one `GET` with a deadline on the connect and on the whole exchange and a cap on
//! the body. compute-ctl relays `/autoscaling_metrics` from the `neon` extension's
//! communicator socket with it. A socket path too long for `sun_path` is reached through a
//! short symlink in the temp directory, removed after the connect.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::header::{ACCEPT, CONNECTION, CONTENT_TYPE, HOST};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Socket paths this long or longer are reached through a short symlink (as upstream).
pub const SHORT_PATH_LIMIT: usize = 100;

/// `GET path` over the Unix socket `socket`: the connect within `timeout`, then the whole
/// exchange within `timeout`, the body at most `cap` bytes.
pub async fn get(
    socket: &Path,
    path: &str,
    timeout: Duration,
    cap: usize,
) -> Result<Response, String> {
    let stream = connect(socket, timeout).await?;
    tokio::time::timeout(timeout, exchange(stream, path, cap))
        .await
        .map_err(|_| "the response did not complete in time".to_string())
        .and_then(|exchanged| exchanged)
        .map_err(|error| format!("reading the response from {}: {error}", socket.display()))
}

/// `GET path` over `io`: the status, `Content-Type` and body (de-chunked, at most `cap`
/// bytes).
async fn exchange<IO>(io: IO, path: &str, cap: usize) -> Result<Response, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|error| describe(&error))?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(HOST, "localhost")
        .header(ACCEPT, "*/*")
        .header(CONNECTION, "close")
        .body(Empty::new())
        .map_err(|error| format!("building the request: {error}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| describe(&error))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let body = Limited::new(response.into_body(), cap)
        .collect()
        .await
        .map_err(|error| match error.downcast::<hyper::Error>() {
            Ok(error) => describe(&error),
            Err(error) if error.is::<LengthLimitError>() => {
                format!("the body is larger than the {cap}-byte limit")
            }
            Err(error) => error.to_string(),
        })?
        .to_bytes()
        .to_vec();
    driver.abort();
    Ok(Response {
        status,
        content_type,
        body,
    })
}

/// hyper's error, with "closed mid-response" for a response cut short.
fn describe(error: &hyper::Error) -> String {
    if error.is_incomplete_message() {
        format!("the connection closed mid-response ({error})")
    } else {
        error.to_string()
    }
}

/// Connects to `socket`, through a short symlink when its path is too long for `sun_path`;
/// a connect that does not complete within `timeout` is abandoned.
async fn connect(socket: &Path, timeout: Duration) -> Result<tokio::net::UnixStream, String> {
    let short = ShortPath::new(socket)?;
    let connected = tokio::time::timeout(timeout, tokio::net::UnixStream::connect(short.path()))
        .await
        .map_err(|_| {
            format!(
                "connecting to {}: timed out after {timeout:?}",
                socket.display()
            )
        })?;
    drop(short);
    connected.map_err(|error| format!("connecting to {}: {error}", socket.display()))
}

/// The socket path itself, or a symlink to it in the temp directory, removed on drop.
struct ShortPath {
    path: PathBuf,
    link: bool,
}

impl ShortPath {
    fn new(socket: &Path) -> Result<ShortPath, String> {
        if socket.as_os_str().len() < SHORT_PATH_LIMIT {
            return Ok(ShortPath {
                path: socket.to_path_buf(),
                link: false,
            });
        }
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "compute_ctl.short-socket.{}.{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        if path.as_os_str().len() >= SHORT_PATH_LIMIT {
            return Err(format!(
                "{} is too long for a Unix socket and so is the temp directory {}",
                socket.display(),
                std::env::temp_dir().display()
            ));
        }
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(socket, &path).map_err(|error| {
            format!(
                "linking {} to the long socket path {}: {error}",
                path.display(),
                socket.display()
            )
        })?;
        Ok(ShortPath { path, link: true })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ShortPath {
    fn drop(&mut self) {
        if self.link {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The server's answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: StatusCode,
    /// `Content-Type`, if sent.
    pub content_type: Option<String>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The `Content-Type` to relay to a client: the server's when it is a plain header value
    /// (visible ASCII, at most 200 bytes), else `application/octet-stream`.
    pub fn relayable_content_type(&self) -> std::borrow::Cow<'static, str> {
        match &self.content_type {
            Some(value)
                if value.len() <= 200 && value.bytes().all(|byte| (0x20..0x7f).contains(&byte)) =>
            {
                value.clone().into()
            }
            _ => "application/octet-stream".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_kept_or_replaced() {
        let with = |content_type: Option<&str>| Response {
            status: StatusCode::OK,
            content_type: content_type.map(str::to_string),
            body: Vec::new(),
        };
        assert_eq!(
            with(Some("text/x-test")).relayable_content_type(),
            "text/x-test"
        );
        assert_eq!(
            with(None).relayable_content_type(),
            "application/octet-stream"
        );
        assert_eq!(
            with(Some("text/plain\r\nX-Evil: 1")).relayable_content_type(),
            "application/octet-stream"
        );
    }

    /// [`exchange`] with a server that reads the request and answers `response`, then
    /// closes.
    fn exchange_with(response: Vec<u8>, cap: usize) -> Result<Response, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (client, mut server) = tokio::io::duplex(64 * 1024);
            tokio::spawn(async move {
                let mut request = Vec::new();
                while !request.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8; 1];
                    if server.read(&mut byte).await.unwrap() == 0 {
                        break;
                    }
                    request.push(byte[0]);
                }
                server.write_all(&response).await.unwrap();
                server.shutdown().await.unwrap();
            });
            exchange(client, "/autoscaling_metrics", cap).await
        })
    }

    #[test]
    fn bodies_are_capped() {
        let response = |head: &str| {
            let mut bytes = head.as_bytes().to_vec();
            bytes.extend(std::iter::repeat_n(b'x', 100));
            bytes
        };
        for head in [
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n",
        ] {
            let error = exchange_with(response(head), 50).unwrap_err();
            assert!(error.contains("50-byte limit"), "{head:?}: {error}");
        }
        // An HTTP/1.0 body runs to the end of the connection; exactly the cap is fine.
        let ok = exchange_with(response("HTTP/1.0 200 OK\r\n\r\n"), 100).unwrap();
        assert_eq!(
            (ok.status.as_u16(), ok.content_type, ok.body.len()),
            (200, None, 100)
        );
        // A 204 has no body, whatever follows it.
        let ok = exchange_with(response("HTTP/1.0 204 No Content\r\n\r\n"), 100).unwrap();
        assert_eq!((ok.status.as_u16(), ok.body.len()), (204, 0));
        assert!(exchange_with(b"SSH-2.0-x\r\n".to_vec(), 10).is_err());
        assert!(exchange_with(b"HTTP/1.1 abc\r\n\r\n".to_vec(), 10).is_err());
    }
}
