//! Audit logging and Postgres log export through rsyslog (upstream's §11.2 and §11.3).
//!
//! * **Compliance audit** (`audit_log_level` `Hipaa`, `Extended`, `Full`; start only): the
//!   target is `AUDIT_LOGGING_TLS_ENDPOINT` (TLS) when non-empty, else
//!   `AUDIT_LOGGING_ENDPOINT`; both empty fails the start before any stage runs, naming both
//!   variables, and so does an endpoint that is not `host:port` (upstream panics). Just
//!   before Postgres starts, [`AUDIT_CONF`] is written into `--rsyslog-dir`, `<PGDATA>/log`
//!   is created (PGDATA's owner, 0700) so rsyslog's file watch has its directory, and
//!   rsyslog is restarted.
//! * **Log export** (`logs_export_host`; start and every reconfiguration): [`EXPORT_CONF`] in
//!   the same directory. The same content already there: nothing; export no longer asked
//!   for: nothing (the old file stays, as upstream); else written and rsyslog restarted.
//! * **Restart**: compute-ctl's `--rsyslog-restart` (env `COMPUTE_CTL_RSYSLOG_RESTART`), a shell command
//!   run with `sh -c` (through `stage_kit::child::run`: its stderr goes into the error, its
//!   process group is killed after [`RESTART_TIMEOUT`]); without it, upstream's `pkill
//!   rsyslogd` and a wait of at most 5 s for a supervisor to start it again (`pgrep
//!   rsyslogd`; each run at most 10 s). Every failure fails the start or
//!   the reconfiguration with a message that says what to do.
//!
//! Every value written into an rsyslog file is checked first ([`target`]): hosts, ports,
//! ids and paths that could end a string constant are refused, naming their source.

pub mod cleanup;
pub mod rsyslog;
pub mod target;

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use compute_spec::pgconf::audit::is_compliance;
use compute_spec::spec::ComputeSpec;
use compute_spec::ComputeDocument;
use serde::Serialize;
use stage_kit::child::RunError;
use thiserror::Error;

use self::rsyslog::AuditConf;
use self::target::Target;

/// The compliance audit configuration's file name.
pub const AUDIT_CONF: &str = "compute_audit_rsyslog.conf";
/// The log export configuration's file name.
pub const EXPORT_CONF: &str = "postgres_logs.conf";
/// The plain-TCP audit endpoint variable.
pub const ENDPOINT_VAR: &str = "AUDIT_LOGGING_ENDPOINT";
/// The TLS audit endpoint variable (wins over [`ENDPOINT_VAR`]).
pub const TLS_ENDPOINT_VAR: &str = "AUDIT_LOGGING_TLS_ENDPOINT";
/// Upstream's rsyslog configuration directory.
pub const RSYSLOG_DIR: &str = "/etc/rsyslog.d";
/// Upstream's rsyslog work directory.
pub const WORK_DIR: &str = "/var/log/rsyslog";
/// Upstream's CA bundle for the TLS endpoint.
pub const CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The longest a `--rsyslog-restart` command may run.
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(30);
/// How long upstream's restart waits for rsyslogd to be back.
pub const RESPAWN_WAIT: Duration = Duration::from_secs(5);

/// Why an rsyslog file was not written or rsyslog not restarted; each message says what to
/// do.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum AuditError {
    /// A value from the spec, the environment or a flag cannot be written into an rsyslog
    /// file (or a compliance level has no endpoint); nothing was written.
    #[error("{0}")]
    Refused(String),
    /// A file or directory could not be written.
    #[error("{0}")]
    Write(String),
    /// rsyslog was not restarted.
    #[error("{0}")]
    Restart(String),
}

/// The audit and log-export flags.
#[derive(Clone, Debug)]
pub struct AuditParams {
    /// Where the rsyslog files go (`--rsyslog-dir`).
    pub rsyslog_dir: PathBuf,
    /// rsyslog's work directory, written into the audit configuration.
    pub work_dir: PathBuf,
    /// The CA bundle of the TLS endpoint.
    pub ca_file: PathBuf,
    /// The restart command; `None`: upstream's `pkill rsyslogd` and wait.
    pub restart: Option<String>,
    /// How often the audit log directory is cleaned and measured.
    pub cleanup_interval: Duration,
}

/// The rsyslog files a start writes, decided (and every value checked) before the stages run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StartPlan {
    /// The compliance audit configuration ([`AUDIT_CONF`]), when the level asks for it.
    pub audit: Option<String>,
    /// The log export configuration ([`EXPORT_CONF`]), when the spec asks for it.
    pub export: Option<String>,
}

