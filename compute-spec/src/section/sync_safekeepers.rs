//! The `sync_safekeepers` section, written by `pg-sync-safekeepers`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::Lsn;
use crate::open_enum::open_enum;

/// The LSN the compute starts from, and how it was decided.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct SyncSafekeepersSection {
    /// The start LSN (`0/0` = latest / none).
    pub lsn: Lsn,
    /// How the LSN was decided.
    pub method: SyncMethod,
    /// Time of the `TIMELINE_STATUS` fast-path check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_sk_check_ms: Option<u64>,
    /// Time of `postgres --sync-safekeepers` (or of the upstream query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_safekeepers_ms: Option<u64>,
    /// The spans the stage recorded (compute-ctl exports and removes them); absent when it
    /// recorded none (no trace context given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<crate::trace::SpanRecord>,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_enum! {
    /// How `pg-sync-safekeepers` decided the start LSN.
    pub enum SyncMethod {
        /// No storage: nothing to sync.
        None = "none",
        /// The spec's static LSN.
        Static = "static",
        /// A replica starts at the latest LSN.
        Replica = "replica",
        /// A quorum of safekeepers agreed (`TIMELINE_STATUS`).
        SafekeepersFastPath = "safekeepers-fast-path",
        /// `postgres --sync-safekeepers` decided.
        SyncSafekeepers = "sync-safekeepers",
        /// The vanilla upstream's current WAL position.
        Upstream = "upstream",
    }
}
