//! The websocket endpoint: an accept thread plus one thread per agent session.
//!
//! * Only `GET /monitor` is upgraded; any other path is answered `404`.
//! * Setup (HTTP upgrade + version handshake) must finish within
//!   [`SETUP_TIMEOUT`].
//! * One agent at a time: every upgraded connection takes a new *generation*
//!   number; a session whose generation is no longer current sends a close
//!   frame and ends. Sockets use a short read timeout ([`TICK`]) so sessions
//!   notice replacement, shutdown and memory pressure promptly.
//! * Malformed input never panics. Garbage after the handshake (bad JSON,
//!   unknown types, binary frames) is answered with `InvalidMessage` and the
//!   session stays open: the agent may be newer than us and a single bad frame
//!   should not cost the VM its autoscaling. A bad *version handshake* is
//!   answered with `{"error": …}` and the connection is closed, because no
//!   common protocol has been established.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::cgroup::{DownscaleDecision, MemoryState};
use crate::filecache::{self, PgSettings};
use crate::protocol::{
    self, InboundKind, MessageIdGenerator, OutboundKind, OutboundMsg, VersionReply,
};
use crate::MIB;

/// Deadline for the HTTP upgrade plus the version handshake.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(4);
/// Socket read timeout: how often a session checks for cancellation.
pub const TICK: Duration = Duration::from_millis(50);
/// The only upgraded path.
pub const MONITOR_PATH: &str = "/monitor";
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
const CLOSE_DRAIN: Duration = Duration::from_millis(300);
const MAX_MESSAGE_SIZE: usize = 1 << 20;

/// State shared by the accept thread, the watcher and sessions.
pub(crate) struct Shared {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) generation: AtomicU64,
    pub(crate) memory: Arc<Mutex<MemoryState>>,
    pub(crate) filecache: Option<Mutex<PgSettings>>,
    pub(crate) sessions: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn memory(&self) -> MutexGuard<'_, MemoryState> {
        // A poisoned lock only means a thread panicked mid-update; the plain
        // data inside is still usable.
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resizes the file cache for `total` bytes, if a connection was configured.
    fn resize_file_cache(&self, total: u64) -> Result<(), filecache::FileCacheError> {
        if let Some(fc) = &self.filecache {
            let mut backend = fc.lock().unwrap_or_else(|p| p.into_inner());
            filecache::resize(&mut *backend, total)?;
        }
        Ok(())
    }
}

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("socket setup failed: {0}")]
    Socket(#[from] std::io::Error),
    #[error("websocket upgrade failed: {0}")]
    Upgrade(#[source] tungstenite::Error),
    #[error("session setup did not finish within {}s", SETUP_TIMEOUT.as_secs())]
    SetupTimeout,
    #[error("websocket error: {0}")]
    Ws(#[from] tungstenite::Error),
}

/// Body of the accept thread.
pub(crate) fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let sh = Arc::clone(&shared);
                let spawned = std::thread::Builder::new()
                    .name("vm-monitor-session".into())
                    .spawn(move || run_session(stream, peer, sh));
                match spawned {
                    Ok(handle) => {
                        let mut sessions =
                            shared.sessions.lock().unwrap_or_else(|p| p.into_inner());
                        sessions.retain(|h| !h.is_finished());
                        sessions.push(handle);
                    }
                    Err(e) => tracing::error!(%peer, error = %e, "cannot spawn session thread"),
                }
            }
            Err(e) if is_timeout(&e) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn is_ws_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if is_timeout(io))
}

fn run_session(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let span = tracing::info_span!("agent", %peer);
    let _enter = span.enter();
    match session(stream, &shared) {
        Ok(()) => tracing::info!("agent session ended"),
        Err(e) => tracing::warn!(error = %e, "agent session ended with an error"),
    }
}

fn session(stream: TcpStream, shared: &Shared) -> Result<(), SessionError> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(TICK))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let deadline = stage_kit::deadline::after(SETUP_TIMEOUT);
    let Some(ws) = upgrade(stream, deadline, &shared.stop)? else {
        return Ok(());
    };
    // Becoming the current generation makes any older session close itself.
    let generation = shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
    tracing::info!(
        generation,
        "agent connected (any previous agent is disconnected)"
    );
    let mut s = Session {
        ws,
        shared,
        generation,
        ids: MessageIdGenerator::default(),
    };
    if !s.version_handshake(deadline)? {
        return Ok(());
    }
    s.initial_file_cache();
    s.run()
}

