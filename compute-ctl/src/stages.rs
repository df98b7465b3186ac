//! Finding the stage binaries and running one stage as a child process through the JSON
//! contract: the document on its stdin, the document (or an error envelope) on its stdout.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use compute_spec::error::{ErrorEnvelope, ErrorKind, StageError};
use compute_spec::ComputeDocument;
use nix::sys::signal::Signal;

pub use stage_kit::child::ChildPid;

/// The name compute-ctl uses in its own errors.
pub const STAGE: &str = "compute-ctl";

/// An internal error of compute-ctl.
pub fn internal(message: impl Into<String>) -> StageError {
    StageError::new(STAGE, ErrorKind::Internal, message)
}

/// The stage binaries compute-ctl runs.
pub mod name {
    /// Loads the spec and starts the document.
    pub const COMPUTE_SPEC: &str = "compute-spec";
    /// Decides the start LSN.
    pub const SYNC_SAFEKEEPERS: &str = "pg-sync-safekeepers";
    /// Prepares PGDATA.
    pub const BASEBACKUP_FETCH: &str = "pg-basebackup-fetch";
    /// Writes remote extensions' control files, downloads the preload libraries.
    pub const EXTENSIONS_FETCH: &str = "pg-extensions-fetch";
    /// Reconciles settings and catalog.
    pub const RECONCILE: &str = "pg-reconcile";
    /// Owns the postmaster.
    pub const SUPERVISE: &str = "pg-supervise";
    /// The autoscaling agent (started only with AUTOSCALING).
    pub const VM_MONITOR: &str = "vm-monitor";
}

/// The memory cgroup the stages wrap Postgres in (`cgexec -g memory:<cgroup>`, with
/// `AUTOSCALING`): compute-ctl's `--cgroup`, passed to every stage it starts as
/// `COMPUTE_CTL_CGROUP`, so the flag alone moves both the vm-monitor and Postgres. Set once,
/// at start ([`set_cgroup`]).
static CGROUP: OnceLock<String> = OnceLock::new();

/// Makes `cgroup` the memory cgroup of every stage started from now on (the first call wins).
pub fn set_cgroup(cgroup: &str) {
    let _ = CGROUP.set(cgroup.to_string());
}

/// The lock on PGDATA compute-ctl holds for its life, handed to every stage it runs (never
/// to a sidecar). Set once, at start ([`set_pgdata_lock`]).
static PGDATA_LOCK: OnceLock<stage_kit::pgdata_lock::PgdataLock> = OnceLock::new();

/// Makes `lock` the PGDATA lock handed to every stage started from now on (the first call
/// wins).
pub fn set_pgdata_lock(lock: stage_kit::pgdata_lock::PgdataLock) {
    let _ = PGDATA_LOCK.set(lock);
}

/// The environment variable that overrides where stage `stage` is found.
pub fn override_variable(stage: &str) -> String {
    format!(
        "COMPUTE_CTL_STAGE_{}",
        stage.to_ascii_uppercase().replace('-', "_")
    )
}

/// Where stage `stage` is: `$COMPUTE_CTL_STAGE_<NAME>`, else beside this executable, else the
/// bare name (looked up on PATH).
pub fn locate(stage: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(override_variable(stage)).filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(stage)));
    match beside {
        Some(path) if path.exists() => path,
        _ => PathBuf::from(stage),
    }
}

/// Keeps compute-ctl's systemd notification socket from a child: compute-ctl alone tells
/// systemd when the compute is ready (not Postgres, not a stage, not a tool):
/// [`stage_kit::notify::hide_from`].
pub fn hide_notify_socket(command: &mut Command) {
    stage_kit::notify::hide_from(command);
}

/// Spawns stage `stage` with `args`, stdin/stdout piped, stderr inherited: in its own process
/// group (a terminal's Ctrl-C reaches compute-ctl only, which forwards exactly one shutdown
/// signal: a second one would escalate pg-supervise's shutdown), with SIGTERM when
/// compute-ctl dies, even by SIGKILL (so pg-supervise stops Postgres cleanly), forked on the
/// spawner thread ([`stage_kit::child::spawn_long_lived`]): whichever thread asks, the stage
/// dies only with the process.
pub fn spawn(stage: &str, args: &[OsString]) -> Result<Child, StageError> {
    let path = locate(stage);
    let mut command = Command::new(&path);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(cgroup) = CGROUP.get() {
        command.env(stage_kit::cgexec::CGROUP_ENV, cgroup);
    }
    hide_notify_socket(&mut command);
    compute_trace::process::stage_env(&mut command);
    if let Some(lock) = PGDATA_LOCK.get() {
        lock.hand_to(&mut command);
    }
    stage_kit::child::spawn_long_lived(command, Signal::SIGTERM).map_err(|error| {
        StageError::new(
            STAGE,
            ErrorKind::Child,
            format!(
                "starting stage {stage} ({}): {error}; install it beside compute-ctl or set {}",
                path.display(),
                override_variable(stage)
            ),
        )
    })
}

