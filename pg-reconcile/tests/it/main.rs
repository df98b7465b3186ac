//! pg-reconcile's integration tests as one binary (one link of the crate and its dependencies
//! instead of one per file): each file here is a module, `cargo test -p pg-reconcile --test it
//! <module>::` runs one of them.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

mod behaviour;
mod common;
mod delete_role;
mod fixtures;
mod hardening;
mod hostile;
mod migrations;
mod parallel;
mod phases;
mod quoting;
mod reconfigure;
mod reserved;
