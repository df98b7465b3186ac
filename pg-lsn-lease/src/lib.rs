//! pg-lsn-lease: LSN leases for Static (time-travel) computes, upstream's `lsn_lease.rs`
//! (reference §8): a pageserver keeps a Static compute's LSN out of garbage collection only
//! while the compute holds a lease on it.
//!
//! * [`targets`]: what a spec leases — every shard × every listed pageserver
//!   (`pageserver_connection_info`, or the legacy `pageserver_connstring` list), each with
//!   the tenant-shard id the pageserver expects.
//! * [`request`]: one `lease lsn <tenant_shard_id> <timeline_id> <lsn> ` over libpq through
//!   [`pg_wire`] (the `storage_auth_token` as password, no TLS, every wait bounded), or, when
//!   the spec prefers gRPC (`prefer_protocol: "grpc"`, as upstream), `LeaseLsn` through
//!   [`pg_page_grpc`] (the shard in the metadata, the token as `Bearer`; `FAILED_PRECONDITION`
//!   is the refusal), with the same time limits.
//! * [`lease_every_shard`]: one attempt on every target; the [`Leases`] (each
//!   `valid_until`, and the earliest), or the first refusal (NULL: below the GC cutoff) —
//!   which wins over other failures — or the first failure.
//! * [`LeaseKeeper`]: compute-ctl's lease thread, started when a Static spec is known
//!   (before the basebackup, which reads at that LSN), on the spec's LSN at start. Each
//!   attempt re-reads the spec's pageservers and token. After a lease it sleeps max(valid −
//!   60 s, valid / 2); after a failure it retries after 500 ms × 1.5ⁿ, at most 60 s, without
//!   limit ([`LeaseSettings`]); both waits end early when the pageservers or the token
//!   change. A refusal ends the thread with a warning (the compute keeps running);
//!   [`LeaseKeeper::stop`] ends it when Postgres stops. It sees its compute only through
//!   the [`Compute`] trait.
//! * [`cli`]: the `pg-lsn-lease` binary (the document on stdin, the leases on stdout, once
//!   or `--keep`; README.md).
//!
//! Errors are [`Error`]s, each naming the shard and the pageserver's endpoint (never its
//! connection string, which may hold a password, nor the token).

mod attempt;
pub mod cli;
mod error;
mod keeper;
pub mod request;
pub mod targets;

#[cfg(test)]
mod test_kit;

pub use attempt::{lease_every_shard, Leases, ShardLease};
pub use error::{Error, Failure};
pub use keeper::{Compute, LeaseKeeper, LeaseSettings, LeaseStats};
pub use request::{command, Answer};

/// The name in error envelopes.
pub const STAGE: &str = "pg-lsn-lease";
