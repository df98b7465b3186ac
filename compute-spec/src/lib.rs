//! compute-spec: the shared model of compute-tools — the contract every stage speaks.
//!
//! This crate is format only (serde, schemars, thiserror for error types, humantime for
//! timestamps' text): no I/O, no processes, no network. The stage plumbing lives in
//! `stage-kit`, and the `compute-spec` binary (loading a spec from a file, stdin or a control
//! plane) in `compute-spec-cli`.
//!
//! * [`spec`]: the Neon-compatible [`ComputeSpec`](spec::ComputeSpec) (unknown fields kept,
//!   upstream's defaults), the `{spec, compute_ctl_config}` envelope, and
//!   [`validate`](spec::ComputeSpec::validate), which resolves the data source
//!   ([`StorageSource`](validate::StorageSource)) and reports every bad field at once;
//!   [`parse`]: parsing a bare spec, an envelope or either, with errors naming the JSON path;
//!   [`reserved`]: the role names and databases no spec or delta operation may take over
//!   ([`validate_for`](spec::ComputeSpec::validate_for) knows the compute's admin and
//!   privileged roles).
//! * [`ids`]: [`Lsn`](ids::Lsn), [`TenantId`](ids::TenantId), [`TimelineId`](ids::TimelineId)
//!   with upstream's text forms; [`timestamp`]: [`Timestamp`](timestamp::Timestamp), a UTC
//!   moment in RFC 3339 with milliseconds.
//! * [`document`]: the compute document that flows between stages on stdin/stdout, one
//!   section per stage ([`section`]); [`error`]: the error envelope and its kinds;
//!   [`exit_code`]: the one exit-code policy (0/1/2, Postgres's code passed through);
//!   [`event`]: the events `pg-supervise` writes; [`schema`]: the JSON Schemas of all three;
//!   [`trace`]: the spans a stage records into its section for compute-ctl to export.
//! * [`quote`]: the one module that quotes SQL identifiers, literals, dollar-quoted names and
//!   `postgresql.conf` values; [`pgconf`]: `postgresql.conf` rendering in upstream's order,
//!   refusing any value that could add a line ([`guc`]: the checks on setting names, values
//!   and free configuration text); [`sqlopt`]: the closed keyword tables of role and
//!   database options.
//!
//! Invariants: this package depends on no other package of the workspace; only its types
//! cross the pipe between stages; nothing here logs (it has no logger) and no secret is
//! printed by its `Debug` or `Display` (see [`secret::Secret`]).
//!
//! ```
//! let text = r#"{"format_version": 1.0, "cluster": {"roles": [], "databases": []}}"#;
//! let spec: compute_spec::spec::ComputeSpec = serde_json::from_str(text).unwrap();
//! assert_eq!(spec.validate(), Ok(compute_spec::validate::StorageSource::Empty));
//! ```
#![warn(missing_docs)]

pub mod document;
pub mod error;
pub mod event;
pub mod exit_code;
pub mod grpc_url;
pub mod guc;
pub mod ids;
mod open_enum;
pub mod parse;
pub mod pgconf;
pub mod quote;
pub mod reserved;
pub mod schema;
pub mod secret;
pub mod section;
pub mod shard;
pub mod spec;
pub mod sqlopt;
pub mod timestamp;
pub mod trace;
pub mod validate;

pub use document::ComputeDocument;
pub use error::{ErrorKind, StageError};
pub use ids::{Lsn, TenantId, TimelineId};
pub use spec::ComputeSpec;
pub use timestamp::Timestamp;
