//! compute-ctl's integration tests as one binary (one link of the crate and its dependencies
//! instead of one per file): each file here is a module, `cargo test --test it <module>::`
//! runs one of them. `tests/remote_ext.rs` is a binary of its own: it sets `PG_BIN_DIR` for
//! the whole process, which would move every other test's Postgres into its private
//! installation.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

mod api;
mod args;
mod auth;
mod common;
mod ext_stats;
/// pg-extensions-fetch's archive server and private Postgres installation.
#[path = "../../../pg-extensions-fetch/tests/common/mod.rs"]
mod farm;
mod hostile_http;
mod last_sync;
mod lease;
mod lifecycle;
mod migrations;
mod prewarm;
mod promote;
mod promtool;
mod reconfigure;
mod remote_ext_start;
mod reserved;
mod sql;
mod trace;
mod vm_tools;
