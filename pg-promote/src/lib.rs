//! pg-promote: a streaming replica promoted to a primary — upstream compute_ctl's `/promote`
//! for a Neon replica, and (beyond upstream) the same for a vanilla replica of
//! `upstream_connstring`.
//!
//! * [`Promotion`]: the single flight. As upstream, the first promotion's result, failures
//!   included, is the answer to every later or concurrent call for the life of the value;
//!   concurrent callers wait for it. A request whose spec fails validation is refused
//!   ([`InvalidSpec`]) before anything runs, and is not that result.
//! * `steps` (run through [`Promotion::promote`] or [`run`]): upstream's steps (1) the
//!   compute's mode is `Replica`; (2) prewarm state not `not_prewarmed`/`prewarming` (Neon
//!   replicas only); (3) replay reaches `wal_flush_lsn` (`null` for a vanilla replica: the
//!   primary's current WAL insert position); (4) `neon.safekeepers` points at the new
//!   safekeepers (Neon only); (5) `pg_promote()`; (6) the server takes writes; (7) the new
//!   spec is applied by the caller ([`Host::reconfigure`]).
//! * [`Host`]: what a promotion sees of its compute — the current document and status, the
//!   prewarm state, the compute's own spec validation, the reconfiguration. compute-ctl
//!   implements it on its HTTP state; the binary on the document it read.
//! * [`cli`]: the `pg-promote` binary (the replica's compute document on stdin, the result on
//!   stdout, in the shape of the route's answer; README.md).
//!
//! Results are [`PromoteState`]s (`{"status":"completed",…}` / `{"status":"failed","error"}`);
//! failures are [`Error`]s, worded as upstream's where upstream has the case, whose
//! [`Error::kind`] is the binary's error envelope kind. A connection string's password is
//! never in a message.

pub mod cli;
mod error;
mod steps;

use std::sync::OnceLock;

use compute_spec::ids::Lsn;
use compute_spec::spec::ComputeSpec;
use compute_spec::validate::SpecErrors;
use compute_spec::ComputeDocument;
use pg_prewarm::PrewarmState;
use serde::{Deserialize, Serialize};

pub use error::{Error, InvalidSpec};
pub use steps::{run, Timings};

/// The name in error envelopes and the prefix of the sessions' `application_name`.
pub const STAGE: &str = "pg-promote";

/// A promotion request: the `/promote` body.
#[derive(Clone, Debug, Deserialize)]
pub struct PromoteRequest {
    /// The spec of the new primary.
    pub spec: ComputeSpec,
    /// The LSN replay must reach first. The field is required, as upstream (a body without
    /// it is a 422); `null` — only for a vanilla replica, beyond upstream — means the
    /// primary's current WAL position (`pg_current_wal_insert_lsn()`).
    #[serde(deserialize_with = "present_or_null")]
    pub wal_flush_lsn: Option<Lsn>,
}

/// Deserialises an `Option` whose field must be present (serde requires a field with
/// `deserialize_with` and no `default`), `null` giving `None`.
fn present_or_null<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Lsn>, D::Error> {
    Option::<Lsn>::deserialize(deserializer)
}

/// The compute's status, as far as a promotion cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Running: only a running replica is promoted.
    Running,
    /// Anything else, by the name the compute reports (`empty`, `init`, …).
    Other(String),
}

/// What a promotion sees of its compute.
pub trait Host {
    /// The current document (`None`: none yet) and status.
    fn current(&self) -> (Option<ComputeDocument>, Status);
    /// The state of the compute's LFC prewarm, which a Neon replica must have finished;
    /// `None` when this host runs no prewarm (the rule does not apply).
    fn prewarm_state(&self) -> Option<PrewarmState>;
    /// The compute's own checks of a new spec, beyond [`ComputeSpec::validate`] (the names
    /// it reserves: its admin and privileged roles).
    fn validate(&self, spec: &ComputeSpec) -> Result<(), SpecErrors>;
    /// Step 7, once `pg_promote()` succeeded: stores `spec` and reconfigures the compute as
    /// the new primary, returning once that is done. The error says what went wrong (the
    /// promotion reports it as `promoted, but <error>`).
    fn reconfigure(&self, spec: ComputeSpec) -> Result<(), String>;
}

/// The outcome of a promotion, as upstream's route answers it:
/// `{"status":"completed","lsn_wait_time_ms","pg_promote_time_ms","reconfigure_time_ms"}` or
/// `{"status":"failed","error"}` (upstream's `not_promoted` is never an answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PromoteState {
    /// Promoted and reconfigured.
    Completed(Timings),
    /// Failed.
    Failed {
        /// What failed (its text in the JSON).
        #[serde(serialize_with = "as_text")]
        error: Error,
    },
}

fn as_text<S: serde::Serializer>(error: &Error, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(error)
}

impl From<Result<Timings, Error>> for PromoteState {
    fn from(result: Result<Timings, Error>) -> PromoteState {
        match result {
            Ok(timings) => PromoteState::Completed(timings),
            Err(error) => PromoteState::Failed { error },
        }
    }
}

/// The single-flight promotion of one compute.
#[derive(Debug, Default)]
pub struct Promotion {
    result: OnceLock<PromoteState>,
}

impl Promotion {
    /// No promotion yet.
    pub fn new() -> Promotion {
        Promotion::default()
    }

    /// The result, if a promotion ran.
    pub fn result(&self) -> Option<&PromoteState> {
        self.result.get()
    }

    /// Promotes the compute of `host` as `request` asks, once: the result of the first run,
    /// failed or not, is the answer to this and every later call (a concurrent call waits
    /// for it). A spec that fails validation ([`ComputeSpec::validate`], then
    /// [`Host::validate`]) is refused before anything runs.
    pub fn promote(
        &self,
        host: &dyn Host,
        request: &PromoteRequest,
    ) -> Result<&PromoteState, InvalidSpec> {
        request.spec.validate().map_err(InvalidSpec)?;
        host.validate(&request.spec).map_err(InvalidSpec)?;
        Ok(self.result.get_or_init(|| {
            let state = PromoteState::from(run(host, request));
            match &state {
                PromoteState::Completed(timings) => {
                    tracing::info!(?timings, "promotion completed");
                }
                PromoteState::Failed { error } => tracing::error!(%error, "promotion failed"),
            }
            state
        }))
    }
}

#[cfg(test)]
mod tests;
