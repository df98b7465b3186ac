//! Endpoint storage over HTTP (reference §6): `GET`/`PUT` of the compressed cache state at
//! [`StorageTarget::url`] with `Authorization: Bearer <token>`; the same bytes in a local file;
//! the zstd (de)compression.
//!
//! Every request has a deadline, a downloaded body (or a file read) a size cap, and errors
//! name the URL (which holds no secret) and the status, never the token. A file is written
//! whole or not at all (a temporary file beside it, renamed).

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::{Error, StorageTarget};

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

/// Decompresses a zstd state, at most [`MAX_UNCOMPRESSED`] bytes, stopping when `cancel`
/// trips (`Ok(None)`).
pub fn decompress(bytes: &[u8], cancel: &AtomicBool) -> Result<Option<Vec<u8>>, Error> {
    let decoder = zstd::Decoder::new(bytes)
        .map_err(|error| bad_state(format!("decompressing the state: {error}")))?;
    let mut limited = decoder.take(MAX_UNCOMPRESSED + 1);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let read = limited.read(&mut chunk).map_err(|error| {
            bad_state(format!("decompressing the state (is it zstd?): {error}"))
        })?;
        if read == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..read]);
    }
    if out.len() as u64 > MAX_UNCOMPRESSED {
        return Err(bad_state(format!(
            "the state is larger than {MAX_UNCOMPRESSED} bytes once decompressed"
        )));
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
        let error = decompress(b"not zstd at all", &never)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("decompressing the state"), "{error}");
        assert_eq!(
            decompress(&compressed, &AtomicBool::new(true)).unwrap(),
            None
        );
    }
}
