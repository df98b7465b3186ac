//! The states of the two jobs, as upstream's routes answer them: `GET /lfc/prewarm` and
//! `GET /lfc/offload` (internally tagged by `status`, snake case), and what the binary prints.

use serde::{Deserialize, Serialize};

/// Prewarm state (`GET /lfc/prewarm`), e.g. `{"status":"not_prewarmed"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PrewarmState {
    /// Initial.
    #[default]
    NotPrewarmed,
    /// A prewarm is running.
    Prewarming,
    /// Done.
    Completed {
        /// Pages in the state.
        total: i32,
        /// Pages loaded.
        prewarmed: i32,
        /// Pages skipped.
        skipped: i32,
        /// Download time.
        state_download_time_ms: u32,
        /// Decompression time.
        uncompress_time_ms: u32,
        /// Load time.
        prewarm_time_ms: u32,
    },
    /// Failed.
    Failed {
        /// What failed.
        error: String,
    },
    /// No state was stored for the endpoint.
    Skipped,
    /// Cancelled (`DELETE /lfc/prewarm`, or a signal to the binary).
    Cancelled,
}

/// Offload state (`GET /lfc/offload`), e.g. `{"status":"not_offloaded"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum OffloadState {
    /// Initial.
    #[default]
    NotOffloaded,
    /// An offload is running.
    Offloading,
    /// Done.
    Completed {
        /// Time to read the LFC state.
        state_query_time_ms: u32,
        /// Compression time.
        compress_time_ms: u32,
        /// Upload time.
        state_upload_time_ms: u32,
    },
    /// Failed.
    Failed {
        /// What failed.
        error: String,
    },
    /// The LFC had no state to offload.
    Skipped,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn states_serialise_as_upstream() {
        assert_eq!(
            serde_json::to_value(PrewarmState::NotPrewarmed).unwrap(),
            json!({"status": "not_prewarmed"})
        );
        assert_eq!(
            serde_json::to_value(PrewarmState::Completed {
                total: 3,
                prewarmed: 2,
                skipped: 1,
                state_download_time_ms: 4,
                uncompress_time_ms: 5,
                prewarm_time_ms: 6
            })
            .unwrap(),
            json!({"status": "completed", "total": 3, "prewarmed": 2, "skipped": 1,
                   "state_download_time_ms": 4, "uncompress_time_ms": 5, "prewarm_time_ms": 6})
        );
        assert_eq!(
            serde_json::to_value(PrewarmState::Failed { error: "e".into() }).unwrap(),
            json!({"status": "failed", "error": "e"})
        );
        assert_eq!(
            serde_json::to_value(PrewarmState::Cancelled).unwrap(),
            json!({"status": "cancelled"})
        );
        assert_eq!(
            serde_json::to_value(OffloadState::NotOffloaded).unwrap(),
            json!({"status": "not_offloaded"})
        );
        assert_eq!(
            serde_json::to_value(OffloadState::Completed {
                state_query_time_ms: 1,
                compress_time_ms: 2,
                state_upload_time_ms: 3
            })
            .unwrap(),
            json!({"status": "completed", "state_query_time_ms": 1, "compress_time_ms": 2, "state_upload_time_ms": 3})
        );
        assert_eq!(
            serde_json::to_value(OffloadState::Skipped).unwrap(),
            json!({"status": "skipped"})
        );
    }
}
