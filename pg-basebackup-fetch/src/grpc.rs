//! The Neon pageserver over gRPC, for a spec that prefers it
//! (`pageserver_connection_info.prefer_protocol: "grpc"`), as upstream: `GetBaseBackup` from
//! shard 0's first pageserver (`grpc_url`), `lsn` as the document says (0: the latest),
//! `replica` for every mode but Primary, a gzip archive; tenant, timeline, shard
//! (`00<count>`) and the storage token (`Bearer`) in the request metadata
//! ([`pg_page_grpc`]).
//!
//! The same guarantees as the libpq source ([`crate::pageserver`]): connecting within
//! [`Timeouts::startup`](crate::Timeouts), the answer and every chunk within
//! [`Timeouts::idle`](crate::Timeouts), the minimum rate once the stream has started, the
//! same unpacker (no escape, caps) and the late-error check (the stream is read to its end,
//! so a failure the server reports after the archive is not missed). A broken, silent or
//! slow connection and a status the server sends for a passing state (`UNAVAILABLE`, …) are
//! retried; refused credentials (`UNAUTHENTICATED`, `PERMISSION_DENIED`) and the server's
//! other answers are final, as a libpq error message is.

use std::io;
use std::path::Path;

use compute_spec::ids::Lsn;
use compute_spec::shard::ShardIndex;
use compute_spec::spec::ComputeMode;
use compute_spec::validate::NeonStorage;
use pg_page_grpc::{BaseBackupRequest, BaseBackupStream, Deadlines, GrpcError, ShardTarget};

use crate::error::{classify_read, find, BasebackupError};
use crate::progress::Counting;
use crate::unpack::{self, UnpackError};
use crate::{Fetched, Timeouts};
use stage_kit::retry::Progress;

/// What to ask the pageserver for.
pub struct GrpcRequest<'a> {
    /// Tenant, timeline and the shards' gRPC URLs.
    pub storage: &'a NeonStorage,
    /// `pageserver_connection_info.shard_count` (0 unsharded): shard 0's index is
    /// `00<count>`.
    pub shard_count: u8,
    /// The compute mode (`replica` for non-primary modes).
    pub mode: ComputeMode,
    /// The LSN (from `sync_safekeepers`); 0/0 asks for the latest.
    pub lsn: Lsn,
    /// `storage_auth_token`, sent as `authorization: Bearer <token>`.
    pub token: Option<&'a str>,
}

/// Fetches the basebackup into the (empty) `pgdata`; bytes from the wire tick `clock`.
pub fn fetch(
    request: &GrpcRequest<'_>,
    pgdata: &Path,
    timeouts: &Timeouts,
    clock: &Progress,
) -> Result<Fetched, BasebackupError> {
    let storage = request.storage;
    let url = storage.pageserver_grpc_urls.first().ok_or_else(|| {
        BasebackupError::Document(
            "the spec names no gRPC pageserver: give shard 0 a grpc_url in \
             pageserver_connection_info"
                .into(),
        )
    })?;
    let target = ShardTarget {
        url: url.clone(),
        tenant_id: storage.tenant_id,
        timeline_id: storage.timeline_id,
        shard: ShardIndex {
            number: 0,
            count: request.shard_count,
        },
    };
    let server = format!("pageserver {url}");
    let asked = BaseBackupRequest {
        lsn: request.lsn.0,
        replica: request.mode != ComputeMode::Primary,
        gzip: true,
    };
    let deadlines = Deadlines {
        connect: timeouts.startup,
        answer: timeouts.idle,
        idle: timeouts.idle,
        min_rate: timeouts.min_rate,
    };
    tracing::info!(
        "{server} (gRPC): GetBaseBackup {}/{} shard {} lsn {} replica {} gzip",
        storage.tenant_id,
        storage.timeline_id,
        target.shard,
        request.lsn,
        asked.replica
    );
    let mut stream =
        BaseBackupStream::open(&target, request.token, asked, deadlines).map_err(classify)?;
    let connect_micros = u64::try_from(stream.connected_after().as_micros()).unwrap_or(u64::MAX);
    let mut wire = Counting::new(&mut stream, "basebackup from the pageserver").ticking(clock);
    let mut gzip =
        io::BufReader::with_capacity(unpack::READ_BUFFER, flate2::read::GzDecoder::new(&mut wire));
    let read_error = |error: io::Error| match find::<GrpcError>(&error) {
        Some(error) => classify_ref(error),
        None => classify_read(&server, error),
    };
    let unpacked = unpack::unpack(&mut gzip, pgdata).map_err(|error| match error {
        UnpackError::Read(error) => read_error(error),
        UnpackError::Write(error) => error,
    })?;
    // The stream to its end: a status after the archive (a late failure) is not missed.
    unpack::drain(&mut gzip).map_err(read_error)?;
    drop(gzip);
    unpack::drain(&mut wire).map_err(read_error)?;
    Ok(Fetched {
        connect_micros: Some(connect_micros),
        wire_bytes: Counting::bytes(&wire),
        unpacked,
    })
}

/// A gRPC failure as this stage's error: refused credentials are final ([`BasebackupError::Auth`]);
/// a failure worth another attempt is a [`BasebackupError::Network`] (retried); any other
/// answer of the server is final ([`BasebackupError::Server`]); a request that cannot be made
/// (a token that cannot be metadata) is the spec's ([`BasebackupError::Document`]).
pub fn classify(error: GrpcError) -> BasebackupError {
    classify_ref(&error)
}

fn classify_ref(error: &GrpcError) -> BasebackupError {
    let server = format!("pageserver {}", error.server());
    let detail = error.detail();
    if error.is_auth() {
        return BasebackupError::Auth {
            server,
            message: detail,
        };
    }
    if error.is_transient() {
        return BasebackupError::Network { server, detail };
    }
    match error {
        GrpcError::Invalid { .. } => BasebackupError::Document(format!("{server}: {detail}")),
        _ => BasebackupError::Server {
            server,
            message: detail,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_spec::ErrorKind;
    use pg_page_grpc::Code;

    fn status(code: Code, message: &str) -> BasebackupError {
        classify(GrpcError::Status {
            server: "127.0.0.1:9".into(),
            code,
            message: message.into(),
        })
    }

    #[test]
    fn statuses_map_to_the_stages_kinds() {
        let denied = status(Code::PermissionDenied, "not valid for tenant");
        assert_eq!(denied.kind(), ErrorKind::Auth);
        assert!(!denied.is_retryable());
        assert_eq!(
            denied.to_string(),
            "pageserver 127.0.0.1:9 rejected the credentials: PERMISSION_DENIED: not valid for \
             tenant; check the token or password"
        );
        assert_eq!(
            status(Code::Unauthenticated, "none").kind(),
            ErrorKind::Auth
        );
        let unknown = status(Code::NotFound, "timeline x not found");
        assert_eq!(unknown.kind(), ErrorKind::Server);
        assert!(!unknown.is_retryable());
        let down = status(Code::Unavailable, "shutting down");
        assert_eq!(down.kind(), ErrorKind::Network);
        assert!(down.is_retryable());
        let cut = classify(GrpcError::Transport {
            server: "127.0.0.1:9".into(),
            detail: "connection reset".into(),
        });
        assert!(cut.is_retryable());
        assert_eq!(
            cut.to_string(),
            "pageserver 127.0.0.1:9: the connection broke: connection reset"
        );
    }
}
