//! `pg_dump` streamed to a reader, as upstream's `/database_schema`: what happens is decided by
//! pg_dump's first output (a non-empty chunk → the SQL streamed; none → its exit status and
//! stderr), and pg_dump is killed when the reader goes away.
//!
//! One thread per dump owns the child from spawn to reaping (so the parent-death signal set
//! by [`stage_kit::child::spawn`], which follows the spawning *thread*, lasts exactly as long
//! as the dump), reads its stdout and hands chunks to the caller's [`Sink`] (compute-ctl's
//! HTTP body, or [`channel`]'s receiving end). Every wait is bounded: the pipe is polled in
//! short slices, so a silent pg_dump is killed after [`Limits::idle`], the whole dump after
//! [`Limits::total`], and a reader that went away is noticed within a slice even while
//! pg_dump says nothing. Once output has started, a failure (pg_dump's exit status, a
//! deadline) is told to the sink with [`Sink::fail`] instead of its normal end (the sink
//! dropped): a truncated schema never looks whole.

use std::fmt;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use stage_kit::child::STDERR_CAP;

/// Largest chunk read from pg_dump's pipe and sent as one chunk.
const CHUNK: usize = 64 * 1024;
/// Chunks waiting between the reading thread and a slow reader (see [`channel`]).
pub const CHUNKS_IN_FLIGHT: usize = 4;
/// The longest single wait on the pipe: how soon a departed client is noticed.
const SLICE: Duration = Duration::from_millis(100);

/// How long a dump may take.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest silence on pg_dump's stdout (before its first output, between chunks, and
    /// between its last output and its exit).
    pub idle: Duration,
    /// The whole dump.
    pub total: Duration,
}

/// Where the output after the first chunk goes: a dump ends by dropping its sink (complete)
/// or by [`Sink::fail`] (incomplete).
pub trait Sink: Send + 'static {
    /// Sends a chunk, waiting while the reader is behind; `Err` when it went away.
    fn send(&self, chunk: Vec<u8>) -> Result<(), Gone>;
    /// Ends the output as incomplete, saying why.
    fn fail(&self, why: String);
    /// Whether the reader went away.
    fn is_closed(&self) -> bool;
}

/// The reader went away: nothing more can be sent.
#[derive(Debug)]
pub struct Gone;

/// How a dump began.
#[derive(Debug)]
pub enum Head {
    /// pg_dump wrote this first output (not empty); the rest goes to the sink.
    Output(Vec<u8>),
    /// pg_dump exited without writing anything.
    Ended {
        /// Its exit status.
        status: ExitStatus,
        /// The first [`STDERR_CAP`] bytes of its stderr.
        stderr: Vec<u8>,
    },
    /// pg_dump could not be started, or said nothing within the idle limit (killed).
    Failed(String),
}

/// Runs `command` (pg_dump) for `database` and waits for its first output or its end; the
/// rest of a started output goes to `sink`.
pub fn start(command: Command, limits: Limits, database: String, sink: impl Sink) -> Head {
    let (head, answer) = sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("pg_dump".into())
        .spawn(move || run(command, limits, &head, &database, sink));
    if let Err(error) = spawned {
        return Head::Failed(format!("starting the pg_dump thread: {error}"));
    }
    answer
        .recv()
        .unwrap_or_else(|_| Head::Failed("the pg_dump thread ended without an answer".into()))
}

