//! The other half of a pooled start's warm-up: asking the kernel to read the programs a start
//! will run into the page cache (`posix_fadvise(WILLNEED)`, asynchronous read-ahead), so the
//! start after `/configure` does not wait for the disk. Best effort and bounded: one thread,
//! never an error (a file that cannot be opened is skipped, logged at debug), only the named
//! files and the `.so` files of the `lib` directory beside the installation's `bin`, no file
//! held open afterwards.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Starts the read-ahead, in the background, of `programs` (e.g. the stage binaries), the
/// installation's `postgres` (`pgbin`) and `initdb`, and its `lib/*.so`.
pub fn spawn(pgbin: &Path, programs: Vec<PathBuf>) {
    let mut files = programs;
    files.push(pgbin.to_path_buf());
    files.push(pgbin.with_file_name("initdb"));
    if let Some(lib) = pgbin.parent().and_then(Path::parent).map(|d| d.join("lib")) {
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
        .name("read-ahead".to_string())
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
