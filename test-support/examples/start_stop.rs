//! Times the test kit's servers for `scripts/bench-test-postgres.sh`: a [`TestPostgres`]
//! start (the first may build the template), a second start (a template copy), and a drop
//! (immediate shutdown and removal), `RUNS` times. Prints one line a run:
//! `first_ms second_ms drop_ms`.
//!
//! Usage: `start_stop [RUNS]` (default 10).

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::process::ExitCode;
use std::time::Instant;

use pg_test_support::TestPostgres;

fn main() -> ExitCode {
    let runs: u32 = match std::env::args().nth(1).map(|arg| arg.parse()) {
        None => 10,
        Some(Ok(runs)) => runs,
        Some(Err(error)) => {
            eprintln!("start_stop: RUNS must be a whole number: {error}");
            return ExitCode::from(2);
        }
    };
    for _ in 0..runs {
        let started = Instant::now();
        let first = TestPostgres::start();
        let first_ms = started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        let second = TestPostgres::start();
        let second_ms = started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        drop(second);
        let drop_ms = started.elapsed().as_secs_f64() * 1000.0;
        drop(first);
        println!("{first_ms:.1} {second_ms:.1} {drop_ms:.1}");
    }
    ExitCode::SUCCESS
}
