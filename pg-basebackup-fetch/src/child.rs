//! Running a child process and turning its failure into an error with its command line,
//! exit status and stderr.

use std::process::{Command, Stdio};

use crate::error::BasebackupError;

/// Runs `command` to completion; fails with its status and stderr when it does not exit 0.
pub fn run_checked(command: &mut Command) -> Result<(), BasebackupError> {
    let line = command_line(command);
    tracing::debug!("running {line}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| BasebackupError::Child {
            command: line.clone(),
            detail: format!("could not start: {error}"),
        })?;
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

/// The program and its arguments, space-separated (for messages).
pub fn command_line(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}
