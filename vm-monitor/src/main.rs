//! `vm-monitor` binary: parse flags, start the monitor, stop on SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use vm_monitor::cli::{init_logging, Args};

fn main() -> ExitCode {
    let args = Args::parse(); // usage errors exit 2
    if let Err(e) = init_logging(args.log_format) {
        eprintln!("vm-monitor: {e}");
        return ExitCode::from(1);
    }
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vm-monitor: cannot install SIGTERM/SIGINT handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let handle = match vm_monitor::start(args.to_config()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("vm-monitor: {e}");
            return ExitCode::from(if e.is_usage() { 2 } else { 1 });
        }
    };
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "signal received; shutting down");
    }
    handle.shutdown();
    ExitCode::SUCCESS
}
