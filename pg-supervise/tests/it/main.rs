//! pg-supervise's integration tests as one binary (one link of the crate and its dependencies
//! instead of one per file): each file here is a module, `cargo test --test it <module>::`
//! runs one of them.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

mod activity;
mod cgexec;
mod common;
mod cores;
mod lifecycle;
mod lock;
mod log_bounds;
mod pid_reuse;
mod reaping;
mod secrets;
mod shmem;
