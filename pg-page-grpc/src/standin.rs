//! A stand-in pageserver for tests and benchmarks (feature `stand-in`): a real tonic gRPC
//! server on `127.0.0.1` that serves one shard of one timeline the way the pageserver's page
//! service does, and misbehaves on request.
//!
//! Like the real server it reads the tenant, timeline and shard from the request metadata
//! (`INVALID_ARGUMENT` when one is missing or malformed), checks `authorization: Bearer
//! <token>` when it has a token (`UNAUTHENTICATED` without one, `INVALID_ARGUMENT` for a
//! malformed header, and [`Config::wrong_token`] — `PERMISSION_DENIED` by default — for
//! another token), serves `GetBaseBackup` on shard zero only (`INVALID_ARGUMENT` elsewhere),
//! answers `NOT_FOUND` for a timeline or shard it does not hold, and streams the archive in
//! 256 KiB chunks from a task of its own through a small channel (so a slow reader holds it
//! back). `LeaseLsn` grants [`Config::lease`] from now.
//!
//! Each request takes the next [`Behaviour`] of its plan ([`StandIn::plan`]; when the plan
//! is empty it serves): fall silent before or after the request, stall or be cut (the TCP
//! connection shut down) after some bytes, trickle, or answer a status at once or after some
//! bytes. Every request is recorded ([`StandIn::seen`]) before it is checked.

use std::collections::VecDeque;
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::StreamExt as _;
use tonic::metadata::MetadataMap;
use tonic::transport::Server;
use tonic::{Code, Request, Response, Status};

use crate::proto::page_service_server::{PageService, PageServiceServer};
use crate::proto::{
    GetBaseBackupRequest, GetBaseBackupResponseChunk, GetDbSizeRequest, GetDbSizeResponse,
    GetPageRequest, GetPageResponse, GetRelSizeRequest, GetRelSizeResponse, GetSlruSegmentRequest,
    GetSlruSegmentResponse, LeaseLsnRequest, LeaseLsnResponse,
};

/// The size of the chunks the real pageserver sends.
pub const CHUNK: usize = 256 << 10;

/// What the stand-in holds and accepts.
#[derive(Clone, Debug)]
pub struct Config {
    /// The tenant it holds (32 hex digits).
    pub tenant_id: String,
    /// The timeline it holds.
    pub timeline_id: String,
    /// The shard it holds, as metadata names it (`0000` unsharded, `0104` shard 1 of 4).
    pub shard: String,
    /// The token it accepts; None: it checks none.
    pub token: Option<String>,
    /// Its answer to another token than [`Config::token`].
    pub wrong_token: Code,
    /// The archive `GetBaseBackup` streams.
    pub archive: Bytes,
    /// The size of the chunks it is streamed in.
    pub chunk: usize,
    /// How long a lease lasts.
    pub lease: Duration,
    /// Grant leases that ended [`Config::lease`] ago instead (a confused server).
    pub lease_already_ended: bool,
}

impl Config {
    /// Shard `0000` of `tenant_id`/`timeline_id`, serving `archive`, accepting `token`.
    pub fn new(tenant_id: &str, timeline_id: &str, token: Option<&str>, archive: Vec<u8>) -> Self {
        Config {
            tenant_id: tenant_id.to_string(),
            timeline_id: timeline_id.to_string(),
            shard: "0000".to_string(),
            token: token.map(str::to_string),
            wrong_token: Code::PermissionDenied,
            archive: Bytes::from(archive),
            chunk: CHUNK,
            lease: Duration::from_secs(600),
            lease_already_ended: false,
        }
    }
}

/// How the stand-in answers one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// As the real server does.
    Serve,
    /// The connection is accepted and never served (no HTTP/2 at all). Taken by the next
    /// connection rather than the next request.
    SilentAtStartup,
    /// The request is read and never answered.
    SilentAfterRequest,
    /// This many bytes of the archive, then silence (the connection stays open).
    StallAfter(usize),
    /// This many bytes, then the TCP connection is shut down (a crash, a cut link).
    CutAfter(usize),
    /// The archive in pieces of `piece` bytes, one every `every`.
    Trickle {
        /// Bytes per piece.
        piece: usize,
        /// The pause after each piece.
        every: Duration,
    },
    /// A status at once.
    Fail(Code, String),
    /// This many bytes, then a status (a failure in the middle of the archive).
    FailAfter(usize, Code, String),
}

