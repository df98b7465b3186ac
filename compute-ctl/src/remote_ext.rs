//! Remote extensions in compute-ctl: `POST /extension_server/{filename}` (Postgres asks for
//! a missing file), the download before `POST /extensions` runs `CREATE EXTENSION`, and
//! `compute_ctl_remote_ext_requests_total`. The work is `pg_extensions_fetch`'s, the same
//! library the `pg-extensions-fetch` stage runs before Postgres starts.

use std::fmt::Write;
use std::sync::{Arc, Mutex, PoisonError};

use compute_spec::spec::RemoteExtensions;
use compute_spec::ComputeDocument;
use pg_extensions_fetch::{access, Downloader, FetchError, Fetched, Installation, Limits};

use crate::api::Api;
use compute_http::Reply;
use hyper::StatusCode;

/// The process's remote extension state: the storage URL (`-r`) and, once a request needed
/// it, the downloader (one per process, so an archive is downloaded once).
#[derive(Debug, Default)]
pub struct RemoteExt {
    base_url: Option<String>,
    downloader: Mutex<Option<Arc<Downloader>>>,
}

impl RemoteExt {
    /// The state for `-r` (already normalised by the CLI).
    pub fn new(base_url: Option<String>) -> RemoteExt {
        RemoteExt {
            base_url,
            downloader: Mutex::default(),
        }
    }

    /// `-r`, if given.
    pub fn base_url(&self) -> Option<&str> {
        self.base_url.as_deref()
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
        // pg_config runs without the lock held: `/metrics` reads the same slot and must not
        // wait on it.
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

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<Downloader>>> {
        self.downloader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `compute_ctl_remote_ext_requests_total{filename, http_status}` (absent until a
    /// download was tried, as upstream drops empty families).
    pub fn render_metrics(&self) -> String {
        let requests = self
            .slot()
            .as_ref()
            .map(|downloader| downloader.requests())
            .unwrap_or_default();
        let mut out = String::new();
        if requests.is_empty() {
            return out;
        }
        let name = "compute_ctl_remote_ext_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} Total number of requests made by compute_ctl to download extensions \
             from S3 proxy by status"
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        for (filename, status, count) in requests {
            let _ = writeln!(
                out,
                "{name}{{filename=\"{}\",http_status=\"{}\"}} {count}",
                crate::metrics::escape(&filename),
                crate::metrics::escape(&status)
            );
        }
        out
    }
}

/// The current document and its spec's `remote_extensions`, if both exist.
fn current(api: &Api) -> Option<(ComputeDocument, RemoteExtensions)> {
    let inner = api.shared.lock();
    let document = inner.document.as_ref()?;
    let remote = document.spec.as_ref()?.remote_extensions.clone()?;
    Some((document.clone(), remote))
}

/// `POST /extension_server/{filename}` after the query was checked: 412 without `-r`, 409
/// without `remote_extensions`, 404 for a name the spec does not allow (upstream's text),
/// 500 for a failed download or unpack, 200 (empty) when the files are in place.
pub fn extension_server(api: &Api, filename: &str, is_library: bool) -> Reply {
    if api.remote_ext.base_url().is_none() {
        return Reply::error(
            StatusCode::PRECONDITION_FAILED,
            "remote storage is not configured",
        );
    }
    let Some((document, remote)) = current(api) else {
        return Reply::error(
            StatusCode::CONFLICT,
            "information about remote extensions is unavailable",
        );
    };
    let extension = match access::resolve(&remote, filename, is_library) {
        Ok(extension) => extension,
        Err(error) => return Reply::error(StatusCode::NOT_FOUND, error),
    };
    let fetched = api
        .remote_ext
        .downloader(&document)
        .and_then(|downloader| downloader.fetch(&extension));
    match fetched {
        Ok(_) => Reply::empty(StatusCode::OK),
        Err(error) => {
            tracing::error!(%filename, %extension, %error, "extension download failed");
            Reply::error(
                StatusCode::from_u16(error.http_status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                error,
            )
        }
    }
}

/// Before `POST /extensions` creates or updates `extension` (beyond upstream, where only
/// the `neon` extension's hook downloads): when `-r` is given and the spec allows the
/// extension, its archive is downloaded first (once per process). A name the spec does not
/// allow is left to Postgres (it may be installed locally). `None` when nothing was tried.
pub fn ensure_for_create(
    api: &Api,
    document: &ComputeDocument,
    extension: &str,
) -> Result<Option<Fetched>, String> {
    if api.remote_ext.base_url().is_none() {
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
    api.remote_ext
        .downloader(document)
        .and_then(|downloader| downloader.fetch(&extension))
        .map(Some)
        .map_err(|error| format!("downloading remote extension {extension}: {error}"))
}
