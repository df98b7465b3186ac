//! The supervisor's main loop: start the postmaster, wait for readiness, emit events, turn
//! signals into shutdown steps, and report how Postgres ended.
//!
//! Every other thread (postmaster/reaper, readiness, signals, activity monitor) only sends
//! [`Message`]s to this loop, which alone writes stdout; so `exited` is always the last line.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use compute_spec::document::ComputeDocument;
use compute_spec::error::{ErrorKind, StageError};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::stat::SFlag;
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};

use crate::cli::Options;
use compute_spec::event::SuperviseEvent;

use crate::event;
use crate::logs::LogTail;
use crate::monitor;
use crate::postmaster::{self, ExitStatus};
use crate::ready;
use crate::shmem;
use crate::STAGE;
use stage_kit::notify;

/// How long to wait for the postmaster after an immediate shutdown request made because start-up
/// failed, before `SIGKILL`.
const FAILED_START_GRACE: Duration = Duration::from_secs(5);
/// The debugger that prints a core dump's backtrace (looked up on `PATH`).
const DEBUGGER: &str = "gdb";

/// How long to wait for Postgres's last log lines after it exited.
const LOG_DRAIN: Duration = Duration::from_millis(300);
/// How often to retry a signal the just-spawned postmaster does not handle yet.
const SIGNAL_RETRY: Duration = Duration::from_millis(2);
/// How many log messages an error report carries.
const ERROR_LOG_MESSAGES: usize = 10;

/// What the other threads tell the main loop.
#[derive(Debug)]
pub enum Message {
    /// `postmaster.pid` said ready at this moment.
    Ready(Instant),
    /// The postmaster exited.
    Exited(ExitStatus),
    /// The supervisor received this signal.
    Signal(i32),
    /// An event to write (from the activity monitor).
    Event(SuperviseEvent),
    /// Whoever reads our stdout has gone.
    StdoutClosed,
}

/// A shutdown step, in escalation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Fast,
    Immediate,
    Kill,
}

impl Step {
    fn signal(self) -> Signal {
        match self {
            Step::Fast => Signal::SIGINT,
            Step::Immediate => Signal::SIGQUIT,
            Step::Kill => Signal::SIGKILL,
        }
    }

    fn next(self) -> Step {
        match self {
            Step::Fast => Step::Immediate,
            Step::Immediate | Step::Kill => Step::Kill,
        }
    }
}

/// How a supervised Postgres ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The postmaster's exit status.
    pub status: ExitStatus,
    /// Whether the `exited` event reached stdout.
    pub reported: bool,
}

impl Outcome {
    /// The supervisor's exit code: Postgres's code passed through, a run-time failure if it
    /// died by a signal or nobody could be told (stdout closed: whoever ran us has died).
    pub fn exit_code(self) -> u8 {
        match self.reported {
            true => self.status.supervisor_code(),
            false => compute_spec::exit_code::RUNTIME,
        }
    }
}

