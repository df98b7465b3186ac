//! pg-prewarm: a compute's cache state offloaded and prewarmed — upstream's LFC prewarm and
//! offload, and the same for vanilla Postgres.
//!
//! * [`cache`]: the state on the compute's own Postgres. Neon computes (a spec with
//!   pageservers): the `neon` extension's local file cache. Vanilla Postgres (beyond
//!   upstream): the block list of shared buffers, read with `pg_buffercache` and loaded with
//!   `pg_prewarm`, so a clone or a restarted server starts hot.
//! * [`vanilla`]: the vanilla state (a `pg_buffercache` block list), read, and loaded with
//!   `pg_prewarm` as it is parsed, in batches.
//! * [`transfer`]: endpoint storage (`GET`/`PUT` with the bearer token), a local file, zstd.
//! * [`storage`]: where the state lives in endpoint storage, from the spec.
//! * [`work`]: one timed prewarm or offload, to or from a [`work::Location`].
//! * [`Lfc`]: compute-ctl's background jobs — upstream's state machines ([`PrewarmState`],
//!   [`OffloadState`]), a second start refused while one runs, the prewarm's cancellation,
//!   the four [`Counters`], the periodic offload. It knows its compute only through the
//!   [`Compute`] trait.
//! * [`cli`]: the `pg-prewarm` binary (`offload`, `prewarm`: the compute document on stdin,
//!   the resulting state on stdout; README.md).
//!
//! Errors are [`Error`]s: the text is a failed state's `error`, the kind the binary's error
//! envelope. No token is ever in a message or a log line (the URL holds none).

pub mod cache;
pub mod cli;
mod error;
mod job;
mod state;
pub mod storage;
pub mod transfer;
pub mod vanilla;
pub mod work;

#[cfg(test)]
mod test_kit;

pub use error::Error;
pub use job::{Compute, Counters, Lfc};
pub use state::{OffloadState, PrewarmState};
pub use storage::{storage_target, StorageTarget};
pub use vanilla::{CachedFork, VanillaState, VANILLA_FORMAT};

/// The name in error envelopes.
pub const STAGE: &str = "pg-prewarm";
