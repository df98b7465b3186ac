//! Writing the control files of the allowed remote extensions before Postgres starts, so
//! `CREATE EXTENSION` finds them and asks for the rest.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use compute_spec::spec::RemoteExtensions;

use crate::access::control_files_wanted;
use crate::FetchError;

/// Writes each `control_data` file of every extension the spec lets through (upstream's
/// looser rule, [`control_files_wanted`]) into `extension_dir`, unless it exists; returns
/// how many were written. Each file is written beside and renamed into place. A file name
/// that is not a plain `<name>.control` is refused, naming its spec field.
pub fn write_control_files(
    remote: &RemoteExtensions,
    extension_dir: &Path,
) -> Result<u64, FetchError> {
    let mut written = 0;
    for (extension, data) in &remote.extension_data {
        for file in data.control_data.keys() {
            check_file_name(extension, file)?;
        }
        if !control_files_wanted(remote, extension) {
            continue;
        }
        for (file, text) in &data.control_data {
            let destination = extension_dir.join(file);
            if fs::symlink_metadata(&destination).is_ok() {
                continue;
            }
            write_beside(&destination, text.as_bytes())?;
            written += 1;
        }
    }
    Ok(written)
}

fn check_file_name(extension: &str, file: &str) -> Result<(), FetchError> {
    let stem = file.strip_suffix(".control").unwrap_or_default();
    let plain = !stem.is_empty()
        && !stem.starts_with('.')
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
    if plain {
        return Ok(());
    }
    Err(FetchError::Spec(format!(
        "remote_extensions.extension_data.{extension}.control_data: {file:?} is not a control \
         file name (`<name>.control`, letters, digits, `_`, `-`, `.`, `+`)"
    )))
}

/// Writes `bytes` to a new hidden file beside `destination`, then renames it into place.
pub(crate) fn write_beside(destination: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    let name = destination
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staged =
        destination.with_file_name(format!(".{name}.compute-tools-{}", std::process::id()));
    let io_error = |error: std::io::Error| {
        FetchError::Io(format!("writing {}: {error}", destination.display()))
    };
    let _ = fs::remove_file(&staged);
    let result = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&staged)
        .and_then(|mut file| file.write_all(bytes))
        .and_then(|()| fs::rename(&staged, destination));
    if let Err(error) = result {
        let _ = fs::remove_file(&staged);
        return Err(io_error(error));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_file_names_are_plain() {
        assert!(check_file_name("a", "a.control").is_ok());
        assert!(check_file_name("a", "a--1.0.control").is_ok());
        for bad in [
            "../a.control",
            "a.sql",
            ".control",
            "/x.control",
            ".a.control",
        ] {
            let error = check_file_name("a", bad).unwrap_err().to_string();
            assert!(error.contains("extension_data.a.control_data"), "{error}");
        }
    }
}
