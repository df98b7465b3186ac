//! The `pg-lsn-lease` command line: the compute document on stdin, its LSN leased once on
//! every shard × pageserver (the leases as one JSON line on stdout), or with `--keep`
//! renewed on upstream's schedule until SIGTERM/SIGINT (one line per lease); the error
//! envelope and [`compute_spec::exit_code`]'s code on failure.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use compute_spec::error::{exit_code, ErrorKind, StageError};
use compute_spec::ids::Lsn;
use compute_spec::spec::{ComputeMode, ComputeSpec};
use stage_kit::logging::LogFormat;
use stage_kit::stage::{fail, read_input, write_json, StageInput};

use crate::{
    lease_every_shard, targets, Compute, Error, LeaseKeeper, LeaseSettings, Leases, STAGE,
};

/// Lease a compute's LSN on every shard of its pageservers, so that they keep it out of
/// garbage collection: reads the compute document on stdin (`pageserver_connection_info`
/// or `pageserver_connstring`, `tenant_id`, `timeline_id`, `storage_auth_token`, and
/// `mode: {"Static": LSN}` unless --lsn is given) and writes the leases on stdout:
/// {"lsn", "valid_until" (the earliest), "shards": [{"tenant_shard_id", "pageserver",
/// "valid_until"}]}.
///
/// Exit status: 0 leased (with --keep: stopped by SIGTERM/SIGINT); 1 a pageserver refused
/// (the LSN is below its GC cutoff), failed, or did not answer in time; 2 bad input or
/// usage (the document, a spec without pageservers or not Static without --lsn). On failure
/// stdout carries the error envelope {"error": {"stage", "kind", "message", "retryable"}}.
#[derive(Debug, clap::Parser)]
#[command(name = "pg-lsn-lease", version = stage_kit::VERSION)]
pub struct Cli {
    /// The LSN to lease (default: the spec's Static LSN).
    #[arg(long, value_name = "LSN")]
    pub lsn: Option<Lsn>,
    /// Keep the lease: renew it before it ends (max(valid − 60 s, valid / 2)), retry a
    /// failure after 0.5 s × 1.5ⁿ (at most 60 s), printing each lease, until SIGTERM or
    /// SIGINT. A refusal, or a failure of the first attempt, ends the run.
    #[arg(long)]
    pub keep: bool,
    /// Connecting and authenticating, per pageserver.
    #[arg(long, default_value = "10s", value_parser = stage_kit::deadline::parse_flag)]
    pub connect_timeout: Duration,
    /// Each pageserver's answer (every read on its connection).
    #[arg(long, default_value = "30s", value_parser = stage_kit::deadline::parse_flag)]
    pub request_timeout: Duration,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Cli {
    /// Upstream's schedule with these time limits.
    pub fn settings(&self) -> LeaseSettings {
        LeaseSettings {
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            ..LeaseSettings::default()
        }
    }
}

/// The envelope of `error`.
fn envelope(error: &Error) -> StageError {
    StageError::new(STAGE, error.kind(), error.to_string())
}

/// Runs the command; the process exit code.
pub fn run(cli: &Cli) -> ExitCode {
    let document = match read_input(STAGE) {
        Ok(StageInput::Document(document)) => document,
        Ok(StageInput::Failed(envelope)) => {
            tracing::error!("an earlier stage failed; passing its error through");
            write_json(&envelope);
            return ExitCode::from(exit_code::RUNTIME);
        }
        Err(error) => return fail(error),
    };
    let Some(spec) = document.spec else {
        return fail(envelope(&Error::NoSpec));
    };
    let lsn = match (cli.lsn, spec.mode) {
        (Some(lsn), _) | (None, ComputeMode::Static(lsn)) => lsn,
        (None, mode) => {
            return fail(envelope(&Error::NotStatic {
                mode: mode.as_setting(),
            }))
        }
    };
    // Bad input exits 2 before any pageserver is asked.
    if let Err(error) = targets::targets(&spec) {
        return fail(envelope(&Error::Spec(error)));
    }
    if cli.keep {
        return keep(spec, lsn, cli.settings());
    }
    match lease_every_shard(&spec, lsn, &cli.settings(), &AtomicBool::new(false)) {
        Ok(leases) => {
            tracing::info!(%lsn, shards = leases.shards.len(), "LSN leased");
            if write_json(&leases) {
                ExitCode::from(exit_code::OK)
            } else {
                ExitCode::from(exit_code::RUNTIME)
            }
        }
        Err(error) => fail(envelope(&error)),
    }
}

/// `--keep`: the keeper on the document's spec, each lease printed, until a signal.
fn keep(spec: ComputeSpec, lsn: Lsn, settings: LeaseSettings) -> ExitCode {
    let terminate = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // A second signal ends the process at once.
        let installed = signal_hook::flag::register_conditional_shutdown(
            signal,
            i32::from(exit_code::RUNTIME),
            terminate.clone(),
        )
        .and_then(|_| signal_hook::flag::register(signal, terminate.clone()));
        if let Err(error) = installed {
            return fail(StageError::new(
                STAGE,
                ErrorKind::Internal,
                format!("installing the signal handlers: {error}"),
            ));
        }
    }
    let (sender, outcomes) = mpsc::channel();
    let compute = Arc::new(FixedSpec::new(Some(spec), sender));
    let mut keeper = match LeaseKeeper::spawn(compute, lsn, settings.clone()) {
        Ok(keeper) => keeper,
        Err(error) => {
            return fail(StageError::new(
                STAGE,
                ErrorKind::Internal,
                format!("starting the lease thread: {error}"),
            ))
        }
    };
    let mut leased = false;
    loop {
        if terminate.load(Ordering::SeqCst) {
            keeper.stop();
            // The request under way ends within its time limits.
            let limit = settings.connect_timeout + settings.request_timeout;
            let stopping = Instant::now();
            while !keeper.is_finished() && stopping.elapsed() < limit {
                std::thread::sleep(Duration::from_millis(20));
            }
            tracing::info!(%lsn, "stopped: no more renewals");
            return ExitCode::from(exit_code::OK);
        }
        let outcome = match outcomes.recv_timeout(Duration::from_millis(100)) {
            Ok(outcome) => outcome,
            // The thread ends only after a refusal (sent before it ended) or a stop.
            Err(_) if keeper.is_finished() => match outcomes.try_recv() {
                Ok(outcome) => outcome,
                Err(_) => {
                    return fail(StageError::new(
                        STAGE,
                        ErrorKind::Internal,
                        "the lease thread ended unexpectedly",
                    ))
                }
            },
            Err(_) => continue,
        };
        match outcome {
            Ok(leases) => {
                leased = true;
                if !write_json(&leases) {
                    return ExitCode::from(exit_code::RUNTIME);
                }
            }
            // The first attempt's failure ends the run (nothing was leased); a later one is
            // retried by the keeper, which logs it.
            Err((refusal, error)) if refusal || !leased => return fail(error),
            Err(_) => {}
        }
    }
}