/// Runs Postgres from `document` until it exits; returns how it ended. A start-up failure (it
/// exits first, or is not ready in time) is an error carrying its last log messages.
pub fn supervise(document: &ComputeDocument, options: &Options) -> Result<Outcome, StageError> {
    if nix::unistd::getpid().as_raw() == 1 {
        tracing::info!("running as PID 1: reaping every orphan and forwarding signals to postgres");
    }
    let (sender, receiver) = mpsc::channel();
    forward_signals(sender.clone())?;
    watch_stdout(sender.clone());
    if let Err(error) = postmaster::become_subreaper() {
        tracing::warn!("cannot become a child subreaper ({error}); orphans will not be reaped");
    }
    if !document.pgdata.is_dir() {
        return Err(StageError::new(
            STAGE,
            ErrorKind::InvalidDocument,
            format!(
                "pgdata {} is not a directory: prepare it first (pg-basebackup-fetch)",
                document.pgdata.display()
            ),
        ));
    }
    crate::cores::enable();
    let command = postmaster::postgres_command(document, options.user.as_deref())?;
    let started = Instant::now();
    let exit_sender = sender.clone();
    let pgdata = document.pgdata.clone();
    let spawned = postmaster::spawn(command, move |pid, status| {
        // Before `exited` is reported: a killed postmaster's shared memory is gone by then.
        shmem::remove_leftovers(&pgdata, pid);
        let _ = exit_sender.send(Message::Exited(status));
    })
    .map_err(|error| {
        StageError::new(
            STAGE,
            ErrorKind::Child,
            format!("cannot start {}: {error}", document.pgbin.display()),
        )
    })?;
    tracing::info!(
        "started postgres (pid {}) in {}",
        spawned.pid,
        document.pgdata.display()
    );
    let logs = LogTail::forward(spawned.output);
    let stop = Arc::new(AtomicBool::new(false));
    let ready_sender = sender.clone();
    ready::watch(&document.pgdata, spawned.pid, stop.clone(), move |seen| {
        let _ = ready_sender.send(Message::Ready(seen));
    });
    let mut supervisor = Supervisor {
        document,
        sender,
        pid: spawned.pid,
        pidfd: spawned.pidfd,
        started,
        ready: false,
        shutdown: None,
        pending: None,
        options,
        logs,
        stop,
    };
    let result = supervisor.run(&receiver);
    supervisor.stop.store(true, Ordering::Relaxed);
    // After `exited` (stdout's last line): the backtraces go to the log only.
    crate::cores::report(
        &document.pgdata,
        &document.pgbin,
        std::path::Path::new(DEBUGGER),
    );
    result
}

/// Sends SIGTERM, SIGINT, SIGQUIT and SIGHUP to the main loop.
fn forward_signals(sender: Sender<Message>) -> Result<(), StageError> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP])
        .map_err(|error| {
            StageError::new(
                STAGE,
                ErrorKind::Internal,
                format!("installing signal handlers: {error}"),
            )
        })?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if sender.send(Message::Signal(signal)).is_err() {
                    return;
                }
            }
        })
        .map_err(|error| {
            StageError::new(
                STAGE,
                ErrorKind::Internal,
                format!("starting the signal thread: {error}"),
            )
        })?;
    Ok(())
}

