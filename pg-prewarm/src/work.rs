//! The runs themselves: a prewarm (download, decompress, load) and an offload (read,
//! compress, upload), each timed per phase as upstream reports them. The state travels to and
//! from endpoint storage, or a local file holding the same bytes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use compute_spec::ComputeDocument;

use crate::cache::{self, CacheKind};
use crate::{transfer, Error, OffloadState, PrewarmState, StorageTarget};

/// Where a cache state is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// Endpoint storage (what compute-ctl uses).
    Storage(StorageTarget),
    /// A local file with the bytes endpoint storage would hold (the zstd-compressed state).
    File(PathBuf),
}

fn ms(started: Instant) -> u32 {
    u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX)
}

/// Where the compute's cache state lives: the `neon` extension's LFC for a spec with
/// pageservers, shared buffers otherwise.
fn kind(document: &ComputeDocument) -> Result<CacheKind, Error> {
    document
        .spec
        .as_ref()
        .map(cache::kind_of)
        .ok_or(Error::NoSpec)
}

/// A state that came from `location` is named by it when it is bad.
fn from(location: &Location) -> impl Fn(Error) -> Error + '_ {
    move |error| match (error, location) {
        (
            Error::BadState {
                file: None,
                message,
            },
            Location::File(path),
        ) => Error::BadState {
            file: Some(path.clone()),
            message,
        },
        (error, _) => error,
    }
}

/// A prewarm of the compute of `document` from the state at `location`: `skipped` when
/// endpoint storage holds none; `cancel` is checked between the phases and cancels the
/// load's SQL (`cancelled`).
pub fn prewarm(
    document: &ComputeDocument,
    location: &Location,
    cancel: &AtomicBool,
) -> Result<PrewarmState, Error> {
    let cancelled = || cancel.load(Ordering::SeqCst);
    if cancelled() {
        return Ok(PrewarmState::Cancelled);
    }
    let kind = kind(document)?;
    let started = Instant::now();
    let compressed = match location {
        Location::Storage(target) => match transfer::download(target)? {
            Some(compressed) => compressed,
            None => {
                tracing::info!(url = %target.url, "no cache state in endpoint storage: prewarm skipped");
                return Ok(PrewarmState::Skipped);
            }
        },
        Location::File(path) => transfer::read_file(path)?,
    };
    let state_download_time_ms = ms(started);
    if cancelled() {
        return Ok(PrewarmState::Cancelled);
    }
    let started = Instant::now();
    let Some(state) = transfer::decompress(&compressed, cancel).map_err(from(location))? else {
        return Ok(PrewarmState::Cancelled);
    };
    let uncompress_time_ms = ms(started);
    let started = Instant::now();
    let Some(loaded) = cache::load_state(document, kind, &state, cancel).map_err(from(location))?
    else {
        return Ok(PrewarmState::Cancelled);
    };
    Ok(PrewarmState::Completed {
        total: loaded.total,
        prewarmed: loaded.prewarmed,
        skipped: loaded.skipped,
        state_download_time_ms,
        uncompress_time_ms,
        prewarm_time_ms: ms(started),
    })
}

/// An offload of the cache state of the compute of `document` to `location`: `skipped` (and
/// nothing written) when the cache has no state.
pub fn offload(document: &ComputeDocument, location: &Location) -> Result<OffloadState, Error> {
    let kind = kind(document)?;
    let started = Instant::now();
    let Some(state) = cache::read_state(document, kind)? else {
        tracing::info!("the cache has no state to offload: skipped");
        return Ok(OffloadState::Skipped);
    };
    let state_query_time_ms = ms(started);
    let started = Instant::now();
    let compressed = transfer::compress(&state)?;
    let compress_time_ms = ms(started);
    let started = Instant::now();
    match location {
        Location::Storage(target) => transfer::upload(target, &compressed)?,
        Location::File(path) => transfer::write_file(path, &compressed)?,
    }
    tracing::info!(
        bytes = state.len(),
        compressed = compressed.len(),
        to = ?location,
        "cache state offloaded"
    );
    Ok(OffloadState::Completed {
        state_query_time_ms,
        compress_time_ms,
        state_upload_time_ms: ms(started),
    })
}
