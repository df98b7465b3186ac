//! The cgroup wrapping of upstream's §12: with `AUTOSCALING` set, `postgres` and
//! `postgres --sync-safekeepers` run as `cgexec -g memory:<cgroup> <program> …`, so the
//! vm-monitor's cgroup holds Postgres. The cgroup is `COMPUTE_CTL_CGROUP` (compute-ctl's
//! `--cgroup` reads the same variable; default `neon-postgres`), `cgexec` is
//! `COMPUTE_CTL_CGEXEC` or found on `PATH`. When `AUTOSCALING` is set and no `cgexec` exists,
//! the program runs unwrapped after a clear warning (upstream's spawn would fail), instead of a
//! vm-monitor silently watching a cgroup Postgres is not in. `cgexec` execs the program, so
//! the pid is Postgres's own.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The variable naming the memory cgroup.
pub const CGROUP_ENV: &str = "COMPUTE_CTL_CGROUP";
/// The variable naming the `cgexec` binary (default: found on `PATH`).
pub const CGEXEC_ENV: &str = "COMPUTE_CTL_CGEXEC";
/// The default memory cgroup (compute-ctl's `--cgroup` default, as upstream).
pub const DEFAULT_CGROUP: &str = "neon-postgres";

/// A command running `program`, wrapped in `cgexec` when `AUTOSCALING` asks for it.
pub fn command(program: &Path) -> Command {
    if std::env::var_os("AUTOSCALING").is_none() {
        return Command::new(program);
    }
    let cgroup = std::env::var(CGROUP_ENV).unwrap_or_else(|_| DEFAULT_CGROUP.to_string());
    let Some(cgexec) = find_cgexec() else {
        tracing::warn!(
            %cgroup,
            "AUTOSCALING is set but cgexec was not found (set {CGEXEC_ENV} or install cgroup-tools): \
             {} runs outside the memory cgroup the vm-monitor watches",
            program.display()
        );
        return Command::new(program);
    };
    let mut command = Command::new(cgexec);
    command
        .arg("-g")
        .arg(format!("memory:{cgroup}"))
        .arg(program);
    command
}

fn find_cgexec() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(CGEXEC_ENV).filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join("cgexec"))
        .find(|candidate| candidate.is_file())
}
