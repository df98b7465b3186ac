//! The slow path: run Neon's `postgres --sync-safekeepers` and read the LSN it prints.
//!
//! That binary reads `neon.safekeepers`, the tenant and the timeline from
//! `$PGDATA/postgresql.conf`, so [`prepare_pgdata`] makes sure the file is there first. The
//! child gets `PGDATA` and `NEON_AUTH_TOKEN`, runs as the `postgres` user when we are root, in
//! its own process group; its stderr is forwarded line by line to our log and its stdout,
//! trimmed, is the LSN. Failures are retried with upstream's backoff (`min(1.1^n, 3.0)` s); one
//! deadline bounds all attempts, after which the child's group is killed. SIGTERM/SIGINT to us
//! are forwarded to the child when asked.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use compute_spec::document::PGDATA_MARKER;
use compute_spec::Lsn;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use stage_kit::retry::{Backoff, Policy, Retry, Stop};
use stage_kit::runas::PostgresUser;

use crate::error::SyncError;
use crate::signals::{ForwardingGuard, SignalForwarding};

/// How often the child is polled.
const POLL: Duration = Duration::from_millis(10);
/// stderr lines kept for the error message.
const STDERR_TAIL: usize = 20;

/// One `--sync-safekeepers` run, possibly retried.
#[derive(Debug)]
pub struct SyncCommand<'a> {
    /// The `postgres` binary (Neon's build).
    pub pgbin: &'a Path,
    /// PGDATA holding postgresql.conf.
    pub pgdata: &'a Path,
    /// `NEON_AUTH_TOKEN`.
    pub token: Option<&'a str>,
    /// The safekeepers, for error messages.
    pub safekeepers: &'a [String],
    /// Deadline for all attempts together.
    pub timeout: Duration,
    /// Retries after a failed attempt.
    pub retries: u32,
    /// Forward SIGTERM/SIGINT to the child (handlers installed by the caller).
    pub signals: Option<&'a SignalForwarding>,
    /// Run as this user (when root).
    pub user: Option<&'a PostgresUser>,
}

/// Upstream's backoff before retry `n` (1-based): `min(1.1^n, 3.0)` seconds.
pub const BACKOFF: Backoff =
    Backoff::exponential(Duration::from_millis(1100), 1.1, Duration::from_secs(3));

/// Makes sure `$PGDATA/postgresql.conf` exists. An absent PGDATA, an empty one or one holding
/// only our marker is created (0700, owned by `user`) with the marker and `conf`; a PGDATA we
/// built earlier (marker present) gets `conf` rewritten, since `pg-basebackup-fetch` rebuilds
/// it anyway; a foreign PGDATA is used only if it already has a postgresql.conf.
pub fn prepare_pgdata(
    pgdata: &Path,
    conf: &str,
    user: Option<&PostgresUser>,
) -> Result<(), SyncError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SyncError::Pgdata { path, source }
    };
    let names: Vec<String> = match std::fs::read_dir(pgdata) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(io(pgdata)(error)),
    };
    let conf_path = pgdata.join("postgresql.conf");
    if !names.is_empty() && !names.iter().any(|n| n == PGDATA_MARKER) {
        if conf_path.is_file() {
            tracing::info!(pgdata = %pgdata.display(), "using the existing postgresql.conf");
            return Ok(());
        }
        return Err(SyncError::ForeignPgdata {
            path: pgdata.to_path_buf(),
        });
    }
    // Through descriptors and new files renamed into place: a link planted in PGDATA (the
    // postgres user's) is never followed.
    let owner = user.map(PostgresUser::owner);
    stage_kit::fsutil::private_dir(pgdata, owner).map_err(io(pgdata))?;
    let options = stage_kit::fsutil::FileOptions::mode(0o600).owned_by(owner);
    let marker = pgdata.join(PGDATA_MARKER);
    stage_kit::fsutil::replace_file(&marker, b"", options).map_err(io(&marker))?;
    stage_kit::fsutil::replace_file(&conf_path, conf.as_bytes(), options)
        .map_err(io(&conf_path))?;
    if let Some(user) = user {
        user.chown_recursive(pgdata).map_err(io(pgdata))?;
    }
    tracing::info!(path = %conf_path.display(), "wrote postgresql.conf for --sync-safekeepers");
    Ok(())
}

/// After shutdown PGDATA is the one Postgres just used: it must hold postgresql.conf.
pub fn require_conf(pgdata: &Path) -> Result<(), SyncError> {
    let conf = pgdata.join("postgresql.conf");
    match conf.is_file() {
        true => Ok(()),
        false => Err(SyncError::NoConf { path: conf }),
    }
}

