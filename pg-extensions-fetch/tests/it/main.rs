//! pg-extensions-fetch's integration tests as one binary (one link of the crate and its
//! dependencies instead of one per file): each file here is a module, `cargo test --test it
//! <module>::` runs one of them. `tests/postgres.rs` is a binary of its own: it sets
//! `PG_BIN_DIR` for the whole process, which would move every other test's Postgres into its
//! private installation.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

/// The archive server and private installation, shared with `tests/postgres.rs`.
#[path = "../common/mod.rs"]
mod common;
mod download;
mod stage;
mod url;