/// One request as the stand-in received it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// `GetBaseBackup`, `LeaseLsn`, or another method's name.
    pub method: &'static str,
    /// The `neon-tenant-id`, `neon-timeline-id`, `neon-shard-id` and `authorization`
    /// metadata, when present and text.
    pub tenant_id: Option<String>,
    /// See [`Seen::tenant_id`].
    pub timeline_id: Option<String>,
    /// See [`Seen::tenant_id`].
    pub shard_id: Option<String>,
    /// See [`Seen::tenant_id`].
    pub authorization: Option<String>,
    /// The request's LSN.
    pub lsn: u64,
    /// `GetBaseBackup`'s `replica`.
    pub replica: bool,
    /// `GetBaseBackup`'s `full`.
    pub full: bool,
    /// `GetBaseBackup`'s `compression` (2: gzip).
    pub compression: i32,
    /// When it arrived, from the stand-in's start.
    pub at: Duration,
}

/// What the server's tasks share with the test.
struct Shared {
    config: Config,
    plan: Mutex<VecDeque<Behaviour>>,
    seen: Mutex<Vec<Seen>>,
    /// A handle on every accepted connection (to cut it, and to close all at the end).
    sockets: Mutex<Vec<std::net::TcpStream>>,
    /// Connections never served ([`Behaviour::SilentAtStartup`]), held open.
    parked: Mutex<Vec<std::net::TcpStream>>,
    connections: AtomicUsize,
    started: std::time::Instant,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn next(&self) -> Behaviour {
        lock(&self.plan).pop_front().unwrap_or(Behaviour::Serve)
    }

