//! The compute document: the one JSON object that flows through the stages.
//!
//! Format (`document_version` 1): the spec, the paths and connection string, the local
//! instance (port and socket directory), and one section per stage that ran, each with its
//! results and timings named as in Neon's `/metrics.json`:
//!
//! ```json
//! {"document_version": 1, "spec": {...}, "pgdata": "/data", "pgbin": "/usr/lib/postgresql/15/bin/postgres",
//!  "connstr": "postgresql://cloud_admin@localhost/postgres", "instance": {"port": 55432, "socket_dir": "/data"},
//!  "spec_load": {...}, "sync_safekeepers": {"lsn": "0/0", ...}, "basebackup": {...}, "reconcile": {...}}
//! ```
//!
//! Every stage reads the whole document, adds its section, and writes the whole document.
//! Fields this version does not know are kept in `extra` maps and written back unchanged.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ErrorKind, StageError};
use crate::section::{
    BasebackupSection, ExtensionsSection, ReconcileSection, SpecLoadSection, SyncSafekeepersSection,
};
use crate::spec::{ComputeCtlConfig, ComputeSpec};
use crate::trace::SpanRecord;

/// The current document format version.
pub const DOCUMENT_VERSION: u32 = 1;

/// The privileged ("weak superuser") role given to users, unless configured otherwise.
pub const DEFAULT_PRIVILEGED_ROLE: &str = "neon_superuser";

fn default_privileged_role() -> String {
    DEFAULT_PRIVILEGED_ROLE.to_string()
}

