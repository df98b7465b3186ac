//! Endpoint storage over HTTP (reference §6): `GET`/`PUT` of the compressed cache state at
//! [`StorageTarget::url`] with `Authorization: Bearer <token>`; the same bytes in a local file;
//! the zstd (de)compression.
//!
//! Every request has a deadline, a downloaded body (or a file read) a size cap
//! ([`MAX_STATE`]), a decompressed state two ([`MAX_UNCOMPRESSED`], [`MAX_RATIO`]) and one
//! buffer, and errors name the URL (which holds no secret) and the status, never the token.
//! A file is written whole or not at all (a temporary file beside it, renamed).

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::{Error, StorageTarget};

/// The whole of one request, body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// The largest state after decompression: 256 MiB. The state is handed to Postgres as one
/// value (`neon.prewarm_local_cache($1)`, a `bytea`, which cannot pass 1 GiB anyway); a Neon
/// LFC state takes tens of bytes per cached MiB, so this covers caches of terabytes.
pub const MAX_UNCOMPRESSED: usize = 256 << 20;
/// The largest state accepted from endpoint storage or a file (compressed): the
/// decompressed cap and zstd's worst-case overhead.
pub const MAX_STATE: u64 = (MAX_UNCOMPRESSED + MAX_UNCOMPRESSED / 128) as u64;
/// The highest compression ratio accepted above [`RATIO_FLOOR`]: a state expanding more
/// than this many times its compressed size is refused (a real one compresses ~10:1).
pub const MAX_RATIO: usize = 256;
/// Up to this size a state is accepted whatever its ratio (a tiny state can compress far).
const RATIO_FLOOR: usize = 1 << 20;
/// The largest zstd window accepted, as a power of two (16 MiB: any level but `--ultra`
/// compresses within it); a frame asking for more is refused before its window is allocated.
const WINDOW_LOG_MAX: u32 = 24;
/// How much is decompressed between two looks at the cancellation token.
const DECOMPRESS_STEP: usize = 1 << 20;
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
pub fn download(target: &StorageTarget) -> Result<Option<Vec<u8>>, Error> {
    let mut response = agent()
        .get(&target.url)
        .header("Authorization", &format!("Bearer {}", target.token))
        .call()
        .map_err(|error| {
            Error::StorageUnreachable(format!("querying endpoint storage {}: {error}", target.url))
        })?;
    let status = response.status().as_u16();
    if status == 404 {
        return Ok(None);
    }
    if status != 200 {
        return Err(Error::StorageRefused(format!(
            "{status} querying endpoint storage"
        )));
    }
    response
        .body_mut()
        .with_config()
        .limit(MAX_STATE)
        .read_to_vec()
        .map(Some)
        .map_err(|error| {
            Error::StorageUnreachable(format!(
                "reading the state from endpoint storage {}: {error}",
                target.url
            ))
        })
}

/// Uploads the state; only 200 succeeds (upstream's `request to endpoint storage failed:
/// <status>`).
pub fn upload(target: &StorageTarget, body: &[u8]) -> Result<(), Error> {
    let response = agent()
        .put(&target.url)
        .header("Authorization", &format!("Bearer {}", target.token))
        .send(body)
        .map_err(|error| {
            Error::StorageUnreachable(format!(
                "request to endpoint storage {} failed: {error}",
                target.url
            ))
        })?;
    match response.status().as_u16() {
        200 => Ok(()),
        status => Err(Error::StorageRefused(format!(
            "request to endpoint storage failed: {status}"
        ))),
    }
}

/// Reads a state file (the bytes endpoint storage would hold): a regular file of at most
/// the size endpoint storage may send, so a device, a FIFO or a huge file is refused before
/// it is read.
pub fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    let failed = |error: std::io::Error| Error::File {
        action: "reading",
        path: path.to_path_buf(),
        error: error.to_string(),
    };
    let refused = |message: String| Error::BadState {
        file: Some(path.to_path_buf()),
        message,
    };
    let check = |metadata: std::fs::Metadata| {
        if !metadata.is_file() {
            return Err(refused("not a regular file".to_string()));
        }
        if metadata.len() > MAX_STATE {
            return Err(refused(format!(
                "{} bytes, more than the {MAX_STATE} a state may have",
                metadata.len()
            )));
        }
        Ok(())
    };
    // Checked before the open too: opening a FIFO would wait for a writer.
    check(std::fs::metadata(path).map_err(failed)?)?;
    let file = std::fs::File::open(path).map_err(failed)?;
    check(file.metadata().map_err(failed)?)?;
    let mut bytes = Vec::new();
    file.take(MAX_STATE + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() as u64 > MAX_STATE {
        return Err(refused(format!(
            "it grew past the {MAX_STATE} bytes a state may have while it was read"
        )));
    }
    Ok(bytes)
}