/// What [`FixedSpec`] passes on from each attempt: the leases, or whether a pageserver
/// refused and the envelope.
pub type Outcome = Result<Leases, (bool, StageError)>;

/// A compute whose spec never changes (the binary's document), which sends each attempt's
/// outcome on a channel.
#[derive(Debug)]
pub struct FixedSpec {
    spec: Option<ComputeSpec>,
    woken: Mutex<()>,
    wakes: Condvar,
    outcomes: Sender<Outcome>,
}

impl FixedSpec {
    /// A compute on `spec`, each attempt's outcome sent to `outcomes`.
    pub fn new(spec: Option<ComputeSpec>, outcomes: Sender<Outcome>) -> FixedSpec {
        FixedSpec {
            spec,
            woken: Mutex::new(()),
            wakes: Condvar::new(),
            outcomes,
        }
    }
}

impl Compute for FixedSpec {
    fn spec(&self) -> Option<ComputeSpec> {
        self.spec.clone()
    }

    fn wait_for_spec(&self, timeout: Duration, done: &mut dyn FnMut(Option<&ComputeSpec>) -> bool) {
        let guard = self
            .woken
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        drop(
            self.wakes
                .wait_timeout_while(guard, timeout, |_| !done(self.spec.as_ref())),
        );
    }

    fn wake(&self) {
        // Taken first, so that a waiter between its check and its wait is not missed.
        drop(
            self.woken
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        self.wakes.notify_all();
    }

    fn record(&self, attempt: &Result<Leases, Error>) {
        let outcome = match attempt {
            Ok(leases) => Ok(leases.clone()),
            Err(error) => Err((error.is_refusal(), envelope(error))),
        };
        // The receiver is gone only when the process ends.
        drop(self.outcomes.send(outcome));
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn flags_parse() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["pg-lsn-lease"]).unwrap();
        assert_eq!(cli.settings(), LeaseSettings::default());
        assert!(!cli.keep && cli.lsn.is_none());
        let cli = Cli::try_parse_from([
            "pg-lsn-lease",
            "--lsn",
            "1/A",
            "--keep",
            "--request-timeout",
            "2s",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.lsn, Some(Lsn(0x1_0000_000A)));
        assert_eq!(cli.settings().request_timeout, Duration::from_secs(2));
        assert_eq!(cli.log_format, LogFormat::Json);
        let bad = Cli::try_parse_from(["pg-lsn-lease", "--lsn", "16B3748"]).unwrap_err();
        assert!(bad.to_string().contains("two hex halves"), "{bad}");
    }
}
