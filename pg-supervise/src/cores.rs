//! Core dumps, so that a crash can be diagnosed from the log (upstream's core-dump scan).
//!
//! Before Postgres starts, the supervisor raises its own `RLIMIT_CORE` (inherited by the
//! postmaster and every backend): to unlimited where it may, else to the hard limit. It also
//! leaves anonymous shared memory out of the dumps (`/proc/self/coredump_filter`, inherited
//! too): a crashed backend's dump then holds its own memory, not a copy of `shared_buffers`,
//! which could be gigabytes written into PGDATA per crash (upstream dumps it; a row of the
//! README's compatibility table).
//!
//! After the postmaster exited, every `core` and `core.<pid>` file in PGDATA (the backends'
//! working directory, where the kernel's default `core_pattern` puts them) gets a backtrace:
//! `gdb --batch -q -ex bt <postgres> <core>`, within a deadline and an output cap, each line
//! logged through [`redact`] (a frame's arguments can hold a statement's text). The dumps are
//! left where they are: the next start's wipe removes them with the rest of PGDATA.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::redact::redact;
use stage_kit::core_dump::is_core_dump_name;

/// The most dumps one exit reports (each costs a debugger run).
pub const MAX_DUMPS: usize = 4;
/// How long one backtrace may take.
pub const BACKTRACE_DEADLINE: Duration = Duration::from_secs(60);
/// The most of a debugger's output kept.
const OUTPUT_CAP: usize = 256 * 1024;
/// `coredump_filter` without anonymous shared memory (bit 1) and file-backed shared
/// memory (bit 3): anonymous private memory, ELF headers and private huge pages.
const FILTER: &str = "0x31";

/// Lets the postmaster and its backends dump core (see the module). Failures are logged:
/// a compute runs without core dumps rather than not at all.
pub fn enable() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
    if setrlimit(Resource::RLIMIT_CORE, RLIM_INFINITY, RLIM_INFINITY).is_err() {
        match getrlimit(Resource::RLIMIT_CORE) {
            Ok((_, hard)) => {
                if let Err(error) = setrlimit(Resource::RLIMIT_CORE, hard, hard) {
                    tracing::warn!("cannot raise the core-dump limit to {hard}: {error}");
                }
            }
            Err(error) => tracing::warn!("cannot read the core-dump limit: {error}"),
        }
    }
    if let Err(error) = std::fs::write("/proc/self/coredump_filter", FILTER) {
        tracing::warn!("cannot leave shared memory out of core dumps: {error}");
    }
}

/// The core dumps in `pgdata` (regular files only), oldest name first, at most
/// [`MAX_DUMPS`] of them, and how many there were.
pub fn find(pgdata: &Path) -> (Vec<PathBuf>, usize) {
    let Ok(entries) = std::fs::read_dir(pgdata) else {
        return (Vec::new(), 0);
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_str().is_some_and(is_core_dump_name))
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.path())
        .collect();
    found.sort();
    let total = found.len();
    found.truncate(MAX_DUMPS);
    (found, total)
}

/// Logs a backtrace of every core dump in `pgdata` (see the module), with `debugger` (gdb).
pub fn report(pgdata: &Path, postgres: &Path, debugger: &Path) {
    let (dumps, total) = find(pgdata);
    if total > dumps.len() {
        tracing::warn!(
            "{total} core dumps in {}: the backtraces of the first {} follow",
            pgdata.display(),
            dumps.len()
        );
    }
    for dump in dumps {
        tracing::warn!(
            "core dump found: {}, collecting its backtrace",
            dump.display()
        );
        let mut command = Command::new(debugger);
        command
            .args(["--batch", "-q", "-nx", "-ex", "bt"])
            .arg(postgres)
            .arg(&dump);
        match stage_kit::child::run(&mut command, BACKTRACE_DEADLINE, OUTPUT_CAP) {
            Ok(output) => {
                for line in String::from_utf8_lossy(&output.stdout).lines() {
                    tracing::warn!("core dump backtrace: {}", redact(line));
                }
                for line in String::from_utf8_lossy(&output.stderr).lines() {
                    tracing::info!("debugger: {}", redact(line));
                }
            }
            Err(error) => tracing::warn!(
                "no backtrace of {}: {error} (install gdb to have one)",
                dump.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_found_and_at_most_a_few() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..6 {
            std::fs::write(dir.path().join(format!("core.{i}")), b"").unwrap();
        }
        std::fs::create_dir(dir.path().join("core")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("core.9")).unwrap();
        std::fs::write(dir.path().join("notes"), b"").unwrap();
        let (found, total) = find(dir.path());
        assert_eq!(total, 6);
        let names: Vec<_> = found
            .iter()
            .map(|path| path.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["core.0", "core.1", "core.2", "core.3"]);
    }
}
