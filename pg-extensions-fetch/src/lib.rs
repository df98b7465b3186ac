//! Remote extensions (Neon's `remote_extensions`): the library behind the
//! `pg-extensions-fetch` stage and compute-ctl's `POST /extension_server/{filename}`.
//!
//! Before Postgres starts, the stage ([`start::run`]) writes the control files of the
//! allowed extensions into the installation's extension directory and downloads the
//! archives of the `shared_preload_libraries` that come from remote storage. Later,
//! compute-ctl downloads an archive on demand through the same [`fetch::Downloader`].
//!
//! - [`access`]: which extension a name resolves to, and whether the spec allows it.
//! - [`layout`]: the installation's directories (from `pg_config`), the archive URL.
//! - [`archive`]: unpacking a zstd tar safely and atomically.
//! - [`fetch`]: one download per archive per process; waiters have a deadline.
//! - [`control`], [`preload`]: the start-up work.
//! - [`on_demand`]: the downloads once Postgres runs (compute-ctl's `/extension_server` and
//!   `/extensions`).

pub mod access;
pub mod archive;
pub mod control;
pub mod fetch;
pub mod layout;
pub mod on_demand;
pub mod preload;
pub mod start;

pub use access::NotAllowed;
pub use fetch::{Downloader, Fetched, Limits};
pub use layout::Installation;

use compute_spec::error::{ErrorKind, StageError};

/// The stage name in errors and logs.
pub const STAGE: &str = "pg-extensions-fetch";

/// Why a remote extension could not be made ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchError {
    /// The spec does not allow it (upstream's text; HTTP 404).
    NotAllowed(NotAllowed),
    /// The spec's `remote_extensions` cannot be used (a bad control file name).
    Spec(String),
    /// The installation could not be found (`pg_config`).
    Setup(String),
    /// The storage could not be reached, answered other than 200, or the body failed.
    Download(String),
    /// The archive is not a valid, safe zstd tar.
    Archive(String),
    /// Writing into the installation failed.
    Io(String),
    /// Another request's download of the same archive did not finish in time.
    Busy(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::NotAllowed(error) => write!(f, "{error}"),
            FetchError::Spec(message)
            | FetchError::Setup(message)
            | FetchError::Download(message)
            | FetchError::Archive(message)
            | FetchError::Io(message)
            | FetchError::Busy(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for FetchError {}

impl FetchError {
    /// The HTTP status of `/extension_server` for this error (upstream: 404 for a name the
    /// spec does not allow, 500 for the rest).
    pub fn http_status(&self) -> u16 {
        match self {
            FetchError::NotAllowed(_) => 404,
            _ => 500,
        }
    }

    /// This error as the stage reports it.
    pub fn to_stage_error(&self) -> StageError {
        let kind = match self {
            FetchError::NotAllowed(_) | FetchError::Spec(_) => ErrorKind::InvalidSpec,
            FetchError::Setup(_) | FetchError::Io(_) => ErrorKind::Io,
            FetchError::Download(_) => ErrorKind::Network,
            FetchError::Archive(_) => ErrorKind::Server,
            FetchError::Busy(_) => ErrorKind::Timeout,
        };
        StageError::new(STAGE, kind, self.to_string())
    }
}

impl From<NotAllowed> for FetchError {
    fn from(error: NotAllowed) -> Self {
        FetchError::NotAllowed(error)
    }
}
