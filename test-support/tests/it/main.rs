//! The test kit's own integration tests as one binary: each file here is a module,
//! `cargo test -p pg-test-support --test it <module>::` runs one of them.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

mod fake_http;
mod fake_pg;
mod majors;
mod netns;
mod postgres;
mod probe;