/// The dump thread: spawn, first output (or end), then the rest.
fn run(
    mut command: Command,
    limits: Limits,
    head: &SyncSender<Head>,
    database: &str,
    sink: impl Sink,
) {
    let mut dump = match Dump::spawn(&mut command) {
        Ok(dump) => dump,
        Err(error) => {
            let _ = head.send(Head::Failed(error));
            return;
        }
    };
    let first = match dump.read_chunk(limits, || false) {
        Ok(Some(first)) => first,
        Ok(None) => {
            let answer = match dump.finish(limits) {
                (Ok(status), stderr) => Head::Ended { status, stderr },
                (Err(error), _) => Head::Failed(error),
            };
            let _ = head.send(answer);
            return;
        }
        Err(end) => {
            dump.kill();
            let _ = head.send(Head::Failed(end.to_string()));
            return;
        }
    };
    let sent = first.len();
    if head.send(Head::Output(first)).is_err() {
        // The caller is gone: `dump` is dropped, which kills pg_dump.
        return;
    }
    dump.pump(&sink, limits, database, sent);
    // Dropping the sink after a success ends the output complete.
    drop(sink);
}

/// Why reading pg_dump's output stopped before its end.
#[derive(Debug)]
enum ReadEnd {
    /// Nothing for the idle limit.
    Silent(Duration),
    /// The whole dump took longer than its limit.
    TooLong(Duration),
    /// The response was dropped.
    ClientGone,
    /// Reading the pipe failed.
    Io(io::Error),
}

impl fmt::Display for ReadEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadEnd::Silent(idle) => write!(
                f,
                "pg_dump wrote nothing for {} s and was killed",
                idle.as_secs_f64()
            ),
            ReadEnd::TooLong(total) => write!(
                f,
                "pg_dump did not finish within {} s and was killed",
                total.as_secs_f64()
            ),
            ReadEnd::ClientGone => write!(f, "the client went away"),
            ReadEnd::Io(error) => write!(f, "reading pg_dump's output: {error}"),
        }
    }
}

/// A running pg_dump, killed (its process group) and reaped when dropped unless it was
/// reaped before.
struct Dump {
    child: Child,
    stdout: ChildStdout,
    stderr: Option<JoinHandle<Vec<u8>>>,
    started: Instant,
    last_output: Instant,
    reaped: bool,
}

impl Dump {
    fn spawn(command: &mut Command) -> Result<Dump, String> {
        let program = command.get_program().to_string_lossy().into_owned();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // pg_dump is no service of ours: it must not talk to systemd.
        command.env_remove(stage_kit::notify::NOTIFY_SOCKET);
        let mut child = stage_kit::child::spawn(command, nix::sys::signal::Signal::SIGKILL)
            .map_err(|error| format!("starting {program}: {error}"))?;
        let stderr = child
            .stderr
            .take()
            .map(|pipe| stage_kit::child::read_capped(pipe, STDERR_CAP, None));
        let Some(stdout) = child.stdout.take() else {
            stage_kit::child::kill_group(&mut child);
            return Err(format!("{program} has no standard output pipe"));
        };
        let now = Instant::now();
        Ok(Dump {
            child,
            stdout,
            stderr,
            started: now,
            last_output: now,
            reaped: false,
        })
    }

    /// The next chunk of output; `None` at its end.
    fn read_chunk(
        &mut self,
        limits: Limits,
        client_gone: impl Fn() -> bool,
    ) -> Result<Option<Vec<u8>>, ReadEnd> {
        loop {
            if client_gone() {
                return Err(ReadEnd::ClientGone);
            }
            let total_left = limits.total.saturating_sub(self.started.elapsed());
            if total_left.is_zero() {
                return Err(ReadEnd::TooLong(limits.total));
            }
            let idle_left = limits.idle.saturating_sub(self.last_output.elapsed());
            if idle_left.is_zero() {
                return Err(ReadEnd::Silent(limits.idle));
            }
            let wait = SLICE.min(total_left).min(idle_left);
            let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.stdout.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(error) => return Err(ReadEnd::Io(error.into())),
            }
            let mut buffer = vec![0; CHUNK];
            match self.stdout.read(&mut buffer) {
                Ok(0) => return Ok(None),
                Ok(read) => {
                    buffer.truncate(read);
                    self.last_output = Instant::now();
                    return Ok(Some(buffer));
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(ReadEnd::Io(error)),
            }
        }
    }

