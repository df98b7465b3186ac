//! `pg-supervise`: owns the postmaster of a compute.
//!
//! Reads the compute document on stdin (whole, until end of file) and uses its `pgbin`,
//! `pgdata`, `instance` (port and socket directory, for the activity monitor's connection),
//! `connstr` (the admin user), and from the spec `storage_auth_token` (as `NEON_AUTH_TOKEN`) and
//! `features`. It writes no document section: its stdout is a stream of JSON events, one a line
//! (see [`event`]): `ready`, `activity`, `downtime`, and `exited` last. On a start-up failure it
//! writes the error envelope instead of `ready` and exits 1; bad input (not a document, no
//! data directory, an unknown `--user`) exits 2 with the envelope. An error envelope on stdin
//! is passed through (exit 1).
//!
//! Invariants:
//! - only this package starts or signals the postmaster; it never outlives the supervisor
//!   (parent-death signal, spawned from a thread that lives as long as it does);
//! - stdout is written by one thread only, so `exited` is always the last line;
//! - the exit code is Postgres's, 1 when it died by a signal, failed to start, or the `exited`
//!   event could not be written (stdout closed: Postgres is then stopped at once, fast);
//! - SIGTERM/SIGINT mean a fast shutdown, SIGQUIT immediate; a further signal or
//!   `--shutdown-timeout` escalates (fast → immediate → SIGKILL);
//! - secrets (the storage token) are passed in the environment, never logged; Postgres's log
//!   messages are redacted (password literals, SCRAM verifiers, md5 hashes) before they are
//!   forwarded or kept ([`redact`]); the log pipeline is bounded (lines, messages, lines in
//!   flight: [`logs`]) and a cut never lets a secret through;
//! - after the postmaster exits, the shared memory it left (killed: System V and POSIX
//!   segments) is removed before `exited` is written, only what provably is its own
//!   ([`shmem`]);
//! - PGDATA has one owner: the lock `<pgdata>.compute-tools.lock` is held (compute-ctl's,
//!   inherited, or taken when run by hand, `--pgdata-lock-timeout`) before Postgres starts,
//!   and the postmaster inherits it ([`stage_kit::pgdata_lock`]);
//! - nothing between fork and exec allocates, locks or reads files (`pre_exec` closures make
//!   system calls only);
//! - the postmaster thread is the only one that waits for children (`waitpid(-1)`, which also
//!   reaps orphans): nothing else in this process may spawn and wait for a child.
//!
//! Tests: unit tests next to the code; real-Postgres tests in `pg-supervise/tests/`.

#![warn(missing_docs)]

pub mod cli;
pub mod cores;
pub mod event;
pub mod logs;
pub mod monitor;
pub mod postmaster;
pub mod ready;
pub mod redact;
pub mod shmem;
pub mod supervise;

use std::process::ExitCode;

use compute_spec::exit_code;
use stage_kit::stage::{self, StageInput};

pub use cli::{Cli, Options};

/// The stage name in error envelopes.
pub const STAGE: &str = "pg-supervise";

/// Reads the document on stdin and supervises Postgres; returns the process exit code.
pub fn run(options: &Options) -> ExitCode {
    let document = match stage::read_input(STAGE) {
        Ok(StageInput::Document(document)) => document,
        Ok(StageInput::Failed(envelope)) => {
            tracing::error!("an earlier stage failed; passing its error through");
            stage::write_json(&envelope);
            return ExitCode::from(exit_code::RUNTIME);
        }
        Err(error) => return stage::fail(error),
    };
    // One owner per PGDATA; the postmaster inherits the lock (and keeps it if orphaned).
    let _lock = match stage_kit::pgdata_lock::for_stage(
        STAGE,
        &document.pgdata,
        options.pgdata_lock_timeout,
    ) {
        Ok(lock) => lock,
        Err(error) => return stage::fail(error),
    };
    match supervise::supervise(&document, options) {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(error) => stage::fail(error),
    }
}
