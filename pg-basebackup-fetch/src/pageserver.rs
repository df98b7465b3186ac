//! The Neon pageserver source: `basebackup <tenant> <timeline> [<lsn>] --gzip [--replica]`
//! read as a COPY OUT stream, through gzip, straight into PGDATA.
//!
//! The connection is the shared client [`pg_wire`] (the page service accepts
//! simple queries, as its `lease lsn` and the safekeepers' `TIMELINE_STATUS` show), because
//! the `postgres` crate bounds only the TCP connect: a pageserver that accepts and then says
//! nothing would hold the start forever. Here connect, startup and authentication share
//! [`Timeouts::startup`](crate::Timeouts), and every wait for the server once connected
//! (the answer to the command, each read of the stream) is bounded by
//! [`Timeouts::idle`](crate::Timeouts).

use std::io::{self, Read};
use std::path::Path;
use std::time::Instant;

use compute_spec::ids::Lsn;
use compute_spec::spec::ComputeMode;
use compute_spec::validate::NeonStorage;
use pg_wire::{Connection, CopyOut};

use crate::error::{classify_read, classify_wire, BasebackupError};
use crate::progress::Counting;
use crate::unpack::{self, UnpackError};
use crate::{Fetched, Timeouts};
use stage_kit::retry::Progress;

/// What to ask the pageserver for.
pub struct PageserverRequest<'a> {
    /// Tenant, timeline and shard-0 connection string.
    pub storage: &'a NeonStorage,
    /// The compute mode (`--replica` for non-primary modes; sent as `neon.compute_mode`).
    pub mode: ComputeMode,
    /// The LSN (from `sync_safekeepers`); omitted at 0/0, meaning "latest".
    pub lsn: Lsn,
    /// `storage_auth_token`, sent as the password.
    pub token: Option<&'a str>,
}

/// The command text sent to the pageserver.
pub fn command(request: &PageserverRequest<'_>) -> String {
    let storage = request.storage;
    let mut text = format!("basebackup {} {}", storage.tenant_id, storage.timeline_id);
    if request.lsn != Lsn::INVALID {
        text.push_str(&format!(" {}", request.lsn));
    }
    text.push_str(" --gzip");
    if request.mode != ComputeMode::Primary {
        text.push_str(" --replica");
    }
    text
}

/// Fetches the basebackup into the (empty) `pgdata`; bytes from the wire tick `clock`.
pub fn fetch(
    request: &PageserverRequest<'_>,
    pgdata: &Path,
    timeouts: &Timeouts,
    clock: &Progress,
) -> Result<Fetched, BasebackupError> {
    let connstr = request
        .storage
        .pageserver_connstrings
        .first()
        .ok_or_else(|| {
            BasebackupError::Document(
                "the spec names no pageserver: set pageserver_connection_info".into(),
            )
        })?;
    let mut config: postgres::Config = connstr.parse().map_err(|error| {
        BasebackupError::Document(format!(
            "pageserver connection string is not valid: {error}"
        ))
    })?;
    if let Some(token) = request.token {
        config.password(token);
    }
    let options = format!("-c neon.compute_mode={}", request.mode.as_setting());
    let extra = [("application_name", "compute_ctl"), ("options", &options)];
    let started = Instant::now();
    let mut connection = Connection::from_config(&config, &extra, timeouts.startup)
        .map_err(|error| classify_wire(&server_name(error.endpoint()), &error))?;
    let connect_micros = started.elapsed().as_micros() as u64;
    connection.set_deadline(None);
    connection.set_read_timeout(Some(timeouts.idle));
    let server = server_name(connection.endpoint());
    let text = command(request);
    tracing::info!("{server}: {text}");
    let mut copy = connection
        .copy_out(text.as_str())
        .map_err(|error| classify_wire(&server, &error))?;
    // The stream has started: from now on it must keep a minimum rate.
    copy.set_min_rate(timeouts.min_rate);
    let mut stream = CopyStream { copy, done: false };
    let mut wire = Counting::new(&mut stream, "basebackup from the pageserver").ticking(clock);
    let mut gzip = std::io::BufReader::with_capacity(
        unpack::READ_BUFFER,
        flate2::read::GzDecoder::new(&mut wire),
    );
    let unpacked = unpack::unpack(&mut gzip, pgdata).map_err(|error| match error {
        UnpackError::Read(error) => classify_read(&server, error),
        UnpackError::Write(error) => error,
    })?;
    unpack::drain(&mut gzip).map_err(|error| classify_read(&server, error))?;
    drop(gzip);
    unpack::drain(&mut wire).map_err(|error| classify_read(&server, error))?;
    let wire_bytes = Counting::bytes(&wire);
    stream
        .copy
        .finish()
        .map_err(|error| classify_wire(&server, &error))?;
    connection.close();
    Ok(Fetched {
        connect_micros: Some(connect_micros),
        wire_bytes,
        unpacked,
    })
}

/// How errors name the pageserver.
fn server_name(endpoint: &str) -> String {
    format!("pageserver {endpoint}")
}

/// The CopyData payloads of the COPY OUT as one byte stream.
struct CopyStream<'a> {
    copy: CopyOut<'a>,
    done: bool,
}

impl Read for CopyStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while !self.done {
            let n = self.copy.read(buf).map_err(io::Error::other)?;
            if n > 0 {
                return Ok(n);
            }
            if self.copy.next_data().map_err(io::Error::other)?.is_none() {
                self.done = true;
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_has_the_lsn_only_when_known_and_replica_for_standbys() {
        let storage = NeonStorage {
            tenant_id: "3aa8fcc61f6d357410b7de754b1d9001".parse().unwrap(),
            timeline_id: "de5a2f3ab7e1d7cd4e0e6a1c1a5d2f0b".parse().unwrap(),
            protocol: compute_spec::spec::PageserverProtocol::Libpq,
            pageserver_connstrings: vec!["postgresql://no_user@ps:6400".into()],
            pageserver_grpc_urls: Vec::new(),
            stripe_size: None,
            safekeepers: vec![],
        };
        let mut request = PageserverRequest {
            storage: &storage,
            mode: ComputeMode::Primary,
            lsn: Lsn::INVALID,
            token: None,
        };
        let ids = "3aa8fcc61f6d357410b7de754b1d9001 de5a2f3ab7e1d7cd4e0e6a1c1a5d2f0b";
        assert_eq!(command(&request), format!("basebackup {ids} --gzip"));
        request.lsn = "0/16B5A50".parse().unwrap();
        assert_eq!(
            command(&request),
            format!("basebackup {ids} 0/16B5A50 --gzip")
        );
        request.mode = ComputeMode::Replica;
        assert_eq!(
            command(&request),
            format!("basebackup {ids} 0/16B5A50 --gzip --replica")
        );
    }
}