/// Runs `<pgbin> --sync-safekeepers` until it prints an LSN, fails for good, or time runs out.
/// Returns the LSN and the attempts made.
pub fn sync(command: &SyncCommand<'_>) -> Result<(Lsn, u32), SyncError> {
    let guard = command.signals.map(SignalForwarding::forwarding);
    let signals = Signals(guard.as_ref());
    let deadline = stage_kit::deadline::after(command.timeout);
    let policy = Policy {
        attempts: command.retries.saturating_add(1),
        backoff: BACKOFF,
        // The deadline bounds the pauses themselves (below) and each attempt.
        deadline: None,
    };
    let outcome = Retry::new(&policy)
        .when(|error| {
            matches!(
                error,
                SyncError::ChildFailed { .. } | SyncError::BadLsn { .. }
            )
        })
        .before_pause(|error, _, pause| tracing::warn!("{error}; retrying in {pause:?}"))
        // A pause ends early at the deadline (time is up) or at a forwarded signal.
        .pause_with(|pause| {
            let wake = stage_kit::deadline::after(pause);
            while Instant::now() < wake {
                if Instant::now() >= deadline {
                    return Err(timeout(command));
                }
                if let Some(signal) = signals.received() {
                    return Err(SyncError::Interrupted {
                        command: command_line(command),
                        signal,
                    });
                }
                std::thread::sleep(POLL);
            }
            Ok(())
        })
        .run(|_| attempt(command, deadline, signals));
    outcome.map_err(|stop| match stop {
        Stop::Exhausted { attempts, last } | Stop::OutOfTime { attempts, last, .. } => {
            with_attempts(last, attempts)
        }
        Stop::Final { error, .. } => error,
    })
}

fn with_attempts(error: SyncError, made: u32) -> SyncError {
    match error {
        SyncError::ChildFailed {
            command,
            status,
            stdout,
            stderr,
            ..
        } => SyncError::ChildFailed {
            command,
            status,
            attempts: made,
            stdout,
            stderr,
        },
        other => other,
    }
}

fn attempt(
    command: &SyncCommand<'_>,
    deadline: Instant,
    signals: Signals<'_>,
) -> Result<Lsn, SyncError> {
    let mut child = spawn(command)?;
    let stderr = forward_stderr(&mut child);
    let stdout = collect_stdout(&mut child);
    let ended = wait(&mut child, deadline, signals);
    let stderr_tail = stderr.join().unwrap_or_default();
    let stdout = stdout.join().unwrap_or_default();
    let status = match ended {
        Ended::Exited(status) => status,
        Ended::TimedOut => return Err(timeout(command)),
        Ended::Interrupted(signal) => {
            return Err(SyncError::Interrupted {
                command: command_line(command),
                signal,
            })
        }
        Ended::WaitFailed(source) => {
            return Err(SyncError::Spawn {
                command: command_line(command),
                source,
            })
        }
    };
    if !status.success() {
        return Err(SyncError::ChildFailed {
            command: command_line(command),
            status: status.to_string(),
            attempts: 1,
            stdout: stdout.trim().to_string(),
            stderr: stderr_tail,
        });
    }
    let text = stdout.trim();
    text.parse().map_err(|_| SyncError::BadLsn {
        command: command_line(command),
        stdout: text.to_string(),
    })
}

fn spawn(command: &SyncCommand<'_>) -> Result<Child, SyncError> {
    let mut process = stage_kit::cgexec::command(command.pgbin);
    process
        .arg("--sync-safekeepers")
        .env("PGDATA", command.pgdata)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = command.token {
        process.env("NEON_AUTH_TOKEN", token);
    }
    stage_kit::runas::apply_user(&mut process, command.user);
    tracing::info!(command = %command_line(command), "running");
    // Its own process group, SIGKILL if we die (set after the user switch, which would clear
    // it); forked on this thread, which waits for it.
    stage_kit::child::spawn(&mut process, Signal::SIGKILL).map_err(|source| SyncError::Spawn {
        command: command_line(command),
        source,
    })
}

/// The signal recorded while forwarding, if forwarding.
#[derive(Clone, Copy)]
struct Signals<'a>(Option<&'a ForwardingGuard<'a>>);

impl Signals<'_> {
    fn received(&self) -> Option<i32> {
        self.0.and_then(ForwardingGuard::received)
    }
}

enum Ended {
    Exited(ExitStatus),
    TimedOut,
    Interrupted(i32),
    WaitFailed(std::io::Error),
}

