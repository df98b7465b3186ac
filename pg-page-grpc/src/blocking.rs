//! The calls the stages make, for synchronous callers: each runs the async client on a
//! single-threaded runtime of its own, every wait for the server under a deadline.
//!
//! * [`BaseBackupStream`]: `GetBaseBackup` as an [`std::io::Read`] of the archive's bytes —
//!   connected within [`Deadlines::connect`], the answer within [`Deadlines::answer`], each
//!   chunk within [`Deadlines::idle`], and once the stream has started at least
//!   [`Deadlines::min_rate`]. The network is read only while the caller reads (HTTP/2 flow
//!   control holds the server back meanwhile), so a slow disk is never taken for a silent
//!   server. A failure reads as an `io::Error` whose source is the [`GrpcError`].
//! * [`lease_lsn`]: one `LeaseLsn`, its answer an expiry or a refusal.

use std::io::{self, Read};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, Bytes};
use tokio::runtime::Runtime;
use tonic::{Code, Streaming};

use crate::client::{PageClient, ShardTarget};
use crate::proto::LeaseLsnRequest;
use crate::proto::{BaseBackupCompression, GetBaseBackupRequest, GetBaseBackupResponseChunk};
use crate::GrpcError;

/// The time limits of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// TCP connect and the HTTP/2 handshake.
    pub connect: Duration,
    /// The server's answer to the request (its headers; a basebackup waits for its LSN here).
    pub answer: Duration,
    /// The longest silence between two chunks of a stream.
    pub idle: Duration,
    /// The least a stream must bring per window once started, `(bytes, window)`; None: no
    /// minimum.
    pub min_rate: Option<(u64, Duration)>,
}

/// What to ask `GetBaseBackup` for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseBackupRequest {
    /// The LSN; 0 means the latest the pageserver has.
    pub lsn: u64,
    /// For a standby (a Replica or Static compute): no logical replication slots.
    pub replica: bool,
    /// The archive gzip-compressed (what the stages ask for, as upstream).
    pub gzip: bool,
}

fn runtime(server: &str) -> Result<Runtime, GrpcError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| GrpcError::Invalid {
            server: server.to_string(),
            detail: format!("cannot start the gRPC client's runtime: {error}"),
        })
}

/// A `GetBaseBackup` stream, read as bytes.
pub struct BaseBackupStream {
    runtime: Runtime,
    // Kept for the connection's life.
    _client: PageClient,
    stream: Streaming<GetBaseBackupResponseChunk>,
    chunk: Bytes,
    server: String,
    idle: Duration,
    min_rate: Option<MinRate>,
    connected_after: Duration,
    done: bool,
}

impl std::fmt::Debug for BaseBackupStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseBackupStream")
            .field("server", &self.server)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl BaseBackupStream {
    /// Connects to `target` and asks for the basebackup; returns once the server has answered
    /// (its stream has started).
    pub fn open(
        target: &ShardTarget,
        token: Option<&str>,
        request: BaseBackupRequest,
        deadlines: Deadlines,
    ) -> Result<BaseBackupStream, GrpcError> {
        let server = target.url.to_string();
        let runtime = runtime(&server)?;
        let started = Instant::now();
        let mut client = runtime.block_on(PageClient::connect(target, token, deadlines.connect))?;
        let connected_after = started.elapsed();
        let message = GetBaseBackupRequest {
            lsn: request.lsn,
            replica: request.replica,
            full: false,
            compression: if request.gzip {
                BaseBackupCompression::Gzip
            } else {
                BaseBackupCompression::None
            } as i32,
        };
        let call = client
            .inner
            .get_base_backup(client.metadata.request(message));
        let answered =
            runtime.block_on(async { tokio::time::timeout(deadlines.answer, call).await });
        let stream = match answered {
            Err(_) => {
                return Err(GrpcError::Timeout {
                    server,
                    what: "the answer to GetBaseBackup",
                    timeout: deadlines.answer,
                })
            }
            Ok(Err(status)) => return Err(GrpcError::from_status(&server, status)),
            Ok(Ok(response)) => response.into_inner(),
        };
        let min_rate = deadlines.min_rate.map(|(bytes, window)| MinRate {
            bytes,
            window,
            since: Instant::now(),
            received: 0,
        });
        Ok(BaseBackupStream {
            runtime,
            _client: client,
            stream,
            chunk: Bytes::new(),
            server,
            idle: deadlines.idle,
            min_rate,
            connected_after,
            done: false,
        })
    }

    /// How long connecting took (TCP and the HTTP/2 handshake).
    pub fn connected_after(&self) -> Duration {
        self.connected_after
    }

    /// The pageserver, `host:port`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The next chunk: `Ok(false)` at the end of the stream (the server's OK status).
    fn next_chunk(&mut self) -> Result<bool, GrpcError> {
        let (idle, stream) = (self.idle, &mut self.stream);
        let message = self
            .runtime
            .block_on(async { tokio::time::timeout(idle, stream.message()).await });
        match message {
            Err(_) => Err(GrpcError::Timeout {
                server: self.server.clone(),
                what: "the next chunk of the basebackup",
                timeout: self.idle,
            }),
            Ok(Err(status)) => Err(GrpcError::from_status(&self.server, status)),
            Ok(Ok(None)) => Ok(false),
            Ok(Ok(Some(chunk))) => {
                if let Some(rate) = &mut self.min_rate {
                    rate.note(&self.server, chunk.chunk.len())?;
                }
                self.chunk = chunk.chunk;
                Ok(true)
            }
        }
    }
}