    /// Shuts the connection from `peer` down, both ways.
    fn cut(&self, peer: Option<SocketAddr>) {
        for socket in lock(&self.sockets).iter() {
            if peer.is_none() || socket.peer_addr().ok() == peer {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }

    /// An accepted connection: recorded, then served, or parked when the plan says so.
    fn accept(
        &self,
        accepted: std::io::Result<tokio::net::TcpStream>,
    ) -> Option<std::io::Result<tokio::net::TcpStream>> {
        let stream = match accepted {
            Ok(stream) => stream,
            Err(error) => return Some(Err(error)),
        };
        self.connections.fetch_add(1, Ordering::SeqCst);
        let _ = stream.set_nodelay(true);
        let handle = stream
            .into_std()
            .and_then(|std| Ok((std.try_clone()?, std)));
        let (handle, std) = match handle {
            Ok(pair) => pair,
            Err(error) => return Some(Err(error)),
        };
        lock(&self.sockets).push(handle);
        let mut plan = lock(&self.plan);
        if plan.front() == Some(&Behaviour::SilentAtStartup) {
            plan.pop_front();
            lock(&self.parked).push(std);
            return None;
        }
        Some(tokio::net::TcpStream::from_std(std))
    }
}

/// A running stand-in; stopped (every connection closed) on drop.
pub struct StandIn {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandIn")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl StandIn {
    /// Starts serving `config` on a free port of 127.0.0.1.
    pub fn start(config: Config) -> std::io::Result<StandIn> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            config,
            plan: Mutex::new(VecDeque::new()),
            seen: Mutex::new(Vec::new()),
            sockets: Mutex::new(Vec::new()),
            parked: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            started: std::time::Instant::now(),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = watch::channel(false);
        let serving = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("grpc-standin-{port}"))
            .spawn(move || runtime.block_on(serve(listener, serving, stopped)))?;
        Ok(StandIn {
            port,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// The behaviours of the next requests, in order (after those still planned).
    pub fn plan(&self, behaviours: impl IntoIterator<Item = Behaviour>) {
        lock(&self.shared.plan).extend(behaviours);
    }

    /// Its URL as a spec gives it: `grpc://no_user@127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("grpc://no_user@127.0.0.1:{}", self.port)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.shared.seen).clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.shared.cut(None);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves until `stopped`; then waits at most a second for connections to end.
async fn serve(listener: TcpListener, shared: Arc<Shared>, stopped: watch::Receiver<bool>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let accepting = shared.clone();
    let incoming =
        TcpListenerStream::new(listener).filter_map(move |accepted| accepting.accept(accepted));
    let service = PageServiceServer::new(Service { shared });
    let mut shutdown = stopped.clone();
    let mut deadline = stopped;
    let serving = Server::builder().serve_with_incoming_shutdown(service, incoming, async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    });
    tokio::select! {
        _ = serving => {}
        _ = async move {
            let _ = deadline.wait_for(|stop| *stop).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        } => {}
    }
}

/// The service: each request checked as the real server checks it, then answered as planned.
struct Service {
    shared: Arc<Shared>,
}

fn text(metadata: &MetadataMap, name: &str) -> Option<String> {
    Some(metadata.get(name)?.to_str().ok()?.to_string())
}

fn hex_of_length(text: &str, length: usize) -> bool {
    text.len() == length && text.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Service {
    /// Records the request, then checks its metadata and token; the behaviour planned for it.
    fn receive<T>(&self, request: &Request<T>, mut seen: Seen) -> Result<Behaviour, Status> {
        let metadata = request.metadata();
        seen.tenant_id = text(metadata, "neon-tenant-id");
        seen.timeline_id = text(metadata, "neon-timeline-id");
        seen.shard_id = text(metadata, "neon-shard-id");
        seen.authorization = text(metadata, "authorization");
        seen.at = self.shared.started.elapsed();
        let method = seen.method;
        lock(&self.shared.seen).push(seen.clone());
        let behaviour = self.shared.next();
        let config = &self.shared.config;
        let id = |value: &Option<String>, name: &str, length: usize| {
            let value = value
                .as_deref()
                .ok_or_else(|| Status::invalid_argument(format!("missing {name}")))?;
            match hex_of_length(value, length) {
                true => Ok(value.to_ascii_lowercase()),
                false => Err(Status::invalid_argument(format!("invalid {name}"))),
            }
        };
        let tenant = id(&seen.tenant_id, "neon-tenant-id", 32)?;
        let timeline = id(&seen.timeline_id, "neon-timeline-id", 32)?;
        let shard = id(&seen.shard_id, "neon-shard-id", 4)?;
        if let Some(token) = &config.token {
            let header = seen
                .authorization
                .as_deref()
                .ok_or_else(|| Status::unauthenticated("no authorization header"))?;
            let given = header
                .strip_prefix("Bearer ")
                .ok_or_else(|| Status::invalid_argument("invalid authorization header"))?;
            if given.trim() != token {
                return Err(Status::new(
                    config.wrong_token,
                    format!("the token is not valid for tenant {tenant}"),
                ));
            }
        }
        if method == "GetBaseBackup" && !shard.starts_with("00") {
            return Err(Status::invalid_argument(format!(
                "request only valid on shard zero (requested shard {shard})"
            )));
        }
        if tenant != config.tenant_id || timeline != config.timeline_id {
            return Err(Status::not_found(format!(
                "timeline {tenant}/{timeline} not found"
            )));
        }
        if shard != config.shard {
            return Err(Status::not_found(format!(
                "tenant shard {tenant}-{shard} is not attached here"
            )));
        }
        match behaviour {
            Behaviour::Fail(code, message) => Err(Status::new(code, message)),
            other => Ok(other),
        }
    }
}

/// Sends the archive into `sender` as `behaviour` says.
async fn stream_archive(
    shared: Arc<Shared>,
    behaviour: Behaviour,
    peer: Option<SocketAddr>,
    sender: mpsc::Sender<Result<GetBaseBackupResponseChunk, Status>>,
) {
    let archive = shared.config.archive.clone();
    let (limit, piece, pause) = match &behaviour {
        Behaviour::StallAfter(bytes)
        | Behaviour::CutAfter(bytes)
        | Behaviour::FailAfter(bytes, _, _) => (*bytes, shared.config.chunk, None),
        Behaviour::Trickle { piece, every } => (usize::MAX, (*piece).max(1), Some(*every)),
        _ => (usize::MAX, shared.config.chunk, None),
    };
    let end = archive.len().min(limit);
    let mut sent = 0;
    while sent < end {
        let n = piece.min(end - sent);
        let chunk = GetBaseBackupResponseChunk {
            chunk: archive.slice(sent..sent + n),
        };
        if sender.send(Ok(chunk)).await.is_err() {
            return;
        }
        sent += n;
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
    }
    match behaviour {
        Behaviour::StallAfter(_) => sender.closed().await,
        Behaviour::CutAfter(_) => {
            // Let the bytes leave first: the client must see a stream that started.
            tokio::time::sleep(Duration::from_millis(100)).await;
            shared.cut(peer);
            sender.closed().await;
        }
        Behaviour::FailAfter(_, code, message) => {
            let _ = sender.send(Err(Status::new(code, message))).await;
        }
        _ => {}
    }
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl PageService for Service {
    type GetBaseBackupStream = ReceiverStream<Result<GetBaseBackupResponseChunk, Status>>;
    type GetPagesStream = ReceiverStream<Result<GetPageResponse, Status>>;

    async fn get_base_backup(
        &self,
        request: Request<GetBaseBackupRequest>,
    ) -> Answer<Self::GetBaseBackupStream> {
        let body = *request.get_ref();
        let seen = Seen {
            method: "GetBaseBackup",
            lsn: body.lsn,
            replica: body.replica,
            full: body.full,
            compression: body.compression,
            ..Seen::default()
        };
        let behaviour = self.receive(&request, seen)?;
        if behaviour == Behaviour::SilentAfterRequest {
            std::future::pending::<()>().await;
        }
        let (sender, receiver) = mpsc::channel(4);
        let peer = request.remote_addr();
        tokio::spawn(stream_archive(self.shared.clone(), behaviour, peer, sender));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn lease_lsn(&self, request: Request<LeaseLsnRequest>) -> Answer<LeaseLsnResponse> {
        let lsn = request.get_ref().lsn;
        let seen = Seen {
            method: "LeaseLsn",
            lsn,
            ..Seen::default()
        };
        let behaviour = self.receive(&request, seen)?;
        if behaviour == Behaviour::SilentAfterRequest {
            std::future::pending::<()>().await;
        }
        if lsn == 0 {
            return Err(Status::invalid_argument("invalid LSN 0"));
        }
        let config = &self.shared.config;
        let expires = match config.lease_already_ended {
            true => SystemTime::now() - config.lease,
            false => SystemTime::now() + config.lease,
        };
        Ok(Response::new(LeaseLsnResponse {
            expires: Some(prost_types::Timestamp::from(expires)),
        }))
    }

    async fn get_db_size(&self, request: Request<GetDbSizeRequest>) -> Answer<GetDbSizeResponse> {
        Err(self.unserved(&request, "GetDbSize"))
    }

    async fn get_pages(
        &self,
        request: Request<tonic::Streaming<GetPageRequest>>,
    ) -> Answer<Self::GetPagesStream> {
        Err(self.unserved(&request, "GetPages"))
    }

    async fn get_rel_size(
        &self,
        request: Request<GetRelSizeRequest>,
    ) -> Answer<GetRelSizeResponse> {
        Err(self.unserved(&request, "GetRelSize"))
    }

    async fn get_slru_segment(
        &self,
        request: Request<GetSlruSegmentRequest>,
    ) -> Answer<GetSlruSegmentResponse> {
        Err(self.unserved(&request, "GetSlruSegment"))
    }
}

impl Service {
    /// A method the stand-in does not serve: recorded, answered `UNIMPLEMENTED`.
    fn unserved<T>(&self, request: &Request<T>, method: &'static str) -> Status {
        let seen = Seen {
            method,
            ..Seen::default()
        };
        match self.receive(request, seen) {
            Err(status) => status,
            Ok(_) => Status::unimplemented(format!("the stand-in does not serve {method}")),
        }
    }
}
