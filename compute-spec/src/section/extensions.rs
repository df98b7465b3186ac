//! The `extensions` section, written by `pg-extensions-fetch`: the remote extensions made
//! ready before Postgres starts (control files, `shared_preload_libraries` archives).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What `pg-extensions-fetch` did before Postgres started. The four counters are Neon's
/// `/metrics.json` fields of the same names.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct ExtensionsSection {
    /// The remote extension storage used (`--remote-ext-base-url`, normalised to end in
    /// `/`); absent when none was given (then nothing is downloaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// `$(pg_config --sharedir)/extension` of the Postgres installation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_dir: Option<String>,
    /// `$(pg_config --pkglibdir)` of the Postgres installation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library_dir: Option<String>,
    /// Control files written from `remote_extensions.extension_data` (existing ones are
    /// kept).
    #[serde(default)]
    pub control_files_written: u64,
    /// Extensions whose archives were downloaded for `shared_preload_libraries`.
    #[serde(default)]
    pub preloaded: Vec<String>,
    /// Time spent on the preload downloads.
    #[serde(default)]
    pub load_ext_ms: u64,
    /// Successful preload downloads (an archive already present counts, with 0 bytes).
    #[serde(default)]
    pub num_ext_downloaded: u64,
    /// The largest compressed archive downloaded, in bytes.
    #[serde(default)]
    pub largest_ext_size: u64,
    /// All compressed archives downloaded, in bytes.
    #[serde(default)]
    pub total_ext_download_size: u64,
    /// The spans the stage recorded (compute-ctl exports and removes them); absent when it
    /// recorded none (no trace context given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<crate::trace::SpanRecord>,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
