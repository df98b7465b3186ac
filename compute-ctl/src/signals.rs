//! Signals: SIGTERM and SIGINT request a fast shutdown, SIGQUIT an immediate one. The
//! signal thread only records the request, stops a stage that is running, and wakes the
//! controller, which forwards the shutdown to pg-supervise.

use std::sync::mpsc::Sender;
use std::sync::Arc;

use compute_spec::error::StageError;
use nix::sys::signal::Signal;
use signal_hook::consts::{SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::compute::Children;
use crate::state::{ComputeStatus, Shared};
use crate::supervise::Event;

/// Starts the signal thread.
pub fn install(
    shared: Arc<Shared>,
    wake: Sender<Event>,
    children: Children,
) -> Result<(), StageError> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGQUIT])
        .map_err(|error| crate::stages::internal(format!("installing signal handlers: {error}")))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let next = if signal == SIGQUIT {
                    ComputeStatus::TerminationPendingImmediate
                } else {
                    ComputeStatus::TerminationPendingFast
                };
                tracing::info!(signal, "shutdown requested by signal");
                request_termination(&shared, next);
                children.stage.signal_group(Signal::SIGTERM);
                let _ = wake.send(Event::Wake);
            }
        })
        .map_err(|error| crate::stages::internal(format!("starting the signal thread: {error}")))?;
    Ok(())
}

/// Moves to a termination status unless one at least as strong is already pending.
pub fn request_termination(shared: &Shared, next: ComputeStatus) {
    shared.update(|inner| {
        if next == ComputeStatus::TerminationPendingImmediate {
            inner.immediate_shutdown = true;
        }
        if inner.status() != next {
            let _ = inner.transition(next);
        }
    });
}
