//! What a pooled compute does while it waits in `empty` for its spec: asks the kernel to read
//! the programs a start will run into the page cache (`posix_fadvise(WILLNEED)`, asynchronous
//! read-ahead), so the start after `/configure` does not wait for the disk: the stage
//! binaries, and `postgres`, `initdb` and their shared libraries of the Postgres installation.
//!
//! Best effort and bounded: it runs on a thread of its own, never fails the compute (a file
//! that cannot be opened is skipped, logged at debug), reads only the named programs and the
//! `lib` directory beside the installation's `bin`, and holds no file open afterwards.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use compute_spec::document::ComputeDocument;

use crate::stages::{locate, name};

/// Starts the read-ahead for `document`'s installation and the stage binaries, in the
/// background.
pub fn prefetch_for_start(document: &ComputeDocument) {
    let mut files: Vec<PathBuf> = [
        name::COMPUTE_SPEC,
        name::SYNC_SAFEKEEPERS,
        name::BASEBACKUP_FETCH,
        name::EXTENSIONS_FETCH,
        name::RECONCILE,
        name::SUPERVISE,
    ]
    .into_iter()
    .map(locate)
    .collect();
    files.push(document.pgbin.clone());
    files.push(document.sibling_binary("initdb"));
    if let Some(lib) = document
        .pgbin
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("lib"))
    {
        if let Ok(listing) = std::fs::read_dir(&lib) {
            files.extend(
                listing
                    .flatten()
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|ext| ext == "so")),
            );
        }
    }
    let spawned = std::thread::Builder::new()
        .name("prefetch".to_string())
        .spawn(move || {
            let started = std::time::Instant::now();
            let advised = files.iter().filter(|path| advise(path)).count();
            tracing::debug!(
                "read-ahead asked for {advised} of {} files in {} ms",
                files.len(),
                started.elapsed().as_millis()
            );
        });
    if let Err(error) = spawned {
        tracing::debug!("no read-ahead thread: {error}");
    }
}

/// `posix_fadvise(WILLNEED)` on the whole of `path`; false when it could not be asked.
fn advise(path: &Path) -> bool {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) => {
            tracing::debug!("read-ahead of {}: {error}", path.display());
            return false;
        }
    };
    nix::fcntl::posix_fadvise(
        file.as_fd(),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_is_asked_for_files_and_refused_for_missing_ones() {
        let exe = std::env::current_exe().unwrap();
        assert!(advise(&exe));
        assert!(!advise(Path::new("/nonexistent/compute-tools/binary")));
    }
}