/// Runs stage `stage` with `args` on `input` (a document or a spec envelope) and returns the
/// document it wrote. A non-zero exit is the stage's own error envelope when it wrote one.
pub fn run(
    stage: &str,
    args: &[OsString],
    input: &[u8],
    running: &ChildPid,
) -> Result<ComputeDocument, StageError> {
    compute_trace::process::run_stage(stage, || {
        running.starting();
        let mut child = spawn(stage, args).inspect_err(|_| running.clear())?;
        running.record(&child);
        exchange(stage, &mut child, input, running, DOCUMENT_CAP)
    })
}

/// The most of a stage's stdout read: a document's cap ([`stage_kit::bounded`]), as a stage
/// reads one; a stage writing more is killed with its group.
const DOCUMENT_CAP: u64 = stage_kit::bounded::DOCUMENT_MAX_BYTES;

/// Feeds the stage, reads its output, then reaps it ([`ChildPid::clear`]ed first).
fn exchange(
    stage: &str,
    child: &mut Child,
    input: &[u8],
    running: &ChildPid,
    cap: u64,
) -> Result<ComputeDocument, StageError> {
    let child_error = |message: String| StageError::new(STAGE, ErrorKind::Child, message);
    let writer = child.stdin.take().map(|mut stdin| {
        let input = input.to_vec();
        std::thread::spawn(move || {
            // A stage that does not read its stdin (or exits early) is not an error here.
            let _ = stdin.write_all(&input);
        })
    });
    let mut output = Vec::new();
    let read = match child.stdout.take() {
        Some(stdout) => match stdout.take(cap.saturating_add(1)).read_to_end(&mut output) {
            Ok(read) if read as u64 > cap => Err(std::io::Error::other(format!(
                "it wrote more than the {cap}-byte limit of a document"
            ))),
            other => other.map(|_| ()),
        },
        None => Ok(()),
    };
    if read.is_err() {
        stage_kit::child::kill_group_unreaped(child);
    }
    // Noticed without reaping, so the recorded pid stays the stage's until it is cleared.
    let _ = stage_kit::child::exited_unreaped(child, true);
    running.clear();
    let status = child.wait();
    read.map_err(|error| child_error(format!("reading stage {stage}'s stdout: {error}")))?;
    let status =
        status.map_err(|error| child_error(format!("waiting for stage {stage}: {error}")))?;
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    if !status.success() {
        if let Ok(envelope) = serde_json::from_slice::<ErrorEnvelope>(&output) {
            return Err(envelope.error);
        }
        return Err(child_error(format!(
            "stage {stage} failed ({status}) without an error envelope on stdout; see its log above"
        )));
    }
    serde_json::from_slice(&output).map_err(|error| {
        child_error(format!(
            "stage {stage} exited 0 but its stdout is not a compute document: {error}"
        ))
    })
}

/// Serialises a document for a stage's stdin.
pub fn document_bytes(document: &ComputeDocument) -> Result<Vec<u8>, StageError> {
    serde_json::to_vec(document).map_err(|error| {
        StageError::new(
            STAGE,
            ErrorKind::Internal,
            format!("serialising the document: {error}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stage that writes without end is cut at the cap and killed with its group, never
    /// read into memory whole.
    #[test]
    fn a_stage_writing_past_the_cap_is_killed_and_named() {
        let mut command = std::process::Command::new("sh");
        command
            .args(["-c", "yes compute-tools"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = stage_kit::child::spawn(&mut command, Signal::SIGKILL).unwrap();
        let running = ChildPid::default();
        running.starting();
        running.record(&child);
        let error = exchange("pg-endless", &mut child, b"{}", &running, 1 << 20).unwrap_err();
        assert!(
            error.message.contains("reading stage pg-endless's stdout")
                && error.message.contains("1048576-byte limit"),
            "{}",
            error.message
        );
    }

    #[test]
    fn override_names() {
        assert_eq!(
            override_variable("pg-reconcile"),
            "COMPUTE_CTL_STAGE_PG_RECONCILE"
        );
        assert_eq!(
            override_variable("compute-spec"),
            "COMPUTE_CTL_STAGE_COMPUTE_SPEC"
        );
    }
}
