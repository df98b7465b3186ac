//! Running a short-lived PostgreSQL client tool (`pg_isready`) for an HTTP handler: in its
//! own process group with a parent-death signal ([`crate::stages::guard`]), stdin closed,
//! stdout kept up to a cap, stderr kept up to [`STDERR_CAP`], and killed (the whole group)
//! when it runs past its deadline or its output past the cap. `pg_dump`, whose output is
//! streamed, has its own runner (`catalog/dump.rs`) on the same helpers ([`kill`],
//! [`read_capped`]).

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Standard error kept for the reply and the log; the rest is read and dropped.
pub const STDERR_CAP: usize = 64 * 1024;

/// How often the child is polled while it runs.
const POLL: Duration = Duration::from_millis(10);

/// What a tool wrote, once it exited by itself.
#[derive(Debug)]
pub struct Output {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output (at most the cap given to [`run`]).
    pub stdout: Vec<u8>,
    /// The first [`STDERR_CAP`] bytes of its standard error.
    pub stderr: Vec<u8>,
}

/// Why a tool gave no [`Output`].
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// It could not be started.
    #[error("starting {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The error of `spawn`.
        source: std::io::Error,
    },
    /// It ran past its deadline and was killed.
    #[error("{program} did not finish within {} s and was killed", deadline.as_secs_f64())]
    TimedOut {
        /// The program.
        program: String,
        /// The deadline.
        deadline: Duration,
    },
    /// Its standard output went past the cap; it was killed.
    #[error("{program} wrote more than {cap} bytes and was killed")]
    TooLarge {
        /// The program.
        program: String,
        /// The cap.
        cap: usize,
    },
    /// Waiting for it failed.
    #[error("waiting for {program}: {source}")]
    Wait {
        /// The program.
        program: String,
        /// The error of `try_wait`.
        source: std::io::Error,
    },
}

/// Runs `command` to completion within `deadline`, keeping at most `stdout_cap` bytes of its
/// standard output.
pub fn run(
    command: &mut Command,
    deadline: Duration,
    stdout_cap: usize,
) -> Result<Output, ToolError> {
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    crate::stages::guard(command);
    let mut child = command.spawn().map_err(|source| ToolError::Spawn {
        program: program.clone(),
        source,
    })?;
    let overflow = Arc::new(AtomicBool::new(false));
    let stdout = child.stdout.take().map(|pipe| {
        let overflow = overflow.clone();
        read_capped(pipe, stdout_cap, Some(overflow))
    });
    let stderr = child
        .stderr
        .take()
        .map(|pipe| read_capped(pipe, STDERR_CAP, None));
    let started = Instant::now();
    let outcome = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(source) => {
                kill(&mut child);
                break Err(ToolError::Wait {
                    program: program.clone(),
                    source,
                });
            }
        }
        if overflow.load(Ordering::SeqCst) {
            kill(&mut child);
            break Err(ToolError::TooLarge {
                program: program.clone(),
                cap: stdout_cap,
            });
        }
        if started.elapsed() >= deadline {
            kill(&mut child);
            break Err(ToolError::TimedOut {
                program: program.clone(),
                deadline,
            });
        }
        std::thread::sleep(POLL);
    };
    let stdout = join(stdout);
    let stderr = join(stderr);
    let status = outcome?;
    if overflow.load(Ordering::SeqCst) {
        return Err(ToolError::TooLarge {
            program,
            cap: stdout_cap,
        });
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Kills the child's process group (it leads it) and reaps the child.
pub(crate) fn kill(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads `pipe` on a thread, keeping `cap` bytes. With `overflow`, more than `cap` bytes set
/// the flag and stop the reading (the tool then gets EPIPE); without it, the rest is drained.
pub(crate) fn read_capped(
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
pub(crate) fn join(handle: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    handle
        .and_then(|handle| handle.join().ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> Command {
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(script);
        command
    }

    #[test]
    fn keeps_output_and_status() {
        let output = run(
            &mut shell("echo out; echo err >&2; exit 3"),
            Duration::from_secs(10),
            1024,
        )
        .unwrap();
        assert_eq!(output.status.code(), Some(3));
        assert_eq!(output.stdout, b"out\n");
        assert_eq!(output.stderr, b"err\n");
    }

    #[test]
    fn kills_at_the_deadline() {
        let started = Instant::now();
        let error = run(&mut shell("sleep 30"), Duration::from_millis(200), 1024).unwrap_err();
        assert!(matches!(error, ToolError::TimedOut { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(error.to_string().contains("did not finish within 0.2 s"));
    }

    #[test]
    fn kills_past_the_cap() {
        let error = run(&mut shell("yes"), Duration::from_secs(10), 4096).unwrap_err();
        assert!(
            matches!(error, ToolError::TooLarge { cap: 4096, .. }),
            "{error}"
        );
    }

    #[test]
    fn names_a_missing_program() {
        let error = run(
            &mut Command::new("/nonexistent/pg_dump"),
            Duration::from_secs(1),
            16,
        )
        .unwrap_err();
        assert!(error.to_string().contains("starting /nonexistent/pg_dump"));
    }

    #[test]
    fn a_noisy_stderr_does_not_block() {
        let output = run(
            &mut shell("head -c 200000 /dev/zero >&2; echo done"),
            Duration::from_secs(10),
            1024,
        )
        .unwrap();
        assert!(output.status.success());
        assert_eq!(output.stderr.len(), STDERR_CAP);
        assert_eq!(output.stdout, b"done\n");
    }
}
