//! compute-sidecars' integration tests as one binary: the `compute-sidecars` program run as a
//! user would, a compute document on stdin.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

mod render;
