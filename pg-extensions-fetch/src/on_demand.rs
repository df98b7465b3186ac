//! Remote extensions on demand, once Postgres runs: the process's [`OnDemand`] (the storage
//! URL, `-r`, and one [`Downloader`] made on first use from the current document's `pgbin`,
//! seeded with the archives the stage downloaded before start, so an archive is downloaded
//! once per process), what `POST /extension_server/{filename}` asks for ([`OnDemand::serve`])
//! and the download before `CREATE EXTENSION` ([`OnDemand::ensure_for_create`]).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use compute_spec::ComputeDocument;

use crate::{access, Downloader, FetchError, Fetched, Installation, Limits, NotAllowed};

/// Why an extension was not made ready on demand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnDemandError {
    /// No storage URL was given (upstream's 412).
    NotConfigured,
    /// No document or no `remote_extensions` in its spec (upstream's 409; upstream panics
    /// without a spec).
    Unavailable,
    /// The spec does not allow the name (upstream's text; 404).
    NotAllowed(NotAllowed),
    /// The download or the unpacking of `extension` failed.
    Fetch {
        /// The extension.
        extension: String,
        /// What failed.
        error: FetchError,
    },
}

impl std::fmt::Display for OnDemandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OnDemandError::NotConfigured => f.write_str("remote storage is not configured"),
            OnDemandError::Unavailable => {
                f.write_str("information about remote extensions is unavailable")
            }
            OnDemandError::NotAllowed(error) => write!(f, "{error}"),
            OnDemandError::Fetch { error, .. } => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for OnDemandError {}

/// The process's remote extension state: the storage URL and, once a request needed it,
/// the downloader.
#[derive(Debug, Default)]
pub struct OnDemand {
    base_url: Option<String>,
    downloader: Mutex<Option<Arc<Downloader>>>,
}

impl OnDemand {
    /// The state for the storage URL `base_url` (`-r`, normalised with one trailing `/`).
    pub fn new(base_url: Option<String>) -> OnDemand {
        OnDemand {
            base_url,
            downloader: Mutex::default(),
        }
    }

    /// The storage URL, if given.
    pub fn base_url(&self) -> Option<&str> {
        self.base_url.as_deref()
    }

    /// The downloads tried so far, `(filename, status, count)` (none before the first).
    pub fn requests(&self) -> Vec<(String, String, u64)> {
        self.slot()
            .as_ref()
            .map(|downloader| downloader.requests())
            .unwrap_or_default()
    }

    /// Makes the file Postgres asked for (`filename`: an extension name, or a library file
    /// name when `is_library`) ready, when `document`'s spec allows it.
    pub fn serve(
        &self,
        document: Option<&ComputeDocument>,
        filename: &str,
        is_library: bool,
    ) -> Result<Fetched, OnDemandError> {
        if self.base_url.is_none() {
            return Err(OnDemandError::NotConfigured);
        }
        let document = document.ok_or(OnDemandError::Unavailable)?;
        let remote = document
            .spec
            .as_ref()
            .and_then(|spec| spec.remote_extensions.as_ref())
            .ok_or(OnDemandError::Unavailable)?;
        let extension =
            access::resolve(remote, filename, is_library).map_err(OnDemandError::NotAllowed)?;
        self.downloader(document)
            .and_then(|downloader| downloader.fetch(&extension))
            .map_err(|error| OnDemandError::Fetch { extension, error })
    }

    /// Before `extension` is created or updated: when a storage URL is given and the spec
    /// allows the extension, its archive is downloaded first (once per process). A name the
    /// spec does not allow is left to Postgres (it may be installed locally). `None` when
    /// nothing was tried.
    pub fn ensure_for_create(
        &self,
        document: &ComputeDocument,
        extension: &str,
    ) -> Result<Option<Fetched>, String> {
        if self.base_url.is_none() {
            return Ok(None);
        }
        let Some(remote) = document
            .spec
            .as_ref()
            .and_then(|spec| spec.remote_extensions.as_ref())
        else {
            return Ok(None);
        };
        let Ok(extension) = access::resolve(remote, extension, false) else {
            return Ok(None);
        };
        self.downloader(document)
            .and_then(|downloader| downloader.fetch(&extension))
            .map(Some)
            .map_err(|error| format!("downloading remote extension {extension}: {error}"))
    }

    /// The downloader into the installation of `document`'s Postgres, made on first use;
    /// it starts knowing the archives the stage already downloaded before start.
    fn downloader(&self, document: &ComputeDocument) -> Result<Arc<Downloader>, FetchError> {
        let Some(base_url) = self.base_url.clone() else {
            return Err(FetchError::Setup("remote storage is not configured".into()));
        };
        if let Some(downloader) = self.slot().as_ref() {
            return Ok(downloader.clone());
        }
        // pg_config runs without the lock held: the request counter reads the same slot and
        // must not wait on it.
        let installation = Installation::discover(&document.pgbin)?;
        let mut slot = self.slot();
        if let Some(downloader) = slot.as_ref() {
            return Ok(downloader.clone());
        }
        let downloader = Arc::new(Downloader::new(base_url, installation, Limits::default()));
        for extension in document
            .extensions
            .iter()
            .flat_map(|section| section.preloaded.iter())
        {
            downloader.mark_present(extension);
        }
        *slot = Some(downloader.clone());
        Ok(downloader)
    }

    fn slot(&self) -> MutexGuard<'_, Option<Arc<Downloader>>> {
        self.downloader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