/// Decides the start's rsyslog files for `document` (`env` reads a variable): refuses a
/// compliance level without an endpoint, a bad endpoint, `logs_export_host` or id.
pub fn plan_start(
    params: &AuditParams,
    document: &ComputeDocument,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<StartPlan, AuditError> {
    let Some(spec) = document.spec.as_ref() else {
        return Ok(StartPlan::default());
    };
    let mut plan = StartPlan {
        audit: None,
        export: export_text(spec)?,
    };
    if is_compliance(spec.audit_log_level) {
        let text = audit_text(params, document, spec, env).map_err(AuditError::Refused)?;
        plan.audit = Some(text);
    }
    Ok(plan)
}

fn variable(env: &impl Fn(&str) -> Option<OsString>, name: &str) -> Result<String, String> {
    match env(name) {
        None => Ok(String::new()),
        Some(value) => value
            .into_string()
            .map_err(|_| format!("{name} is not UTF-8; set it to host:port")),
    }
}

fn audit_text(
    params: &AuditParams,
    document: &ComputeDocument,
    spec: &ComputeSpec,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<String, String> {
    let level = format!("{:?}", spec.audit_log_level);
    let tls = variable(&env, TLS_ENDPOINT_VAR)?;
    let plain = variable(&env, ENDPOINT_VAR)?;
    let (name, value, tls) = match (tls.trim(), plain.trim()) {
        ("", "") => {
            return Err(format!(
                "audit_log_level {level} needs an audit log receiver, but neither \
                 {TLS_ENDPOINT_VAR} nor {ENDPOINT_VAR} is set: set one of them to host:port \
                 (the TLS one wins)"
            ))
        }
        ("", plain) => (ENDPOINT_VAR, plain, false),
        (tls, _) => (TLS_ENDPOINT_VAR, tls, true),
    };
    let target = target::audit_endpoint(value).map_err(|why| format!("{name}: {why}"))?;
    let endpoint_id = spec.endpoint_id.clone().unwrap_or_default();
    target::check_id("endpoint_id", &endpoint_id)?;
    let project_id = spec.project_id.clone().unwrap_or_default();
    target::check_id("project_id", &project_id)?;
    let tls_ca_file = if tls {
        Some(target::check_path("--rsyslog-ca-file", &params.ca_file)?)
    } else {
        None
    };
    Ok(rsyslog::audit_conf(&AuditConf {
        pgdata: target::check_path("--pgdata", &document.pgdata)?,
        work_dir: target::check_path("--rsyslog-work-dir", &params.work_dir)?,
        target,
        tls_ca_file,
        endpoint_id,
        project_id,
    }))
}

/// The log export configuration of `spec` (`None` when it asks for none), or why
/// `logs_export_host` cannot be used.
pub fn export_text(spec: &ComputeSpec) -> Result<Option<String>, AuditError> {
    let Some(host) = spec.logs_export_host.as_deref() else {
        return Ok(None);
    };
    let target: Target = target::export_host(host)
        .map_err(|why| AuditError::Refused(format!("logs_export_host: {why}")))?;
    Ok(Some(rsyslog::export_conf(&target)))
}

/// Writes the start's files (the audit one always, the export one when it changed), creates
/// `<pgdata>/log` for the audit one, and restarts rsyslog once if anything was written.
pub fn install_start(
    params: &AuditParams,
    plan: &StartPlan,
    pgdata: &Path,
) -> Result<(), AuditError> {
    let mut restart = false;
    if let Some(text) = &plan.audit {
        make_log_dir(pgdata)?;
        write_file(&params.rsyslog_dir.join(AUDIT_CONF), text)?;
        restart = true;
    }
    if let Some(text) = &plan.export {
        restart |= write_if_changed(&params.rsyslog_dir.join(EXPORT_CONF), text)?;
    }
    if restart {
        restart_rsyslog(params)?;
        tracing::info!(dir = %params.rsyslog_dir.display(), audit = plan.audit.is_some(), export = plan.export.is_some(), "rsyslog configured and restarted");
    }
    Ok(())
}

/// A reconfiguration's log export: `text` from [`export_text`]; written and rsyslog
/// restarted only when it differs from the file. True when rsyslog was restarted.
pub fn install_export(params: &AuditParams, text: Option<&str>) -> Result<bool, AuditError> {
    let Some(text) = text else {
        return Ok(false);
    };
    if !write_if_changed(&params.rsyslog_dir.join(EXPORT_CONF), text)? {
        return Ok(false);
    }
    restart_rsyslog(params)?;
    tracing::info!(dir = %params.rsyslog_dir.display(), "log export reconfigured and rsyslog restarted");
    Ok(true)
}

/// `<pgdata>/log`, owned like PGDATA, mode 0700; made so through its descriptor, so a link
/// planted there (PGDATA is the postgres user's) is refused, never followed.
fn make_log_dir(pgdata: &Path) -> Result<(), AuditError> {
    let dir = pgdata.join("log");
    let failed = |error: std::io::Error| {
        AuditError::Write(format!(
            "cannot prepare the audit log directory {}: {error}",
            dir.display()
        ))
    };
    let owner = std::fs::metadata(pgdata).map_err(failed)?;
    let owner = stage_kit::fsutil::Owner {
        uid: owner.uid(),
        gid: owner.gid(),
    };
    stage_kit::fsutil::private_dir(&dir, Some(owner)).map_err(failed)
}

fn write_if_changed(path: &Path, text: &str) -> Result<bool, AuditError> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    write_file(path, text)?;
    Ok(true)
}

/// Writes `text` to `path` through a new temporary file in the same directory (mode 0644,
/// never through a link) and a rename, so rsyslog never reads half a file.
fn write_file(path: &Path, text: &str) -> Result<(), AuditError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(AuditError::Write(format!(
            "the rsyslog directory {} does not exist: create it, or point --rsyslog-dir \
             (COMPUTE_CTL_RSYSLOG_DIR) at the directory rsyslog includes",
            dir.display()
        )));
    }
    let options = stage_kit::fsutil::FileOptions::mode(0o644);
    stage_kit::fsutil::replace_file(path, text.as_bytes(), options).map_err(|error| {
        AuditError::Write(format!(
            "cannot write {}: {error}; check --rsyslog-dir (COMPUTE_CTL_RSYSLOG_DIR)",
            path.display()
        ))
    })
}