/// Writes a state file whole, or leaves `path` as it was: the bytes go to a new temporary
/// file beside it (never an existing one), are synced, and the file is renamed over `path`.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let failed = |error: String| Error::File {
        action: "writing",
        path: path.to_path_buf(),
        error,
    };
    let Some(name) = path.file_name() else {
        return Err(failed("it names no file".to_string()));
    };
    let temporary = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .map_err(|error| failed(format!("creating {}: {error}", temporary.display())))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(error) = written {
        // This call created the temporary file: it is not a state.
        let _ = std::fs::remove_file(&temporary);
        return Err(failed(error.to_string()));
    }
    Ok(())
}

/// zstd-compresses `bytes`.
pub fn compress(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    zstd::encode_all(bytes, LEVEL)
        .map_err(|error| Error::Internal(format!("compressing the state: {error}")))
}

fn bad_state(message: String) -> Error {
    Error::BadState {
        file: None,
        message,
    }
}

/// The most `compressed` bytes may expand to: [`MAX_UNCOMPRESSED`], and at most
/// [`MAX_RATIO`] times their size beyond [`RATIO_FLOOR`].
pub fn allowed_size(compressed: usize) -> usize {
    // Both bounds are constants, the floor below the cap.
    compressed
        .saturating_mul(MAX_RATIO)
        .clamp(RATIO_FLOOR, MAX_UNCOMPRESSED)
}

/// Decompresses a zstd state into one buffer of at most [`allowed_size`] bytes (memory is
/// taken as the state is written into it, never for more than that), stopping when `cancel`
/// trips (`Ok(None)`). A state that would expand further is refused, before the excess is
/// decompressed.
pub fn decompress(bytes: &[u8], cancel: &AtomicBool) -> Result<Option<Vec<u8>>, Error> {
    let failed = |error: std::io::Error| {
        bad_state(format!("decompressing the state (is it zstd?): {error}"))
    };
    let mut decoder = zstd::Decoder::with_buffer(bytes).map_err(failed)?;
    decoder.window_log_max(WINDOW_LOG_MAX).map_err(failed)?;
    let allowed = allowed_size(bytes.len());
    // One byte more than allowed, to tell a state that fills it from one that goes beyond.
    // Zeroed memory of this size is mapped lazily: only what is written costs memory.
    let mut out = vec![0u8; allowed + 1];
    let mut filled = 0;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let end = out.len().min(filled + DECOMPRESS_STEP);
        if filled == end {
            return Err(bad_state(format!(
                "the state expands past {allowed} bytes (from {} compressed): at most \
                 {MAX_UNCOMPRESSED} bytes, and {MAX_RATIO} times the compressed size above \
                 {RATIO_FLOOR}, are accepted",
                bytes.len()
            )));
        }
        let read = decoder.read(&mut out[filled..end]).map_err(failed)?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    out.truncate(filled);
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
        let error = decompress(b"not zstd at all", &never)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("decompressing the state"), "{error}");
        assert_eq!(
            decompress(&compressed, &AtomicBool::new(true)).unwrap(),
            None
        );
    }

    #[test]
    fn the_allowed_size_follows_the_ratio_between_the_floor_and_the_cap() {
        assert_eq!(allowed_size(0), RATIO_FLOOR);
        assert_eq!(allowed_size(1000), RATIO_FLOOR);
        assert_eq!(allowed_size(RATIO_FLOOR), MAX_RATIO * RATIO_FLOOR);
        assert_eq!(allowed_size(MAX_UNCOMPRESSED / 2), MAX_UNCOMPRESSED);
        assert_eq!(allowed_size(usize::MAX), MAX_UNCOMPRESSED);
    }

    #[test]
    fn a_state_at_the_allowed_size_passes_and_one_byte_more_is_refused() {
        let never = AtomicBool::new(false);
        let exact = compress(&vec![7u8; RATIO_FLOOR]).unwrap();
        assert!(allowed_size(exact.len()) == RATIO_FLOOR, "{}", exact.len());
        assert_eq!(
            decompress(&exact, &never).unwrap().unwrap().len(),
            RATIO_FLOOR
        );
        let over = compress(&vec![7u8; RATIO_FLOOR + 1]).unwrap();
        let error = decompress(&over, &never).unwrap_err().to_string();
        assert!(error.contains("expands past 1048576 bytes"), "{error}");
    }

    #[test]
    fn a_frame_asking_for_a_window_over_the_limit_is_refused() {
        // Magic, a descriptor without content size, a window of 2^log bytes, then one empty
        // last raw block.
        let frame = |log: u8| {
            let mut frame = 0xFD2F_B528u32.to_le_bytes().to_vec();
            frame.extend_from_slice(&[0x00, (log - 10) << 3, 0x01, 0x00, 0x00]);
            frame
        };
        let never = AtomicBool::new(false);
        let within = decompress(&frame(WINDOW_LOG_MAX as u8), &never).unwrap();
        assert_eq!(within, Some(Vec::new()));
        let error = decompress(&frame(31), &never).unwrap_err().to_string();
        assert!(error.starts_with("decompressing the state"), "{error}");
    }
}
