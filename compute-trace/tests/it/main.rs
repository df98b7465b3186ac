//! compute-trace's integration tests as one binary: the exporter against a real OTLP receiver
//! (the official `opentelemetry-proto` classes decode every export) and against a collector
//! that never answers.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

mod receiver;
mod silent;
