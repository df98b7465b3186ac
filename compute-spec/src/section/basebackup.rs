//! The `basebackup` section, written by `pg-basebackup-fetch`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How PGDATA was prepared.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct BasebackupSection {
    /// `pageserver`, `upstream` or `initdb`.
    pub source: String,
    /// Time to connect to the pageserver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pageserver_connect_micros: Option<u64>,
    /// Total time to prepare the data (fetch and unpack, or initdb).
    pub basebackup_ms: u64,
    /// Bytes read from the wire (compressed, for a pageserver).
    pub basebackup_bytes: u64,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