/// Restarts rsyslog: the configured command, or upstream's `pkill rsyslogd` and wait.
pub fn restart_rsyslog(params: &AuditParams) -> Result<(), AuditError> {
    match &params.restart {
        Some(command) => run_restart_command(command),
        None => pkill_and_wait(),
    }
    .map_err(AuditError::Restart)
}

fn run_restart_command(command: &str) -> Result<(), String> {
    let mut shell = Command::new("sh");
    shell.args(["-c", command]);
    stage_kit::notify::hide_from(&mut shell);
    match stage_kit::child::run(&mut shell, RESTART_TIMEOUT, OUTPUT_CAP) {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!(
            "the rsyslog restart command {command:?} failed ({}; stderr: {}); fix it \
             (--rsyslog-restart, COMPUTE_CTL_RSYSLOG_RESTART)",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(RunError::TimedOut { .. }) => Err(format!(
            "the rsyslog restart command {command:?} still ran after {} s and was \
             killed (its process group); it must restart rsyslog and return",
            RESTART_TIMEOUT.as_secs()
        )),
        Err(error) => Err(format!(
            "the rsyslog restart command {command:?} with sh: {error}"
        )),
    }
}

/// Output kept from the restart command and from `pkill`/`pgrep`.
const OUTPUT_CAP: usize = 64 * 1024;

/// The longest `pkill` or `pgrep` may run.
const QUIET_TIMEOUT: Duration = Duration::from_secs(10);

fn quiet(program: &str, args: &[&str]) -> Result<std::process::ExitStatus, RunError> {
    let mut command = Command::new(program);
    command.args(args);
    stage_kit::notify::hide_from(&mut command);
    stage_kit::child::run(&mut command, QUIET_TIMEOUT, OUTPUT_CAP).map(|output| output.status)
}

/// Upstream's restart: every `rsyslogd` on the machine gets SIGTERM, and a supervisor must
/// start it again within [`RESPAWN_WAIT`].
fn pkill_and_wait() -> Result<(), String> {
    let killed = quiet("pkill", &["rsyslogd"])
        .map_err(|error| format!("cannot run pkill to restart rsyslogd: {error}"))?;
    if !killed.success() {
        return Err(format!(
            "no rsyslogd was running to restart (pkill rsyslogd: {killed}): run rsyslogd \
             under a supervisor that starts it again, or set --rsyslog-restart \
             (COMPUTE_CTL_RSYSLOG_RESTART) to a command that restarts it"
        ));
    }
    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    while started.elapsed() < RESPAWN_WAIT {
        if quiet("pgrep", &["rsyslogd"]).is_ok_and(|status| status.success()) {
            return Ok(());
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(500));
    }
    Err(format!(
        "rsyslogd did not come back within {} s of pkill: it needs a supervisor that starts \
         it again, or set --rsyslog-restart (COMPUTE_CTL_RSYSLOG_RESTART)",
        RESPAWN_WAIT.as_secs()
    ))
}

#[cfg(test)]
mod tests;
