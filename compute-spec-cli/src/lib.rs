//! The `compute-spec` stage: load a spec (file, inline, envelope, stdin, the embedded sample
//! or a control plane), validate it, and write the first compute document.
//!
//! * [`load`]: where a spec comes from ([`load::SpecSource`]) and fetching it — files and
//!   stdin, or `GET …/compute/api/v2/computes/{id}/spec` with retries and a deadline on the
//!   whole answer; parsing is `compute_spec::parse`.
//! * [`begin`]: building the compute document from the loaded spec and the instance flags.
//! * [`cli`]: the flags, shared with `compute-ctl` ([`cli::SpecSourceArgs`],
//!   [`cli::InstanceArgs`]), and the stage's `run`.
#![warn(missing_docs)]

pub mod begin;
pub mod cli;
pub mod load;