impl Read for BaseBackupStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.chunk.is_empty() {
            if self.done {
                return Ok(0);
            }
            if !self.next_chunk().map_err(io::Error::other)? {
                self.done = true;
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}

/// The least a stream must deliver per window, and what it delivered in the current one
/// (checked as chunks arrive; a silence is the idle deadline's).
#[derive(Clone, Copy, Debug)]
struct MinRate {
    bytes: u64,
    window: Duration,
    since: Instant,
    received: u64,
}

impl MinRate {
    fn note(&mut self, server: &str, n: usize) -> Result<(), GrpcError> {
        self.received = self.received.saturating_add(n as u64);
        if self.since.elapsed() < self.window {
            return Ok(());
        }
        if self.received < self.bytes {
            return Err(GrpcError::TooSlow {
                server: server.to_string(),
                received: self.received,
                window: self.window,
                minimum: self.bytes,
            });
        }
        self.since = Instant::now();
        self.received = 0;
        Ok(())
    }
}

/// A pageserver's answer to `LeaseLsn`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseAnswer {
    /// Leased until this time.
    Until(SystemTime),
    /// Refused (`FAILED_PRECONDITION`): the LSN is below the GC cutoff; the server's message.
    Refused(String),
}

/// The latest expiry taken: the end of the year 9999 (RFC 3339 has four-digit years).
const LATEST_SECONDS: i64 = 253_402_300_799;

/// Leases `lsn` on `target`: connected within `connect`, answered within `answer`.
pub fn lease_lsn(
    target: &ShardTarget,
    token: Option<&str>,
    lsn: u64,
    connect: Duration,
    answer: Duration,
) -> Result<LeaseAnswer, GrpcError> {
    let server = target.url.to_string();
    let runtime = runtime(&server)?;
    runtime.block_on(async {
        let mut client = PageClient::connect(target, token, connect).await?;
        let call = client
            .inner
            .lease_lsn(client.metadata.request(LeaseLsnRequest { lsn }));
        let response = match tokio::time::timeout(answer, call).await {
            Err(_) => {
                return Err(GrpcError::Timeout {
                    server,
                    what: "the answer to LeaseLsn",
                    timeout: answer,
                })
            }
            // The server's refusal (not a status tonic made of a transport error).
            Ok(Err(status))
                if status.code() == Code::FailedPrecondition
                    && std::error::Error::source(&status).is_none() =>
            {
                return Ok(LeaseAnswer::Refused(status.message().to_string()))
            }
            Ok(Err(status)) => return Err(GrpcError::from_status(&server, status)),
            Ok(Ok(response)) => response.into_inner(),
        };
        let Some(expires) = response.expires else {
            return Err(GrpcError::Answer {
                server,
                detail: "answered LeaseLsn without an expiry".to_string(),
            });
        };
        expiry(&expires)
            .map(LeaseAnswer::Until)
            .ok_or_else(|| GrpcError::Answer {
                server,
                detail: format!(
                    "answered LeaseLsn with the expiry {}s {}ns, not a time between 1970 and the \
                 year 9999",
                    expires.seconds, expires.nanos
                ),
            })
    })
}

/// `timestamp` as a time, if it is one between the epoch and the end of the year 9999.
fn expiry(timestamp: &prost_types::Timestamp) -> Option<SystemTime> {
    let seconds = u64::try_from(timestamp.seconds).ok()?;
    let nanos = u32::try_from(timestamp.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    if timestamp.seconds > LATEST_SECONDS {
        return None;
    }
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_are_times_between_1970_and_9999() {
        let at = |seconds, nanos| expiry(&prost_types::Timestamp { seconds, nanos });
        assert_eq!(
            at(1_700_000_000, 5),
            Some(SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5))
        );
        assert!(at(LATEST_SECONDS, 999_999_999).is_some());
        for (seconds, nanos) in [
            (-1, 0),
            (LATEST_SECONDS + 1, 0),
            (1, -1),
            (1, 1_000_000_000),
        ] {
            assert_eq!(at(seconds, nanos), None, "{seconds} {nanos}");
        }
    }

    #[test]
    fn a_trickle_fails_its_minimum_rate_once_a_window_ends_short() {
        let mut rate = MinRate {
            bytes: 100,
            window: Duration::from_millis(20),
            since: Instant::now(),
            received: 0,
        };
        rate.note("ps:1", 10).unwrap();
        std::thread::sleep(Duration::from_millis(25));
        let error = rate.note("ps:1", 10).unwrap_err();
        assert!(
            matches!(error, GrpcError::TooSlow { received: 20, .. }),
            "{error:?}"
        );
        let mut enough = MinRate {
            received: 0,
            since: Instant::now() - Duration::from_millis(25),
            ..rate
        };
        enough.note("ps:1", 100).unwrap();
        assert_eq!(enough.received, 0, "a new window starts");
    }
}
