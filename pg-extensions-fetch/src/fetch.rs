//! Downloading an archive from remote extension storage and unpacking it, once per archive
//! per process: a second request for an archive being downloaded waits for that download
//! (with a deadline, unlike upstream, whose waiters poll forever when the first download
//! failed), and takes it over if it failed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::archive;
use crate::layout::{archive_name, archive_url, Installation};
use crate::FetchError;

/// Limits of one download.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The whole request (connect, headers, body) must finish within this.
    pub download_timeout: Duration,
    /// How long a request waits for another request's download of the same archive.
    pub wait_timeout: Duration,
    /// The largest compressed archive accepted.
    pub max_download_bytes: u64,
    /// The most file data one archive may unpack to.
    pub max_unpacked_bytes: u64,
    /// The most entries (files, directories, headers) one archive may hold.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Postgres's own request (upstream's extension_server.c) gives up after 60 s.
            download_timeout: Duration::from_secs(60),
            wait_timeout: Duration::from_secs(60),
            max_download_bytes: 512 << 20,
            max_unpacked_bytes: 2 << 30,
            max_entries: archive::DEFAULT_MAX_ENTRIES,
        }
    }
}

/// What a fetch did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// Downloaded and unpacked now: the compressed size in bytes.
    Downloaded(u64),
    /// This process had already downloaded it: nothing done.
    AlreadyPresent,
}

impl Fetched {
    /// Compressed bytes downloaded by this call (0 when already present).
    pub fn bytes(self) -> u64 {
        match self {
            Fetched::Downloaded(bytes) => bytes,
            Fetched::AlreadyPresent => 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Running,
    Done,
}

/// Downloads archives from one remote extension storage into one installation.
#[derive(Debug)]
pub struct Downloader {
    base_url: String,
    installation: Installation,
    limits: Limits,
    agent: ureq::Agent,
    slots: Mutex<HashMap<String, Slot>>,
    changed: Condvar,
    /// (archive file name, HTTP status with reason or `unknown`) → requests.
    requests: Mutex<BTreeMap<(String, String), u64>>,
}

impl Downloader {
    /// A downloader from `base_url` (normalised by [`crate::layout::normalize_base_url`]).
    pub fn new(base_url: String, installation: Installation, limits: Limits) -> Downloader {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(limits.download_timeout))
            .build()
            .into();
        Downloader {
            base_url,
            installation,
            limits,
            agent,
            slots: Mutex::new(HashMap::new()),
            changed: Condvar::new(),
            requests: Mutex::new(BTreeMap::new()),
        }
    }

    /// The installation archives are unpacked into.
    pub fn installation(&self) -> &Installation {
        &self.installation
    }

    /// Downloads and unpacks the archive of `extension` unless this process already did;
    /// waits (up to the wait timeout) while another request downloads it.
    pub fn fetch(&self, extension: &str) -> Result<Fetched, FetchError> {
        let name = archive_name(extension);
        let deadline = stage_kit::deadline::after(self.limits.wait_timeout);
        let mut slots = self.slots();
        loop {
            match slots.get(&name) {
                Some(Slot::Done) => return Ok(Fetched::AlreadyPresent),
                None => break,
                Some(Slot::Running) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(FetchError::Busy(format!(
                            "{name} is being downloaded by another request, which did not \
                             finish within {:?}",
                            self.limits.wait_timeout
                        )));
                    }
                    slots = self
                        .changed
                        .wait_timeout(slots, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
        slots.insert(name.clone(), Slot::Running);
        drop(slots);
        // Settles the slot even if the download panics, so waiters never wait for nothing.
        let mut running = Running {
            downloader: self,
            name,
            done: false,
        };
        let result = self.download_and_unpack(extension, &running.name);
        running.done = result.is_ok();
        result
    }

    /// Records that the archive of `extension` is in place already (downloaded by the
    /// stage before start), so a request for it does nothing.
    pub fn mark_present(&self, extension: &str) {
        self.slots().insert(archive_name(extension), Slot::Done);
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, name: &str, status: String) {
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        *requests.entry((name.to_string(), status)).or_default() += 1;
    }

    /// `compute_ctl_remote_ext_requests_total`: (archive file name, status) → count.
    pub fn requests(&self) -> Vec<(String, String, u64)> {
        let requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        requests
            .iter()
            .map(|((name, status), count)| (name.clone(), status.clone(), *count))
            .collect()
    }

    fn download_and_unpack(&self, extension: &str, name: &str) -> Result<Fetched, FetchError> {
        let url = archive_url(&self.base_url, &self.installation.pg_major, extension)
            .map_err(FetchError::Spec)?;
        let started = Instant::now();
        tracing::info!(%url, "downloading a remote extension");
        let mut response = match self.agent.get(&url).call() {
            Ok(response) => response,
            Err(error) => {
                self.count(name, "unknown".into());
                return Err(FetchError::Download(format!(
                    "GET {url}: {error} (within {:?})",
                    self.limits.download_timeout
                )));
            }
        };
        let status = response.status();
        self.count(
            name,
            format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or_default()
            )
            .trim_end()
            .to_string(),
        );
        if status.as_u16() != 200 {
            return Err(FetchError::Download(format!(
                "GET {url} answered {status}; is {name} in the extension storage for this \
                 build, architecture and Postgres version?"
            )));
        }
        // Streamed: body → zstd → tar → files; memory stays small whatever the archive size.
        let body = response
            .body_mut()
            .with_config()
            .limit(self.limits.max_download_bytes)
            .reader();
        let mut body = Counted {
            inner: body,
            bytes: 0,
            failure: None,
        };
        let unpacked = archive::unpack(
            &mut body,
            name,
            &self.installation,
            archive::Caps {
                bytes: self.limits.max_unpacked_bytes,
                entries: self.limits.max_entries,
            },
        );
        let unpacked = match (unpacked, body.failure) {
            (Ok(unpacked), _) => unpacked,
            // The archive looked bad because the body could not be read: a download error.
            (Err(_), Some(failure)) => {
                return Err(FetchError::Download(format!(
                    "GET {url}: reading the archive: {failure} (at most {} bytes within {:?})",
                    self.limits.max_download_bytes, self.limits.download_timeout
                )))
            }
            (Err(error), None) => return Err(error),
        };
        tracing::info!(
            %url,
            bytes = body.bytes,
            files = unpacked.files,
            unpacked_bytes = unpacked.bytes,
            ms = started.elapsed().as_millis() as u64,
            "remote extension installed"
        );
        Ok(Fetched::Downloaded(body.bytes))
    }
}

/// The download in progress of one archive: on drop, its slot becomes `Done` (success) or
/// is cleared (failure or panic), and the waiters are woken.
struct Running<'d> {
    downloader: &'d Downloader,
    name: String,
    done: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut slots = self.downloader.slots();
        if self.done {
            slots.insert(std::mem::take(&mut self.name), Slot::Done);
        } else {
            slots.remove(&self.name);
        }
        drop(slots);
        self.downloader.changed.notify_all();
    }
}

/// A reader that counts the bytes read and keeps the first read error's text.
struct Counted<R> {
    inner: R,
    bytes: u64,
    failure: Option<String>,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buffer) {
            Ok(read) => {
                self.bytes += read as u64;
                Ok(read)
            }
            Err(error) => {
                if self.failure.is_none() {
                    self.failure = Some(error.to_string());
                }
                Err(error)
            }
        }
    }
}
