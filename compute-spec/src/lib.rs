//! compute-spec: the shared model of compute-tools, and its first stage.
//!
//! * [`spec`]: the Neon-compatible [`ComputeSpec`](spec::ComputeSpec) (unknown fields kept,
//!   upstream's defaults), the `{spec, compute_ctl_config}` envelope, and
//!   [`validate`](spec::ComputeSpec::validate), which resolves the data source
//!   ([`StorageSource`](validate::StorageSource)) and reports every bad field at once.
//! * [`ids`]: [`Lsn`](ids::Lsn), [`TenantId`](ids::TenantId), [`TimelineId`](ids::TimelineId)
//!   with upstream's text forms.
//! * [`document`]: the compute document that flows between stages on stdin/stdout, one
//!   section per stage ([`section`]); [`error`]: the error envelope and its kinds;
//!   [`exit_code`]: the one exit-code policy (0/1/2, Postgres's code passed through);
//!   [`stage`]: the stdin → stage → stdout plumbing every stage binary shares.
//! * [`quote`]: the one module that quotes SQL identifiers, literals, dollar-quoted names and
//!   `postgresql.conf` values; [`pgconf`]: `postgresql.conf` rendering in upstream's order,
//!   refusing any value that could add a line ([`guc`]: the checks on setting names, values
//!   and free configuration text); [`sqlopt`]: the closed keyword tables of role and
//!   database options.
//! * [`load`]: obtaining a spec (file, inline, envelope, stdin, embedded sample, control
//!   plane); [`begin`]: building the document from flags.
//! * [`deadline`]: deadlines from input durations that saturate instead of panicking.
//! * [`runas`]: dropping from root to the `postgres` OS user; [`local`]: the tools' admin
//!   connection to their own Postgres; [`logging`]: stderr logging for every binary.
//!
//! Invariants: this package depends on no other package of the workspace; only its types
//! cross the pipe between stages; nothing here logs a secret (see [`secret::Secret`]).
//!
//! ```
//! let text = r#"{"format_version": 1.0, "cluster": {"roles": [], "databases": []}}"#;
//! let spec: compute_spec::spec::ComputeSpec = serde_json::from_str(text).unwrap();
//! assert_eq!(spec.validate(), Ok(compute_spec::validate::StorageSource::Empty));
//! ```
#![warn(missing_docs)]

pub mod begin;
pub mod cli;
pub mod deadline;
pub mod document;
pub mod error;
pub mod event;
pub mod exit_code;
pub mod guc;
pub mod ids;
pub mod load;
pub mod local;
pub mod logging;
pub mod notify;
mod open_enum;
pub mod pgconf;
pub mod quote;
pub mod runas;
pub mod schema;
pub mod secret;
pub mod section;
pub mod spec;
pub mod sqlopt;
pub mod stage;
pub mod validate;
pub mod wire;

/// The version every binary of the workspace reports: the package version and the git commit
/// it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("COMPUTE_TOOLS_GIT_HASH"),
    ")"
);

pub use document::ComputeDocument;
pub use error::{ErrorKind, StageError};
pub use ids::{Lsn, TenantId, TimelineId};
pub use spec::ComputeSpec;
