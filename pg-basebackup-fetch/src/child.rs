//! Running a child process and turning its failure into an error with its command line,
//! exit status and stderr. Every child runs through `stage_kit::child::run`: its own process
//! group, SIGKILL when this stage dies (even by SIGKILL: no `initdb` or single-user
//! `postgres` outlives it), output capped, always reaped.

use std::process::Command;
use std::time::Duration;

use stage_kit::child::{Output, RunError};

use crate::error::BasebackupError;

/// Standard output kept from a child (initdb's progress lines; single-user mode's replies).
pub const STDOUT_CAP: usize = 1 << 20;

/// Runs `command` to completion; fails with its status and stderr when it does not exit 0.
pub fn run_checked(command: &mut Command) -> Result<(), BasebackupError> {
    let line = command_line(command);
    tracing::debug!("running {line}");
    // No deadline (as before): initdb takes what the machine needs; it ends with this stage.
    let output = stage_kit::child::run(command, Duration::MAX, STDOUT_CAP)
        .map_err(|error| failure(&line, error))?;
    if output.status.success() {
        return Ok(());
    }
    Err(BasebackupError::Child {
        command: line,
        detail: format!(
            "{}; stderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    })
}

/// A child that gave no output (not started, output past the cap) as the stage's error.
pub fn failure(line: &str, error: RunError) -> BasebackupError {
    let detail = match error {
        RunError::Spawn { source, .. } => format!("could not start: {source}"),
        other => other.to_string(),
    };
    BasebackupError::Child {
        command: line.to_string(),
        detail,
    }
}

/// Runs `command` with `input` on its stdin (no deadline, stdout capped at [`STDOUT_CAP`]).
pub fn run_with_input(command: &mut Command, input: &[u8]) -> Result<Output, BasebackupError> {
    let line = command_line(command);
    tracing::debug!("running {line}");
    stage_kit::child::run_with_input(command, input, Duration::MAX, STDOUT_CAP)
        .map_err(|error| failure(&line, error))
}

/// The program and its arguments, space-separated (for messages).
pub fn command_line(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}