    /// Sends the rest of the output to `sender`; a failure ends it incomplete.
    fn pump(&mut self, sender: &impl Sink, limits: Limits, database: &str, mut sent: usize) {
        loop {
            match self.read_chunk(limits, || sender.is_closed()) {
                Ok(Some(chunk)) => {
                    sent += chunk.len();
                    if sender.send(chunk).is_err() {
                        return self.client_gone(database, sent);
                    }
                }
                Ok(None) => break,
                Err(ReadEnd::ClientGone) => return self.client_gone(database, sent),
                Err(end) => {
                    self.kill();
                    tracing::error!(database, %end, bytes = sent, "schema dump cut short");
                    return sender.fail(end.to_string());
                }
            }
        }
        match self.finish(limits) {
            (Ok(status), _) if status.success() => {
                tracing::info!(database, bytes = sent, "schema dump streamed");
            }
            (Ok(status), stderr) => {
                let stderr = String::from_utf8_lossy(&stderr);
                tracing::error!(
                    database,
                    %status,
                    stderr = %stderr.trim_end(),
                    bytes = sent,
                    "pg_dump failed after its output started; the output ends incomplete"
                );
                sender.fail(format!("pg_dump failed ({status})"));
            }
            (Err(error), _) => {
                tracing::error!(database, %error, bytes = sent, "schema dump cut short");
                sender.fail(error);
            }
        }
    }

    fn client_gone(&mut self, database: &str, sent: usize) {
        self.kill();
        tracing::warn!(
            database,
            bytes = sent,
            "the client went away during a schema dump; pg_dump was killed"
        );
    }

    /// After the end of the output: pg_dump's exit status (killed when it does not exit
    /// within the idle limit) and the start of its stderr.
    fn finish(&mut self, limits: Limits) -> (Result<ExitStatus, String>, Vec<u8>) {
        let deadline = stage_kit::deadline::after(limits.idle);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.reaped = true;
                    break Ok(status);
                }
                Ok(None) if Instant::now() >= deadline => {
                    self.kill();
                    break Err(format!(
                        "pg_dump closed its output but did not exit within {} s; killed",
                        limits.idle.as_secs_f64()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(error) => {
                    self.kill();
                    break Err(format!("waiting for pg_dump: {error}"));
                }
            }
        };
        (status, stage_kit::child::join(self.stderr.take()))
    }

    /// Kills the process group and reaps pg_dump (once).
    fn kill(&mut self) {
        if !self.reaped {
            stage_kit::child::kill_group(&mut self.child);
            self.reaped = true;
        }
    }
}

impl Drop for Dump {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A [`Sink`] over a bounded in-process channel (the `pg-catalog schema` binary's); its
/// other end is [`Chunks`].
#[derive(Debug)]
pub struct ChannelSink {
    sender: SyncSender<Result<Vec<u8>, String>>,
    closed: Arc<AtomicBool>,
}

/// The reading end of [`channel`]: the chunks in order, then `Err(why)` if the output ends
/// incomplete; dropping it is the reader going away.
#[derive(Debug)]
pub struct Chunks {
    receiver: Receiver<Result<Vec<u8>, String>>,
    closed: Arc<AtomicBool>,
}

/// A sink and its reader; at most `chunks` chunks wait between them.
pub fn channel(chunks: usize) -> (ChannelSink, Chunks) {
    let (sender, receiver) = sync_channel(chunks.max(1));
    let closed = Arc::new(AtomicBool::new(false));
    (
        ChannelSink {
            sender,
            closed: closed.clone(),
        },
        Chunks { receiver, closed },
    )
}

impl Sink for ChannelSink {
    fn send(&self, chunk: Vec<u8>) -> Result<(), Gone> {
        self.sender.send(Ok(chunk)).map_err(|_| Gone)
    }

    fn fail(&self, why: String) {
        let _ = self.sender.send(Err(why));
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

impl Iterator for Chunks {
    type Item = Result<Vec<u8>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        self.receiver.recv().ok()
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}