/// The document every stage reads on stdin and writes on stdout.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ComputeDocument {
    /// Format version; a stage refuses a newer major format.
    pub document_version: u32,
    /// The spec; null while a pooled compute waits for one.
    pub spec: Option<ComputeSpec>,
    /// JWT keys and TLS for the HTTP API (no secrets).
    #[serde(default)]
    pub compute_ctl_config: ComputeCtlConfig,
    /// The data directory, absolute. Rebuilt on every start.
    pub pgdata: PathBuf,
    /// The `postgres` binary, absolute; `initdb` and friends are its siblings.
    pub pgbin: PathBuf,
    /// How the tools connect to their own Postgres (URL or key=value); user and database are
    /// taken from it, host and port from [`ComputeDocument::instance`].
    pub connstr: String,
    /// The compute's identity (`-i`), if given.
    #[serde(default)]
    pub compute_id: Option<String>,
    /// The privileged role name (`--privileged-role-name`).
    #[serde(default = "default_privileged_role")]
    pub privileged_role_name: String,
    /// Where the local Postgres listens.
    pub instance: LocalInstance,
    /// Written by `compute-spec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_load: Option<SpecLoadSection>,
    /// Written by `pg-sync-safekeepers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_safekeepers: Option<SyncSafekeepersSection>,
    /// Written by `pg-basebackup-fetch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basebackup: Option<BasebackupSection>,
    /// Written by `pg-extensions-fetch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<ExtensionsSection>,
    /// Written by `pg-reconcile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<ReconcileSection>,
    /// Fields this version does not know, passed through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The local Postgres instance: its port and Unix socket directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalInstance {
    /// TCP port (`port` setting of the spec, else the `-C` port, else 5432).
    pub port: u16,
    /// Unix socket directory the tools control; the socket path fits the 107-byte limit.
    pub socket_dir: PathBuf,
    /// compute-ctl's internal HTTP port, where Postgres asks for missing remote extension
    /// files; written as `neon.extension_server_port`. Absent when no server listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_server_port: Option<u16>,
    /// What the configuration depends on in the host, probed once by the first stage (this
    /// crate does no I/O); both false when absent.
    #[serde(default)]
    pub host: HostFacts,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The host facts `postgresql.conf` depends on (`stage_kit::host::probe` reads them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HostFacts {
    /// `/proc/sys/vm/overcommit_memory` is 2 (strict): dynamic shared memory uses `mmap`, as
    /// upstream.
    #[serde(default)]
    pub overcommit_strict: bool,
    /// Neon's `neon` library is installed beside the Postgres binary (`<bin>/../lib/neon.so`
    /// or `<bin>/../lib/postgresql/neon.so`).
    #[serde(default)]
    pub neon_library: bool,
}

impl ComputeDocument {
    /// The spec, or a clear error when the compute has none yet.
    pub fn require_spec(&self, stage: &str) -> Result<&ComputeSpec, StageError> {
        self.spec.as_ref().ok_or_else(|| {
            StageError::new(
                stage,
                ErrorKind::InvalidDocument,
                "the document has no spec yet (spec is null): give compute-spec a spec first",
            )
        })
    }

    /// The directory holding `postgres`, `initdb`, `pg_ctl` and the other server binaries.
    pub fn bin_dir(&self) -> PathBuf {
        self.pgbin
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// A sibling binary of `postgres` (e.g. `initdb`).
    pub fn sibling_binary(&self, name: &str) -> PathBuf {
        self.bin_dir().join(name)
    }

    /// The `spans` of the section stage `stage` writes (by its binary's name), when that
    /// section is in the document; `None` for a stage that writes none, or has not yet.
    pub fn stage_spans_mut(&mut self, stage: &str) -> Option<&mut Vec<SpanRecord>> {
        match stage {
            "compute-spec" => self.spec_load.as_mut().map(|section| &mut section.spans),
            "pg-sync-safekeepers" => self
                .sync_safekeepers
                .as_mut()
                .map(|section| &mut section.spans),
            "pg-basebackup-fetch" => self.basebackup.as_mut().map(|section| &mut section.spans),
            "pg-extensions-fetch" => self.extensions.as_mut().map(|section| &mut section.spans),
            "pg-reconcile" => self.reconcile.as_mut().map(|section| &mut section.spans),
            _ => None,
        }
    }

    /// Removes and returns the spans of every section (compute-ctl, after each stage run:
    /// so only the spans of the run that just ended are ever in the document it passes on).
    pub fn take_spans(&mut self) -> Vec<SpanRecord> {
        let sections = [
            self.spec_load.as_mut().map(|section| &mut section.spans),
            self.sync_safekeepers
                .as_mut()
                .map(|section| &mut section.spans),
            self.basebackup.as_mut().map(|section| &mut section.spans),
            self.extensions.as_mut().map(|section| &mut section.spans),
            self.reconcile.as_mut().map(|section| &mut section.spans),
        ];
        sections
            .into_iter()
            .flatten()
            .flat_map(std::mem::take)
            .collect()
    }
}

/// The file compute-tools leaves in a PGDATA it built, so a later start may wipe it.
pub const PGDATA_MARKER: &str = "compute-tools.pgdata";

/// The longest Unix socket path PostgreSQL accepts (sun_path less the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Chooses the Unix socket directory: PGDATA itself when `<pgdata>/.s.PGSQL.<port>` fits the
/// socket path limit, else a short directory under `/tmp` named after PGDATA.
pub fn default_socket_dir(pgdata: &Path, port: u16) -> PathBuf {
    let socket_name = format!("/.s.PGSQL.{port}");
    if pgdata.as_os_str().len() + socket_name.len() <= MAX_SOCKET_PATH {
        return pgdata.to_path_buf();
    }
    let digest = pgdata
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ *byte as u64).wrapping_mul(0x100_0000_01b3)
        });
    PathBuf::from(format!("/tmp/compute-tools-{digest:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_dir_fits_the_limit() {
        let short = Path::new("/data/pg");
        assert_eq!(default_socket_dir(short, 5432), short);
        let long = PathBuf::from(format!("/{}", "a".repeat(100)));
        let chosen = default_socket_dir(&long, 5432);
        assert!(chosen.to_string_lossy().starts_with("/tmp/compute-tools-"));
        assert!(chosen.as_os_str().len() + "/.s.PGSQL.65535".len() <= MAX_SOCKET_PATH);
        assert_eq!(chosen, default_socket_dir(&long, 5432));
    }
}
