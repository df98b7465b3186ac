//! Forwarding SIGTERM/SIGINT to `postgres --sync-safekeepers` while it runs.
//!
//! [`SignalForwarding::install`] registers process-wide handlers once (the binary does it in
//! `main`): while no child runs, a signal still has its default effect (the stage terminates);
//! while a child runs, the signal is only recorded, the slow path forwards it to the child's
//! process group and then fails with "interrupted". Handlers are never removed, because
//! signal-hook cannot restore the default action once replaced.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};

/// The signals forwarded.
pub const FORWARDED: [i32; 2] = [SIGTERM, SIGINT];

/// Shared state between the signal handlers and the slow path.
#[derive(Clone, Debug)]
pub struct SignalForwarding {
    received: Arc<AtomicUsize>,
    default_action: Arc<AtomicBool>,
}

impl SignalForwarding {
    /// Registers the handlers for SIGTERM and SIGINT. Call once per process.
    pub fn install() -> std::io::Result<SignalForwarding> {
        let forwarding = SignalForwarding {
            received: Arc::new(AtomicUsize::new(0)),
            default_action: Arc::new(AtomicBool::new(true)),
        };
        for signal in FORWARDED {
            signal_hook::flag::register_usize(
                signal,
                forwarding.received.clone(),
                signal as usize,
            )?;
            signal_hook::flag::register_conditional_default(
                signal,
                forwarding.default_action.clone(),
            )?;
        }
        Ok(forwarding)
    }

    /// Starts recording (not obeying) signals until the guard is dropped.
    pub fn forwarding(&self) -> ForwardingGuard<'_> {
        self.received.store(0, Ordering::SeqCst);
        self.default_action.store(false, Ordering::SeqCst);
        ForwardingGuard { state: self }
    }
}

/// While alive, signals are recorded for forwarding.
#[derive(Debug)]
pub struct ForwardingGuard<'a> {
    state: &'a SignalForwarding,
}

impl ForwardingGuard<'_> {
    /// The signal received since the guard was made, if any.
    pub fn received(&self) -> Option<i32> {
        match self.state.received.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal as i32),
        }
    }
}

impl Drop for ForwardingGuard<'_> {
    fn drop(&mut self) {
        self.state.default_action.store(true, Ordering::SeqCst);
    }
}
