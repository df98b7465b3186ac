//! Endpoint storage over HTTP (reference §6): `GET`/`PUT` of the compressed cache state at
//! [`StorageTarget::url`] with `Authorization: Bearer <token>`, and the zstd (de)compression.
//!
//! Every request has a deadline, a downloaded body a size cap, and errors name the URL (which
//! holds no secret) and the status, never the token.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::StorageTarget;

/// The whole of one request, body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// The largest state accepted from endpoint storage (compressed).
const MAX_STATE: u64 = 1 << 30;
/// The largest state after decompression.
const MAX_UNCOMPRESSED: u64 = 4 << 30;
/// zstd level (upstream uses the default).
const LEVEL: i32 = 3;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .build()
        .into()
}

/// Downloads the state: `None` when endpoint storage has none (404); any other status but
/// 200 is upstream's `<status> querying endpoint storage`.
pub fn download(target: &StorageTarget) -> Result<Option<Vec<u8>>, String> {
    let mut response = agent()
        .get(&target.url)
        .header("Authorization", &format!("Bearer {}", target.token))
        .call()
        .map_err(|error| format!("querying endpoint storage {}: {error}", target.url))?;
    let status = response.status().as_u16();
    if status == 404 {
        return Ok(None);
    }
    if status != 200 {
        return Err(format!("{status} querying endpoint storage"));
    }
    response
        .body_mut()
        .with_config()
        .limit(MAX_STATE)
        .read_to_vec()
        .map(Some)
        .map_err(|error| {
            format!(
                "reading the state from endpoint storage {}: {error}",
                target.url
            )
        })
}

/// Uploads the state; only 200 succeeds (upstream's `request to endpoint storage failed:
/// <status>`).
pub fn upload(target: &StorageTarget, body: &[u8]) -> Result<(), String> {
    let response = agent()
        .put(&target.url)
        .header("Authorization", &format!("Bearer {}", target.token))
        .send(body)
        .map_err(|error| format!("request to endpoint storage {} failed: {error}", target.url))?;
    match response.status().as_u16() {
        200 => Ok(()),
        status => Err(format!("request to endpoint storage failed: {status}")),
    }
}

/// zstd-compresses `bytes`.
pub fn compress(bytes: &[u8]) -> Result<Vec<u8>, String> {
    zstd::encode_all(bytes, LEVEL).map_err(|error| format!("compressing the state: {error}"))
}

/// Decompresses a zstd state, at most [`MAX_UNCOMPRESSED`] bytes, stopping when `cancel`
/// trips (`Ok(None)`).
pub fn decompress(bytes: &[u8], cancel: &AtomicBool) -> Result<Option<Vec<u8>>, String> {
    let decoder =
        zstd::Decoder::new(bytes).map_err(|error| format!("decompressing the state: {error}"))?;
    let mut limited = decoder.take(MAX_UNCOMPRESSED + 1);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let read = limited
            .read(&mut chunk)
            .map_err(|error| format!("decompressing the state (is it zstd?): {error}"))?;
        if read == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..read]);
    }
    if out.len() as u64 > MAX_UNCOMPRESSED {
        return Err(format!(
            "the state is larger than {MAX_UNCOMPRESSED} bytes once decompressed"
        ));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_round_trips_and_refuses_garbage() {
        let state = b"block list ".repeat(1000);
        let compressed = compress(&state).unwrap();
        assert!(compressed.len() < state.len());
        let never = AtomicBool::new(false);
        assert_eq!(decompress(&compressed, &never).unwrap().unwrap(), state);
        let error = decompress(b"not zstd at all", &never).unwrap_err();
        assert!(error.starts_with("decompressing the state"), "{error}");
        assert_eq!(
            decompress(&compressed, &AtomicBool::new(true)).unwrap(),
            None
        );
    }
}