/// Handshake callback: only `/monitor` is upgraded, anything else gets 404.
// The `Result` shape is imposed by tungstenite's `Callback` trait.
#[allow(clippy::result_large_err)]
fn check_path(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    let path = req.uri().path();
    if path == MONITOR_PATH {
        Ok(resp)
    } else {
        tracing::info!(path, "rejecting request for unknown path");
        let mut err = ErrorResponse::new(Some(format!("not found: {path}\n")));
        *err.status_mut() = tungstenite::http::StatusCode::NOT_FOUND;
        Err(err)
    }
}

/// HTTP → websocket upgrade of `GET /monitor`; `Ok(None)` when stopped.
fn upgrade(
    stream: TcpStream,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<Option<WebSocket<TcpStream>>, SessionError> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE));
    let mut attempt = tungstenite::accept_hdr_with_config(stream, check_path, Some(config));
    loop {
        match attempt {
            Ok(ws) => return Ok(Some(ws)),
            Err(HandshakeError::Failure(e)) => return Err(SessionError::Upgrade(e)),
            Err(HandshakeError::Interrupted(mid)) => {
                if stop.load(Ordering::SeqCst) {
                    return Ok(None);
                }
                if Instant::now() >= deadline {
                    return Err(SessionError::SetupTimeout);
                }
                attempt = mid.handshake();
            }
        }
    }
}

struct Session<'a> {
    ws: WebSocket<TcpStream>,
    shared: &'a Shared,
    generation: u64,
    ids: MessageIdGenerator,
}

