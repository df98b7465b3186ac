//! compute-spec's integration tests as one binary (one link of the crate and its dependencies
//! instead of one per file): each file here is a module, `cargo test --test it <module>::`
//! runs one of them.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

mod fixtures;
mod grpc;
mod reserved;
mod schema;
mod sections;
