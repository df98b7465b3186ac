//! Running a short-lived program to completion: forked on the calling thread (which waits
//! for it, so the parent-death signal lasts exactly as long as the run), in its own process
//! group, SIGKILL when this process dies; stdout kept up to a cap, stderr up to
//! [`STDERR_CAP`]. At the deadline, or once stdout passes the cap, the whole group is killed.
//! The run ends once the program exited *and* its output pipes closed (a process it left in
//! its group holding them counts as still running). The child is reaped in every case, and
//! only after the group was killed or the run ended: its exit is noticed without reaping it,
//! so its pid still names its group when the group is killed.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

/// Standard error kept for the reply and the log; the rest is read and dropped.
pub const STDERR_CAP: usize = 64 * 1024;

/// How often the child is polled while it runs.
const POLL: Duration = Duration::from_millis(5);

/// After the group was killed, how long the output readers get to see their pipes close (a
/// process that left the group may still hold them; its output is then abandoned).
const READER_GRACE: Duration = Duration::from_secs(1);

/// What a program wrote, once it exited by itself.
#[derive(Debug)]
pub struct Output {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output (at most the cap given to [`run`]).
    pub stdout: Vec<u8>,
    /// The first [`STDERR_CAP`] bytes of its standard error.
    pub stderr: Vec<u8>,
}

/// Why a program gave no [`Output`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// It could not be started.
    #[error("starting {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The error of `spawn`.
        source: std::io::Error,
    },
    /// It (or a process of its group holding its output) ran past its deadline; the group
    /// was killed.
    #[error("{program} did not finish within {} s and was killed", deadline.as_secs_f64())]
    TimedOut {
        /// The program.
        program: String,
        /// The deadline.
        deadline: Duration,
    },
    /// Its standard output went past the cap; the group was killed.
    #[error("{program} wrote more than {cap} bytes and was killed")]
    TooLarge {
        /// The program.
        program: String,
        /// The cap.
        cap: usize,
    },
    /// Waiting for it failed; the group was killed.
    #[error("waiting for {program}: {source}")]
    Wait {
        /// The program.
        program: String,
        /// The error of `waitid`.
        source: std::io::Error,
    },
}

/// Runs `command` (stdin closed) to completion within `deadline`, keeping at most
/// `stdout_cap` bytes of its standard output. `Duration::MAX` waits without a deadline.
pub fn run(
    command: &mut Command,
    deadline: Duration,
    stdout_cap: usize,
) -> Result<Output, RunError> {
    run_inner(command, None, deadline, stdout_cap)
}

/// [`run`] with `input` written to the program's standard input (then closed; a program
/// that does not read it all is not an error).
pub fn run_with_input(
    command: &mut Command,
    input: &[u8],
    deadline: Duration,
    stdout_cap: usize,
) -> Result<Output, RunError> {
    run_inner(command, Some(input), deadline, stdout_cap)
}

fn run_inner(
    command: &mut Command,
    input: Option<&[u8]>,
    deadline: Duration,
    stdout_cap: usize,
) -> Result<Output, RunError> {
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = super::spawn(command, Signal::SIGKILL).map_err(|source| RunError::Spawn {
        program: program.clone(),
        source,
    })?;
    // Not joined: it ends when the program closes its stdin or the group dies (EPIPE).
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let overflow = Arc::new(AtomicBool::new(false));
    let stdout = child
        .stdout
        .take()
        .map(|pipe| read_capped(pipe, stdout_cap, Some(overflow.clone())));
    let stderr = child
        .stderr
        .take()
        .map(|pipe| read_capped(pipe, STDERR_CAP, None));
    let until = crate::deadline::after(deadline);
    let mut exited = false;
    let outcome = loop {
        if !exited {
            match super::exited_unreaped(&child, false) {
                Ok(done) => exited = done,
                Err(source) => {
                    break Err(RunError::Wait {
                        program: program.clone(),
                        source,
                    })
                }
            }
        }
        if overflow.load(Ordering::SeqCst) {
            break Err(RunError::TooLarge {
                program: program.clone(),
                cap: stdout_cap,
            });
        }
        if exited && finished(&stdout) && finished(&stderr) {
            break Ok(());
        }
        if Instant::now() >= until {
            break Err(RunError::TimedOut {
                program: program.clone(),
                deadline,
            });
        }
        std::thread::sleep(POLL);
    };
    let status = match outcome {
        Ok(()) => child.wait().map_err(|source| RunError::Wait {
            program: program.clone(),
            source,
        }),
        Err(error) => {
            super::kill_group(&mut child);
            let grace = Instant::now() + READER_GRACE;
            while !(finished(&stdout) && finished(&stderr)) && Instant::now() < grace {
                std::thread::sleep(POLL);
            }
            return Err(error);
        }
    }?;
    Ok(Output {
        status,
        stdout: join(stdout),
        stderr: join(stderr),
    })
}

fn finished(reader: &Option<JoinHandle<Vec<u8>>>) -> bool {
    reader.as_ref().is_none_or(JoinHandle::is_finished)
}

/// Reads `pipe` on a thread, keeping `cap` bytes. With `overflow`, more than `cap` bytes set
/// the flag and stop the reading (the writer then gets EPIPE); without it, the rest is
/// drained.
pub fn read_capped(
    pipe: impl Read + Send + 'static,
    cap: usize,
    overflow: Option<Arc<AtomicBool>>,
) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut pipe = pipe;
        let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
        let _ = (&mut pipe).take(limit).read_to_end(&mut kept);
        if kept.len() > cap {
            kept.truncate(cap);
            match overflow {
                Some(flag) => flag.store(true, Ordering::SeqCst),
                None => {
                    let _ = std::io::copy(&mut pipe, &mut std::io::sink());
                }
            }
        }
        kept
    })
}

/// The bytes a [`read_capped`] thread kept (none when it is missing or panicked).
pub fn join(handle: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    handle
        .and_then(|handle| handle.join().ok())
        .unwrap_or_default()
}
