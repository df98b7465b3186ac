//! The end-to-end tests as one binary (one link of the workspace instead of one per file):
//! each file here is a module, `cargo test -p compute-tools-tests --test it <module>::` runs
//! one of them (e.g. `netfault::` for the network-fault tests).

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

mod alerts;
mod audit;
mod audit_tls;
mod cli;
mod compat;
mod compute_ctl;
mod contracts;
mod grpc;
mod local_proxy;
mod netfault;
mod operator_input;
mod pgbouncer;
mod pgdata_lock;
mod pipeline;
mod readme;
mod termination;
mod tidy;
mod tls;
mod trace;
