//! The `basebackup` section, written by `pg-basebackup-fetch`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::open_enum::open_enum;

/// How PGDATA was prepared.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct BasebackupSection {
    /// Where the data came from.
    pub source: BasebackupSource,
    /// Time to connect to the pageserver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pageserver_connect_micros: Option<u64>,
    /// Total time to prepare the data (fetch and unpack, or initdb).
    pub basebackup_ms: u64,
    /// Bytes read from the wire (compressed, for a pageserver).
    pub basebackup_bytes: u64,
    /// Fetch attempts made (the last one succeeded); absent for `initdb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Files written to PGDATA; absent for `initdb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// Bytes written to PGDATA (uncompressed); absent for `initdb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpacked_bytes: Option<u64>,
    /// How the template cache served an `initdb` source; absent for the other sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateOutcome>,
    /// The spans the stage recorded (compute-ctl exports and removes them); absent when it
    /// recorded none (no trace context given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<crate::trace::SpanRecord>,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_enum! {
    /// Where `pg-basebackup-fetch` got PGDATA from.
    pub enum BasebackupSource {
        /// A Neon pageserver (`basebackup` over COPY OUT).
        Pageserver = "pageserver",
        /// A vanilla primary (`BASE_BACKUP` over replication).
        Upstream = "upstream",
        /// A fresh cluster from `initdb`.
        Initdb = "initdb",
    }
}

open_enum! {
    /// How `pg-basebackup-fetch`'s template cache made PGDATA for the `initdb` source.
    pub enum TemplateOutcome {
        /// Copied from a valid template.
        Hit = "hit",
        /// No valid template: `initdb` built one, then it was copied.
        Miss = "miss",
        /// The cache is off: `initdb` ran straight into PGDATA.
        Off = "off",
        /// The cache failed (logged); `initdb` ran straight into PGDATA.
        Fallback = "fallback",
    }
}