/// When stdout is a pipe, tells the main loop once its reader has closed it (`poll` reports
/// `POLLERR` on a pipe's write end then), so Postgres does not run on without a supervisor's
/// reader.
fn watch_stdout(sender: Sender<Message>) {
    let is_pipe = nix::sys::stat::fstat(std::io::stdout().as_fd()).is_ok_and(|stat| {
        SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO
    });
    if !is_pipe {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("stdout".into())
        .spawn(move || {
            let stdout = std::io::stdout();
            let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
            loop {
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {
                        let closed = PollFlags::POLLERR | PollFlags::POLLHUP;
                        if fds[0]
                            .revents()
                            .is_some_and(|events| events.intersects(closed))
                        {
                            let _ = sender.send(Message::StdoutClosed);
                            return;
                        }
                    }
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => return,
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!("cannot watch stdout: {error}");
    }
}

struct Supervisor<'a> {
    document: &'a ComputeDocument,
    sender: Sender<Message>,
    pid: Pid,
    /// The postmaster's pidfd: every signal goes through it (see `postmaster::Spawned`).
    pidfd: Option<stage_kit::child::Pidfd>,
    started: Instant,
    ready: bool,
    /// The current shutdown step and when to escalate (None: never, the timeout is too large).
    shutdown: Option<(Step, Option<Instant>)>,
    /// A signal to send once the postmaster handles it.
    pending: Option<Signal>,
    options: &'a Options,
    logs: LogTail,
    stop: Arc<AtomicBool>,
}

impl Supervisor<'_> {
    fn run(&mut self, receiver: &Receiver<Message>) -> Result<Outcome, StageError> {
        loop {
            let retry = self.pending.and(Instant::now().checked_add(SIGNAL_RETRY));
            let deadline = match (self.step_deadline(), retry) {
                (Some(step), Some(retry)) => Some(step.min(retry)),
                (step, retry) => step.or(retry),
            };
            let message = match deadline {
                Some(deadline) => {
                    receiver.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                }
                None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match message {
                Ok(Message::Ready(seen)) => self.on_ready(seen),
                Ok(Message::Exited(status)) => return self.on_exit(status),
                Ok(Message::Signal(signal)) => self.on_signal(signal),
                Ok(Message::Event(event)) if self.shutdown.is_none() => self.emit(&event),
                Ok(Message::Event(_)) => {}
                Ok(Message::StdoutClosed) if self.shutdown.is_none() => {
                    tracing::error!("stdout was closed (the reader exited); stopping postgres");
                    self.begin_shutdown(Step::Fast);
                }
                Ok(Message::StdoutClosed) => {}
                Err(RecvTimeoutError::Timeout) if self.pending.is_some() && !self.step_due() => {
                    self.retry_pending()
                }
                Err(RecvTimeoutError::Timeout) if self.shutdown.is_some() => self.escalate(),
                Err(RecvTimeoutError::Timeout) => return Err(self.not_ready(receiver)),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(StageError::new(
                        STAGE,
                        ErrorKind::Internal,
                        "the supervisor's threads ended unexpectedly",
                    ))
                }
            }
        }
    }

    fn on_ready(&mut self, seen: Instant) {
        if self.ready || self.shutdown.is_some() {
            return;
        }
        self.ready = true;
        let start_postgres_ms = millis(seen.saturating_duration_since(self.started));
        tracing::info!("postgres is ready after {start_postgres_ms} ms");
        self.emit(&SuperviseEvent::Ready {
            pid: self.pid.as_raw(),
            start_postgres_ms,
        });
        if self.options.notify {
            notify::notify_or_warn("READY=1");
        }
        if self.options.monitor {
            self.start_monitor();
        }
    }

    fn start_monitor(&self) {
        let sender = self.sender.clone();
        let started = monitor::start(self.document, self.stop.clone(), move |event| {
            sender.send(Message::Event(event)).is_ok()
        });
        if let Err(error) = started {
            tracing::error!("the activity monitor is not running: {}", error.message);
        }
    }

    /// Writes an event; a closed stdout means our consumer is gone, so Postgres is stopped.
    fn emit(&mut self, line: &SuperviseEvent) {
        if !event::emit(line) && self.shutdown.is_none() {
            tracing::error!("stdout is closed; stopping postgres");
            self.begin_shutdown(Step::Fast);
        }
    }

    fn on_signal(&mut self, signal: i32) {
        if signal == SIGHUP {
            tracing::info!("forwarding SIGHUP to postgres (reload)");
            self.send(Signal::SIGHUP);
            return;
        }
        match self.shutdown {
            Some(_) => self.escalate(),
            None if signal == SIGQUIT => self.begin_shutdown(Step::Immediate),
            None => self.begin_shutdown(Step::Fast),
        }
    }

    fn begin_shutdown(&mut self, step: Step) {
        if self.shutdown.is_none() {
            self.stop.store(true, Ordering::Relaxed);
            if self.options.notify {
                notify::notify_or_warn("STOPPING=1");
            }
        }
        tracing::info!(
            "{} shutdown of postgres (sending {})",
            match step {
                Step::Fast => "fast",
                Step::Immediate => "immediate",
                Step::Kill => "forced",
            },
            step.signal()
        );
        let deadline = Instant::now().checked_add(self.options.shutdown_timeout);
        self.shutdown = Some((step, deadline));
        self.send(step.signal());
    }

    fn escalate(&mut self) {
        let next = self.shutdown.map_or(Step::Fast, |(step, _)| step.next());
        self.begin_shutdown(next);
    }

    /// When the current step (start-up or shutdown) times out.
    fn step_deadline(&self) -> Option<Instant> {
        match self.shutdown {
            Some((_, deadline)) => deadline,
            None if !self.ready => self.started.checked_add(self.options.ready_timeout),
            None => None,
        }
    }

    fn step_due(&self) -> bool {
        self.step_deadline()
            .is_some_and(|deadline| deadline <= Instant::now())
    }

    /// Sends `signal` to the postmaster, or, while it does not handle the signal yet (it has
    /// just been spawned: the default action would kill it without a clean shutdown), keeps it
    /// pending to retry every [`SIGNAL_RETRY`]. `SIGKILL` is sent at once.
    fn send(&mut self, signal: Signal) {
        if signal != Signal::SIGKILL && !postmaster::catches(self.pid, signal) {
            tracing::debug!("postgres does not handle {signal} yet; sending it shortly");
            self.pending = Some(signal);
            return;
        }
        self.pending = None;
        postmaster::signal_postmaster(self.pid, self.pidfd.as_ref(), signal);
    }

    fn retry_pending(&mut self) {
        if let Some(signal) = self.pending {
            self.send(signal);
        }
    }

    fn on_exit(&mut self, status: ExitStatus) -> Result<Outcome, StageError> {
        self.stop.store(true, Ordering::Relaxed);
        self.logs.wait_eof(LOG_DRAIN);
        if !self.ready && self.shutdown.is_none() {
            return Err(StageError::new(
                STAGE,
                ErrorKind::Postgres,
                format!(
                    "postgres exited during start-up with {status}; fix the cause shown in its \
                     last log messages:\n{}",
                    self.logs.last(ERROR_LOG_MESSAGES).join("\n")
                ),
            ));
        }
        if self.shutdown.is_none() {
            tracing::error!("postgres exited unexpectedly with {status}");
        } else {
            tracing::info!("postgres exited with {status}");
        }
        let (code, signal) = status.code_and_signal();
        let reported = event::emit(&SuperviseEvent::Exited { code, signal });
        Ok(Outcome { status, reported })
    }

    /// Start-up timed out: stop Postgres (immediate, then SIGKILL) and report.
    fn not_ready(&mut self, receiver: &Receiver<Message>) -> StageError {
        self.stop.store(true, Ordering::Relaxed);
        let timeout = self.options.ready_timeout;
        tracing::error!("postgres was not ready within {timeout:?}; stopping it");
        for signal in [Signal::SIGQUIT, Signal::SIGKILL] {
            postmaster::signal_postmaster(self.pid, self.pidfd.as_ref(), signal);
            if wait_exit(receiver, FAILED_START_GRACE).is_some() {
                break;
            }
        }
        self.logs.wait_eof(LOG_DRAIN);
        StageError::new(
            STAGE,
            ErrorKind::Timeout,
            format!(
                "postgres was not ready within {}: raise --ready-timeout or fix the cause in its \
                 last log messages:\n{}",
                humantime::format_duration(timeout),
                self.logs.last(ERROR_LOG_MESSAGES).join("\n")
            ),
        )
    }
}

fn wait_exit(receiver: &Receiver<Message>, timeout: Duration) -> Option<ExitStatus> {
    let deadline = stage_kit::deadline::after(timeout);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(Message::Exited(status)) => return Some(status),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_steps_escalate_to_sigkill() {
        assert_eq!(Step::Fast.signal(), Signal::SIGINT);
        assert_eq!(Step::Fast.next(), Step::Immediate);
        assert_eq!(Step::Immediate.signal(), Signal::SIGQUIT);
        assert_eq!(Step::Immediate.next(), Step::Kill);
        assert_eq!(Step::Kill.next(), Step::Kill);
        assert_eq!(Step::Kill.signal(), Signal::SIGKILL);
    }
}