fn wait(child: &mut Child, deadline: Instant, signals: Signals<'_>) -> Ended {
    let group = Pid::from_raw(child.id() as i32);
    let mut forwarded = None;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return match forwarded {
                    Some(signal) => Ended::Interrupted(signal),
                    None => Ended::Exited(status),
                }
            }
            Ok(None) => {}
            Err(error) => return Ended::WaitFailed(error),
        }
        if Instant::now() >= deadline {
            stage_kit::child::kill_group(child);
            return match forwarded {
                Some(signal) => Ended::Interrupted(signal),
                None => Ended::TimedOut,
            };
        }
        if let (None, Some(number)) = (forwarded, signals.received()) {
            if let Ok(signal) = Signal::try_from(number) {
                tracing::info!("forwarding {signal} to postgres --sync-safekeepers");
                signal_group(group, signal);
            }
            forwarded = Some(number);
        }
        std::thread::sleep(POLL);
    }
}

fn signal_group(group: Pid, signal: Signal) {
    if let Err(error) = killpg(group, signal) {
        tracing::debug!("sending {signal} to process group {group}: {error}");
    }
}

fn forward_stderr(child: &mut Child) -> JoinHandle<String> {
    let stderr = child.stderr.take();
    std::thread::spawn(move || {
        let mut tail = VecDeque::new();
        let Some(stderr) = stderr else {
            return String::new();
        };
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            tracing::info!(target: "sync_safekeepers", "sync-safekeepers: {line}");
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        Vec::from(tail).join("\n")
    })
}

fn collect_stdout(child: &mut Child) -> JoinHandle<String> {
    let stdout = child.stdout.take();
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stdout) = stdout {
            drop(stdout.read_to_string(&mut text));
        }
        text
    })
}

fn timeout(command: &SyncCommand<'_>) -> SyncError {
    SyncError::Timeout {
        command: command_line(command),
        timeout: command.timeout,
        safekeepers: command.safekeepers.to_vec(),
    }
}

fn command_line(command: &SyncCommand<'_>) -> String {
    format!("{} --sync-safekeepers", command.pgbin.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_timeout_of_u64_max_seconds_does_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let command = SyncCommand {
            pgbin: Path::new("/bin/false"),
            pgdata: dir.path(),
            token: None,
            safekeepers: &[],
            timeout: Duration::from_secs(u64::MAX),
            retries: 0,
            signals: None,
            user: None,
        };
        let error = sync(&command).unwrap_err();
        assert!(matches!(error, SyncError::ChildFailed { .. }), "{error}");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(BACKOFF.pause(1), Duration::from_secs_f64(1.1));
        assert!(BACKOFF.pause(5) > BACKOFF.pause(4));
        assert_eq!(BACKOFF.pause(20), Duration::from_secs(3));
    }

    #[test]
    fn foreign_pgdata_without_conf_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("PG_VERSION"), "15").unwrap();
        let error = prepare_pgdata(dir.path(), "x", None).unwrap_err();
        assert!(matches!(error, SyncError::ForeignPgdata { .. }), "{error}");
        std::fs::write(dir.path().join("postgresql.conf"), "port=1").unwrap();
        prepare_pgdata(dir.path(), "x", None).unwrap();
        let kept = std::fs::read_to_string(dir.path().join("postgresql.conf")).unwrap();
        assert_eq!(kept, "port=1");
    }

    /// A PGDATA we built earlier with a link planted at `postgresql.conf`: the link is
    /// replaced, its target untouched.
    #[test]
    fn a_link_planted_at_the_conf_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("shadow");
        std::fs::write(&victim, "root:secret\n").unwrap();
        let pgdata = dir.path().join("pgdata");
        std::fs::create_dir(&pgdata).unwrap();
        std::fs::write(pgdata.join(PGDATA_MARKER), "").unwrap();
        std::os::unix::fs::symlink(&victim, pgdata.join("postgresql.conf")).unwrap();
        prepare_pgdata(&pgdata, "neon.safekeepers = 'x'\n", None).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:secret\n");
        let conf = std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap();
        assert_eq!(conf, "neon.safekeepers = 'x'\n");
    }

    #[test]
    fn absent_pgdata_is_created_private_with_marker_and_conf() {
        let dir = tempfile::tempdir().unwrap();
        let pgdata = dir.path().join("a/pgdata");
        prepare_pgdata(&pgdata, "neon.safekeepers = 'x'\n", None).unwrap();
        let mode = std::fs::metadata(&pgdata).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(pgdata.join(PGDATA_MARKER).is_file());
        let conf = std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap();
        assert_eq!(conf, "neon.safekeepers = 'x'\n");
    }
}
