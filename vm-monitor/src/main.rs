//! `vm-monitor` binary: parse flags, start the monitor, stop on SIGTERM/SIGINT.
//!
//! Failures follow the workspace's conventions: a readable line on stderr, the error envelope
//! `{"error": {"stage": "vm-monitor", …}}` on stdout, exit 2 for bad flags or configuration
//! and 1 for a failure at run time.

use std::process::ExitCode;

use clap::Parser;
use compute_spec::error::{ErrorKind, StageError};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use stage_kit::stage::fail;
use vm_monitor::cli::Args;
use vm_monitor::STAGE;

fn main() -> ExitCode {
    let args = Args::parse(); // usage errors exit 2
    stage_kit::logging::init(args.log_format);
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            let message = format!("cannot install SIGTERM/SIGINT handlers: {e}");
            return fail(StageError::new(STAGE, ErrorKind::Internal, message));
        }
    };
    let handle = match vm_monitor::start(args.to_config()) {
        Ok(h) => h,
        Err(e) => return fail(e.to_stage_error()),
    };
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "signal received; shutting down");
    }
    handle.shutdown();
    ExitCode::from(compute_spec::exit_code::OK)
}
