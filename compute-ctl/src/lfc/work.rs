//! The runs themselves: a prewarm (download, decompress, load) and an offload (read,
//! compress, upload), each timed per phase as upstream reports them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use compute_spec::ComputeDocument;

use super::cache::{self, CacheKind};
use super::transfer;
use super::{storage_target, OffloadState, PrewarmState};
use crate::state::Shared;

fn ms(started: Instant) -> u32 {
    u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX)
}

/// The compute's document and where its cache state lives.
fn compute(shared: &Shared) -> Result<(ComputeDocument, CacheKind), String> {
    let document = shared
        .lock()
        .document
        .clone()
        .ok_or("the compute has no spec yet")?;
    let kind = document
        .spec
        .as_ref()
        .map(cache::kind_of)
        .ok_or("the compute has no spec yet")?;
    Ok((document, kind))
}

/// A prewarm from endpoint storage; `cancel` is checked between the phases and cancels the
/// load's SQL.
pub fn prewarm(shared: &Shared, from_endpoint: Option<&str>, cancel: &AtomicBool) -> PrewarmState {
    match try_prewarm(shared, from_endpoint, cancel) {
        Ok(state) => state,
        Err(error) => PrewarmState::Failed { error },
    }
}

fn try_prewarm(
    shared: &Shared,
    from_endpoint: Option<&str>,
    cancel: &AtomicBool,
) -> Result<PrewarmState, String> {
    let target = storage_target(shared, from_endpoint)?;
    let cancelled = || cancel.load(Ordering::SeqCst);
    if cancelled() {
        return Ok(PrewarmState::Cancelled);
    }
    let (document, kind) = compute(shared)?;
    let started = Instant::now();
    let Some(compressed) = transfer::download(&target)? else {
        tracing::info!(url = %target.url, "no cache state in endpoint storage: prewarm skipped");
        return Ok(PrewarmState::Skipped);
    };
    let state_download_time_ms = ms(started);
    if cancelled() {
        return Ok(PrewarmState::Cancelled);
    }
    let started = Instant::now();
    let Some(state) = transfer::decompress(&compressed, cancel)? else {
        return Ok(PrewarmState::Cancelled);
    };
    let uncompress_time_ms = ms(started);
    let started = Instant::now();
    let Some(loaded) = cache::load_state(&document, kind, &state, cancel)? else {
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

/// An offload to endpoint storage.
pub fn offload(shared: &Shared) -> OffloadState {
    match try_offload(shared) {
        Ok(state) => state,
        Err(error) => OffloadState::Failed { error },
    }
}

fn try_offload(shared: &Shared) -> Result<OffloadState, String> {
    let target = storage_target(shared, None)?;
    let (document, kind) = compute(shared)?;
    let started = Instant::now();
    let Some(state) = cache::read_state(&document, kind)? else {
        tracing::info!("the cache has no state to offload: skipped");
        return Ok(OffloadState::Skipped);
    };
    let state_query_time_ms = ms(started);
    let started = Instant::now();
    let compressed = transfer::compress(&state)?;
    let compress_time_ms = ms(started);
    let started = Instant::now();
    transfer::upload(&target, &compressed)?;
    tracing::info!(
        bytes = state.len(),
        compressed = compressed.len(),
        url = %target.url,
        "cache state offloaded"
    );
    Ok(OffloadState::Completed {
        state_query_time_ms,
        compress_time_ms,
        state_upload_time_ms: ms(started),
    })
}