impl Session<'_> {
    /// Why this session must stop, if it must.
    fn cancelled(&self) -> Option<&'static str> {
        if self.shared.stop.load(Ordering::SeqCst) {
            Some("vm-monitor is shutting down")
        } else if self.shared.generation.load(Ordering::SeqCst) != self.generation {
            Some("replaced by a newer agent connection")
        } else {
            None
        }
    }

    /// Sends a text frame. A write timeout leaves the frame queued in
    /// tungstenite and is not fatal.
    fn send_text(&mut self, text: String) -> Result<(), SessionError> {
        match self.ws.send(Message::text(text)) {
            Err(e) if is_ws_timeout(&e) => Ok(()),
            other => Ok(other?),
        }
    }

    fn send(&mut self, kind: OutboundKind, id: u64) -> Result<(), SessionError> {
        let msg = OutboundMsg::new(kind, id);
        tracing::debug!(?msg, "sending");
        self.send_text(msg.to_json())
    }

    /// Sends a close frame and waits briefly for the peer's reply.
    fn close(&mut self, code: CloseCode, reason: &str) {
        tracing::info!(reason, "closing agent connection");
        let frame = CloseFrame {
            code,
            reason: reason.to_owned().into(),
        };
        if self.ws.close(Some(frame)).is_err() {
            return;
        }
        let end = stage_kit::deadline::after(CLOSE_DRAIN);
        while Instant::now() < end {
            match self.ws.read() {
                Ok(_) => {}
                Err(e) if is_ws_timeout(&e) => {}
                Err(_) => return,
            }
        }
    }

    /// Reads the agent's version range and answers it; `Ok(false)` when the
    /// session must end (mismatch, garbage, close, cancellation).
    fn version_handshake(&mut self, deadline: Instant) -> Result<bool, SessionError> {
        let text = loop {
            if let Some(reason) = self.cancelled() {
                self.close(CloseCode::Away, reason);
                return Ok(false);
            }
            if Instant::now() >= deadline {
                self.close(CloseCode::Policy, "no protocol version handshake in time");
                return Err(SessionError::SetupTimeout);
            }
            match self.ws.read() {
                Ok(Message::Text(t)) => break t.as_str().to_owned(),
                Ok(Message::Binary(_)) => break String::from("<binary frame>"),
                Ok(Message::Close(_)) => return Ok(false),
                Ok(_) => {}
                Err(e) if is_ws_timeout(&e) => {}
                Err(e) => return Err(e.into()),
            }
        };
        let reply = protocol::negotiate_version(&text);
        let json =
            serde_json::to_string(&reply).unwrap_or_else(|_| r#"{"error":"internal"}"#.into());
        self.send_text(json)?;
        match reply {
            VersionReply::Version { version } => {
                tracing::info!(version, "protocol version negotiated");
                Ok(true)
            }
            VersionReply::Error { error } => {
                tracing::warn!(%error, handshake = %text, "protocol version handshake failed");
                self.close(CloseCode::Protocol, "protocol version negotiation failed");
                Ok(false)
            }
        }
    }

    /// Sizes the file cache once at session start (also checks permissions).
    fn initial_file_cache(&mut self) {
        let total = self.shared.memory().total;
        if let Some(total) = total {
            if let Err(e) = self.shared.resize_file_cache(total) {
                tracing::warn!(error = %e, "initial file-cache sizing failed");
            }
        }
    }

    fn run(&mut self) -> Result<(), SessionError> {
        loop {
            if let Some(reason) = self.cancelled() {
                self.close(CloseCode::Away, reason);
                return Ok(());
            }
            let request_upscale = self.shared.memory().take_upscale_request(Instant::now());
            if request_upscale {
                let id = self.ids.next_id();
                tracing::info!(id, "memory use above threshold; requesting upscale");
                self.send(OutboundKind::UpscaleRequest {}, id)?;
            }
            match self.ws.read() {
                Ok(Message::Text(t)) => self.handle_text(t.as_str())?,
                Ok(Message::Binary(b)) => {
                    tracing::warn!(len = b.len(), "binary frame from agent");
                    let id = self.ids.next_id();
                    let error = "binary frames are not supported; send text frames".into();
                    self.send(OutboundKind::InvalidMessage { error }, id)?;
                }
                Ok(Message::Close(frame)) => {
                    tracing::info!(?frame, "agent closed the connection");
                    // tungstenite queued the close reply; push it out.
                    let _ = self.ws.flush();
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) if is_ws_timeout(&e) => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Ok(())
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn handle_text(&mut self, text: &str) -> Result<(), SessionError> {
        let msg = match protocol::decode_inbound(text) {
            Ok(m) => m,
            Err(e) => {
                let snippet: String = text.chars().take(200).collect();
                tracing::warn!(error = %e, message = %snippet, "undecodable message from agent");
                let id = e.id.unwrap_or_else(|| self.ids.next_id());
                return self.send(OutboundKind::InvalidMessage { error: e.reason }, id);
            }
        };
        tracing::debug!(?msg, "received");
        let id = msg.id;
        match msg.kind {
            InboundKind::HealthCheck => self.send(OutboundKind::HealthCheck {}, id),
            InboundKind::InvalidMessage { error } => {
                tracing::warn!(id, %error, "agent could not decode one of our messages");
                Ok(())
            }
            InboundKind::InternalError { error } => {
                tracing::warn!(id, %error, "agent reported an internal error");
                Ok(())
            }
            InboundKind::UpscaleNotification { granted } => {
                tracing::info!(
                    id,
                    mem_mib = granted.mem / MIB,
                    cpu = granted.cpu,
                    "upscale granted"
                );
                self.shared.memory().apply_upscale(granted.mem);
                // The memory is already ours; a file-cache failure must not
                // make the agent believe otherwise, so it is only logged.
                if let Err(e) = self.shared.resize_file_cache(granted.mem) {
                    tracing::warn!(error = %e, "file-cache resize after upscale failed");
                }
                self.send(OutboundKind::UpscaleConfirmation {}, id)
            }
            InboundKind::DownscaleRequest { target } => self.handle_downscale(target.mem, id),
        }
    }

    fn handle_downscale(&mut self, target: u64, id: u64) -> Result<(), SessionError> {
        let decision = self
            .shared
            .memory()
            .evaluate_downscale(target, Instant::now());
        let kind = match decision {
            DownscaleDecision::Deny(status) => {
                tracing::info!(id, target_mib = target / MIB, %status, "downscale denied");
                OutboundKind::DownscaleResult { ok: false, status }
            }
            DownscaleDecision::Error(error) => {
                tracing::warn!(id, %error, "cannot evaluate downscale");
                OutboundKind::InternalError { error }
            }
            DownscaleDecision::Grant {
                new_threshold,
                status,
            } => match self.shared.resize_file_cache(target) {
                Err(e) => {
                    tracing::warn!(id, error = %e, "file-cache shrink failed; downscale not confirmed");
                    OutboundKind::InternalError {
                        error: format!("failed to shrink file cache: {e}"),
                    }
                }
                Ok(()) => {
                    self.shared.memory().apply_downscale(target, new_threshold);
                    tracing::info!(id, target_mib = target / MIB, %status, "downscale granted");
                    OutboundKind::DownscaleResult { ok: true, status }
                }
            },
        };
        self.send(kind, id)
    }
}
