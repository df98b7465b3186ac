//! The `pg-prewarm` command line: `offload` and `prewarm`, each on the compute document read
//! from stdin, printing the resulting state.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use compute_spec::{exit_code, ComputeDocument};
use serde::Serialize;
use stage_kit::logging::LogFormat;

use crate::work::{self, Location};
use crate::{storage_target, Error, OffloadState, PrewarmState};

/// Offload a Postgres's cache state, or prewarm a Postgres from one: reads the compute
/// document on stdin and writes the resulting state on stdout, e.g.
/// {"status":"completed","total":…,"prewarmed":…,"skipped":…,…}.
///
/// Exit status: 0 completed or skipped; 1 run-time failure (Postgres, endpoint storage, a
/// file that cannot be read or written), or a prewarm cancelled by SIGINT/SIGTERM (stdout:
/// {"status":"cancelled"}); 2 bad input or usage (the document, a spec lacking what endpoint
/// storage needs, a state file that is not a state). On failure stdout carries the error
/// envelope {"error": {"stage", "kind", "message", "retryable"}}.
#[derive(Debug, clap::Parser)]
#[command(name = "pg-prewarm", version = stage_kit::VERSION)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
}

/// The two runs.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Read the cache state from the running Postgres (the `neon` extension's LFC, or shared
    /// buffers through `pg_buffercache`, created if missing) and upload it to endpoint
    /// storage, or write it to --file. Prints the offload state.
    Offload {
        /// Write the state to this file (the zstd-compressed bytes endpoint storage would
        /// hold; replaced whole) instead of uploading it.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Download the cache state from endpoint storage, or read it from --file, and load it
    /// into the running Postgres (`neon.prewarm_local_cache`, or `pg_prewarm`, created if
    /// missing). Prints the prewarm state; SIGINT or SIGTERM cancels it.
    Prewarm {
        /// Read the state from this file (as written by `offload --file`) instead of
        /// endpoint storage.
        #[arg(long, value_name = "PATH", conflicts_with = "from_endpoint")]
        file: Option<PathBuf>,
        /// Download the state another endpoint of the same timeline offloaded (default: the
        /// spec's `endpoint_id`).
        #[arg(long, value_name = "ENDPOINT_ID")]
        from_endpoint: Option<String>,
    },
}

/// What a run printed: the state it ended in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    /// The end of a prewarm.
    Prewarm(PrewarmState),
    /// The end of an offload.
    Offload(OffloadState),
}

impl Outcome {
    /// 0, but 1 for a cancelled prewarm (the work was not done).
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Prewarm(PrewarmState::Cancelled) => exit_code::RUNTIME,
            _ => exit_code::OK,
        }
    }
}

impl Command {
    /// Where the state is: the file, else endpoint storage from the spec.
    pub fn location(&self, document: &ComputeDocument) -> Result<Location, Error> {
        let (file, from_endpoint) = match self {
            Command::Offload { file } => (file, None),
            Command::Prewarm {
                file,
                from_endpoint,
            } => (file, from_endpoint.as_deref()),
        };
        match file {
            Some(path) => Ok(Location::File(path.clone())),
            None => storage_target(document, from_endpoint).map(Location::Storage),
        }
    }

    /// Runs on the compute of `document`; `cancel` cancels a prewarm.
    pub fn run(&self, document: &ComputeDocument, cancel: &AtomicBool) -> Result<Outcome, Error> {
        if document.spec.is_none() {
            return Err(Error::NoSpec);
        }
        let location = self.location(document)?;
        match self {
            Command::Offload { .. } => work::offload(document, &location).map(Outcome::Offload),
            Command::Prewarm { .. } => {
                work::prewarm(document, &location, cancel).map(Outcome::Prewarm)
            }
        }
    }

    /// For a prewarm: SIGINT and SIGTERM trip `cancel` (the prewarm ends `cancelled`); a
    /// second one ends the process at once.
    pub fn cancel_on_signals(&self, cancel: &Arc<AtomicBool>) -> std::io::Result<()> {
        if let Command::Prewarm { .. } = self {
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register_conditional_shutdown(
                    signal,
                    i32::from(exit_code::RUNTIME),
                    cancel.clone(),
                )?;
                signal_hook::flag::register(signal, cancel.clone())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};
    use serde_json::json;

    use super::*;
    use crate::test_kit::{document, TENANT, TIMELINE};

    #[test]
    fn flags_parse() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["pg-prewarm", "offload", "--file", "/tmp/s"]).unwrap();
        assert!(matches!(cli.command, Command::Offload { file: Some(_) }));
        let cli = Cli::try_parse_from(["pg-prewarm", "prewarm", "--log-format", "json"]).unwrap();
        assert_eq!(cli.log_format, LogFormat::Json);
        let both = Cli::try_parse_from([
            "pg-prewarm",
            "prewarm",
            "--file",
            "/tmp/s",
            "--from-endpoint",
            "ep-2",
        ]);
        assert!(both.is_err());
        assert!(Cli::try_parse_from(["pg-prewarm"]).is_err());
    }

    #[test]
    fn the_location_is_the_file_or_endpoint_storage() {
        let spec = document(json!({
            "tenant_id": TENANT, "timeline_id": TIMELINE, "endpoint_id": "ep-1",
            "endpoint_storage_addr": "s:9", "endpoint_storage_token": "t",
        }));
        let prewarm = Command::Prewarm {
            file: None,
            from_endpoint: Some("ep-2".into()),
        };
        match prewarm.location(&spec).unwrap() {
            Location::Storage(target) => assert_eq!(
                target.url,
                format!("http://s:9/{TENANT}/{TIMELINE}/ep-2/lfc_state")
            ),
            other => panic!("{other:?}"),
        }
        let offload = Command::Offload {
            file: Some("/tmp/s".into()),
        };
        let bare = document(json!({}));
        assert_eq!(
            offload.location(&bare).unwrap(),
            Location::File("/tmp/s".into())
        );
        let error = Command::Offload { file: None }.location(&bare).unwrap_err();
        assert_eq!(error.kind(), compute_spec::ErrorKind::InvalidSpec);
    }

    #[test]
    fn outcomes_print_as_the_routes_states() {
        let cancelled = Outcome::Prewarm(PrewarmState::Cancelled);
        assert_eq!(
            serde_json::to_value(&cancelled).unwrap(),
            json!({"status": "cancelled"})
        );
        assert_eq!(cancelled.exit_code(), exit_code::RUNTIME);
        let skipped = Outcome::Offload(OffloadState::Skipped);
        assert_eq!(
            serde_json::to_value(&skipped).unwrap(),
            json!({"status": "skipped"})
        );
        assert_eq!(skipped.exit_code(), exit_code::OK);
    }
}
