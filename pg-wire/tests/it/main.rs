//! pg-wire's integration tests as one binary: a real Postgres (`wire`) and scripted servers
//! attacking the limits (`wire_answer_limit`, `wire_claimed_length`).

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

mod wire;
mod wire_answer_limit;
mod wire_claimed_length;
