//! pgbouncer (upstream's §10): the spec's `pgbouncer_settings` are written into the
//! `[pgbouncer]` section of pgbouncer's INI file — each key set in place or appended, every
//! other line (comments included) kept as it was — and pgbouncer is told to `RELOAD` through
//! its admin console (4 attempts, 1 s apart). This runs in the background once the compute is
//! `running` and after each reconfiguration; failures are logged, as upstream. On termination
//! the pid in pgbouncer's pid file gets SIGKILL.
//!
//! When the spec asks for TLS (`tls_experimental` with `compute_ctl_config.tls`), the
//! settings also get `client_tls_cert_file`/`client_tls_key_file` (the original paths) and
//! `client_tls_sslmode = allow`, as upstream.
//!
//! Paths and the admin connection are compute-ctl's flags (`--pgbouncer-config`, `--pgbouncer-admin`,
//! `--pgbouncer-pid-file`); their defaults are upstream's: in a VM (`AUTOSCALING` set)
//! `/etc/pgbouncer.ini` and `host=/tmp port=6432 dbname=pgbouncer user=pgbouncer`, in a pod
//! `/var/db/postgres/pgbouncer/pgbouncer.ini` and `host=localhost port=6432
//! dbname=pgbouncer user=postgres sslmode=disable`; `PGBOUNCER_PASSWORD` is the admin password
//! when set. The pid file is `/tmp/pgbouncer.pid`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use compute_spec::ComputeDocument;
use indexmap::IndexMap;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use stage_kit::bounded::{Problem, CONFIG_FILE_MAX_BYTES, PID_FILE_MAX_BYTES};
use stage_kit::retry::{Backoff, Policy, Retry, Stop};
use thiserror::Error;

/// Upstream's INI file in a VM.
pub const VM_CONFIG: &str = "/etc/pgbouncer.ini";
/// Upstream's INI file in a pod.
pub const POD_CONFIG: &str = "/var/db/postgres/pgbouncer/pgbouncer.ini";
/// Upstream's admin connection in a VM.
pub const VM_ADMIN: &str = "host=/tmp port=6432 dbname=pgbouncer user=pgbouncer";
/// Upstream's admin connection in a pod.
pub const POD_ADMIN: &str =
    "host=localhost port=6432 dbname=pgbouncer user=postgres sslmode=disable";
/// Upstream's pid file.
pub const PID_FILE: &str = "/tmp/pgbouncer.pid";

/// `RELOAD`: 4 attempts 1 s apart.
const RELOAD_RETRIES: Policy = Policy {
    attempts: 4,
    backoff: Backoff::fixed(Duration::from_secs(1)),
    deadline: None,
};

/// Why `pgbouncer_settings` cannot be written into an INI text.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum IniError {
    /// A key that is not a setting name (letters, digits, `_`, `.`).
    #[error("pgbouncer_settings: {key:?} is not a setting name")]
    BadName {
        /// The key.
        key: String,
    },
    /// A value with a control character (a newline would add a line).
    #[error("pgbouncer_settings.{key}: the value has a control character")]
    ControlCharacter {
        /// The setting.
        key: String,
    },
    /// The text has no `[pgbouncer]` section.
    #[error("the pgbouncer configuration has no [pgbouncer] section")]
    NoSection,
}

/// Why pgbouncer was not configured.
#[derive(Debug, Error)]
pub enum PgbouncerError {
    /// The INI file cannot be read.
    #[error("reading the pgbouncer configuration {}: {source}", path.display())]
    Read {
        /// The INI file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The settings cannot be written into the INI file.
    #[error("{}: {source}", path.display())]
    Ini {
        /// The INI file.
        path: PathBuf,
        /// Why.
        source: IniError,
    },
    /// The new INI file cannot be written (`step`: what was being done).
    #[error("{step} {}: {source}", path.display())]
    Write {
        /// What was being done: `writing next to`, `keeping the mode and owner of`,
        /// `replacing`.
        step: &'static str,
        /// The INI file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The admin connection string does not parse.
    #[error("--pgbouncer-admin: not a connection string: {0}")]
    Admin(postgres::Error),
    /// Every `RELOAD` attempt failed.
    #[error("pgbouncer RELOAD failed {attempts} times; last: {last}")]
    Reload {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: String,
    },
}

/// Where pgbouncer's files and admin console are.
#[derive(Clone, Debug)]
pub struct PgbouncerParams {
    /// The INI file.
    pub config: PathBuf,
    /// The admin console's connection string (libpq key=value).
    pub admin: String,
    /// The pid file.
    pub pid_file: PathBuf,
}

impl PgbouncerParams {
    /// The flags' values, upstream's defaults for those not given.
    pub fn new(
        config: Option<PathBuf>,
        admin: Option<String>,
        pid_file: PathBuf,
    ) -> PgbouncerParams {
        let vm = std::env::var_os("AUTOSCALING").is_some();
        PgbouncerParams {
            config: config
                .unwrap_or_else(|| PathBuf::from(if vm { VM_CONFIG } else { POD_CONFIG })),
            admin: admin.unwrap_or_else(|| (if vm { VM_ADMIN } else { POD_ADMIN }).to_string()),
            pid_file,
        }
    }
}

/// The settings to write for `document`: the spec's `pgbouncer_settings`, plus the TLS ones;
/// `None` when the spec has no `pgbouncer_settings`.
pub fn settings_for(document: &ComputeDocument) -> Option<IndexMap<String, String>> {
    let spec = document.spec.as_ref()?;
    let mut settings = spec.pgbouncer_settings.clone()?;
    if let Some(tls) = compute_spec::pgconf::tls::wanted(document, spec) {
        settings.insert("client_tls_cert_file".into(), tls.cert_path.clone());
        settings.insert("client_tls_key_file".into(), tls.key_path.clone());
        settings.insert("client_tls_sslmode".into(), "allow".into());
    }
    Some(settings)
}

/// `text` with each of `settings` set in its `[pgbouncer]` section: an existing `key = …`
/// line (the key compared without case) is replaced in place, a new key is appended after the
/// section's last setting; every other line is kept. An error names the setting that cannot
/// be written, or says the section is missing.
pub fn set_ini(text: &str, settings: &IndexMap<String, String>) -> Result<String, IniError> {
    check_settings(settings)?;
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let section = |line: &str| {
        let line = line.trim();
        (line.starts_with('[') && line.ends_with(']'))
            .then(|| line[1..line.len() - 1].trim().to_ascii_lowercase())
    };
    let start = lines
        .iter()
        .position(|line| section(line).as_deref() == Some("pgbouncer"))
        .ok_or(IniError::NoSection)?;
    for (key, value) in settings {
        let end = lines[start + 1..]
            .iter()
            .position(|line| section(line).is_some())
            .map_or(lines.len(), |offset| start + 1 + offset);
        let new_line = format!("{key} = {value}");
        let existing = (start + 1..end).filter(|&index| {
            lines[index]
                .split_once('=')
                .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case(key))
        });
        let existing: Vec<usize> = existing.collect();
        if existing.is_empty() {
            // After the section's last non-blank line, so a blank line before the next
            // section stays where it was.
            let last = (start..end)
                .rev()
                .find(|&index| !lines[index].trim().is_empty())
                .unwrap_or(start);
            lines.insert(last + 1, new_line);
        } else {
            for index in existing {
                lines[index] = new_line.clone();
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out)
}

/// Checks that each of `settings` can be written as one `key = value` line: a setting name
/// (letters, digits, `_`, `.`) and a value without control characters.
pub fn check_settings(settings: &IndexMap<String, String>) -> Result<(), IniError> {
    for (key, value) in settings {
        let key_ok = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !key_ok {
            return Err(IniError::BadName { key: key.clone() });
        }
        if value.chars().any(char::is_control) {
            return Err(IniError::ControlCharacter { key: key.clone() });
        }
    }
    Ok(())
}

/// Rewrites the INI file with `settings` (mode and owner kept; written to a temporary file
/// and renamed) and sends `RELOAD` to the admin console.
pub fn apply(
    params: &PgbouncerParams,
    settings: &IndexMap<String, String>,
) -> Result<(), PgbouncerError> {
    let path = &params.config;
    let read = |source| PgbouncerError::Read {
        path: path.clone(),
        source,
    };
    // A regular file of at most 16 MiB: a FIFO or a device given as the path cannot block
    // or grow us.
    let text = stage_kit::bounded::read_file_string(path, CONFIG_FILE_MAX_BYTES).map_err(|e| {
        read(match e.problem {
            Problem::Open(source) | Problem::Read(source) => source,
            problem => std::io::Error::new(std::io::ErrorKind::InvalidData, problem.to_string()),
        })
    })?;
    let metadata = std::fs::metadata(path).map_err(read)?;
    let updated = set_ini(&text, settings).map_err(|source| PgbouncerError::Ini {
        path: path.clone(),
        source,
    })?;
    if updated != text {
        write_like(path, &updated, &metadata)?;
        tracing::info!(file = %path.display(), settings = settings.len(), "pgbouncer configuration written");
    }
    reload(&params.admin)
}

/// Replaces `path` with `text`, keeping the mode and owner of `metadata` (the old file's),
/// through a new temporary file (never through a link planted beside or at the path).
fn write_like(path: &Path, text: &str, metadata: &std::fs::Metadata) -> Result<(), PgbouncerError> {
    let options = stage_kit::fsutil::FileOptions::like(metadata);
    stage_kit::fsutil::replace_file(path, text.as_bytes(), options).map_err(|source| {
        PgbouncerError::Write {
            step: "replacing",
            path: path.to_path_buf(),
            source,
        }
    })
}

/// `RELOAD` on the admin console, 4 attempts 1 s apart.
pub fn reload(admin: &str) -> Result<(), PgbouncerError> {
    let mut config: postgres::Config = admin.parse().map_err(PgbouncerError::Admin)?;
    config.connect_timeout(Duration::from_secs(2));
    if let Some(password) = std::env::var_os("PGBOUNCER_PASSWORD") {
        config.password(password.as_encoded_bytes());
    }
    let outcome = Retry::new(&RELOAD_RETRIES)
        .when(|_: &postgres::Error| true)
        .run(|_| {
            config
                .connect(postgres::NoTls)
                .and_then(|mut client| client.simple_query("RELOAD").map(|_| ()))
        });
    match outcome {
        Ok(((), attempt)) => {
            tracing::info!(attempt, "pgbouncer reloaded");
            Ok(())
        }
        Err(
            Stop::Exhausted { attempts, last }
            | Stop::OutOfTime { attempts, last, .. }
            | Stop::Final {
                attempts,
                error: last,
            },
        ) => Err(PgbouncerError::Reload {
            attempts,
            last: last.to_string(),
        }),
    }
}

/// Applies `document`'s settings in a background thread (errors logged).
pub fn apply_in_background(params: &PgbouncerParams, document: &ComputeDocument) {
    let Some(settings) = settings_for(document) else {
        return;
    };
    let params = params.clone();
    let spawned = std::thread::Builder::new()
        .name("pgbouncer".into())
        .spawn(move || {
            if let Err(error) = apply(&params, &settings) {
                tracing::error!(%error, "configuring pgbouncer failed");
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the pgbouncer configuration thread");
    }
}

/// The process name (`/proc/<pid>/comm`) pgbouncer runs under.
const PGBOUNCER_COMM: &str = "pgbouncer";

/// SIGKILL to the pid in the pid file, when there is one and it is pgbouncer (termination).
pub fn kill_pgbouncer(params: &PgbouncerParams) {
    // A regular file of at most 4 KiB: a FIFO there cannot hold up the termination.
    let text = match stage_kit::bounded::read_file_string(&params.pid_file, PID_FILE_MAX_BYTES) {
        Ok(text) => text,
        Err(error) if error.is_not_found() => return,
        Err(error) => {
            tracing::warn!(%error, "cannot read the pgbouncer pid file");
            return;
        }
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|line| line.trim().parse::<i32>().ok())
    else {
        tracing::warn!(file = %params.pid_file.display(), "the pgbouncer pid file holds no pid");
        return;
    };
    if pid <= 1 {
        return;
    }
    // A stale pid file may name a pid the kernel gave to another program since: kill only
    // a process that is pgbouncer (upstream kills whatever the file names).
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim_end() != PGBOUNCER_COMM {
        tracing::warn!(
            pid,
            program = comm.trim_end(),
            file = %params.pid_file.display(),
            "the pgbouncer pid file names a process that is not pgbouncer: not killed"
        );
        return;
    }
    match kill(Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) => tracing::info!(pid, "pgbouncer killed"),
        Err(error) => tracing::warn!(pid, %error, "cannot kill pgbouncer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> IndexMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A link planted at the temporary name the old code used: the new file is written
    /// elsewhere and renamed over the configuration, which keeps its mode; the link's target
    /// is untouched.
    #[test]
    fn the_configuration_is_never_written_through_a_planted_link() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("passwd");
        std::fs::write(&victim, "root:x:0:0\n").unwrap();
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(&ini, "[pgbouncer]\n").unwrap();
        std::fs::set_permissions(&ini, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("pgbouncer.ini.compute-tools"))
            .unwrap();
        let metadata = std::fs::metadata(&ini).unwrap();
        write_like(&ini, "[pgbouncer]\nmax_client_conn = 1\n", &metadata).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:x:0:0\n");
        assert_eq!(
            std::fs::read_to_string(&ini).unwrap(),
            "[pgbouncer]\nmax_client_conn = 1\n"
        );
        assert_eq!(std::fs::metadata(&ini).unwrap().mode() & 0o7777, 0o640);
    }

    #[test]
    fn keys_are_set_in_place_or_appended_and_everything_else_is_kept() {
        let text = "; top comment\n[databases]\n* = host=127.0.0.1\n\n[PgBouncer]\n\
                    # pool size\nDefault_Pool_Size = 20\nlisten_port = 6432\n\n[users]\nx = y\n";
        let out = set_ini(
            text,
            &settings(&[("default_pool_size", "7"), ("max_client_conn", "300")]),
        )
        .unwrap();
        assert_eq!(
            out,
            "; top comment\n[databases]\n* = host=127.0.0.1\n\n[PgBouncer]\n# pool size\n\
             default_pool_size = 7\nlisten_port = 6432\nmax_client_conn = 300\n\n[users]\nx = y\n"
        );
        assert_eq!(
            set_ini(&out, &settings(&[("default_pool_size", "7")])).unwrap(),
            out
        );
    }

    #[test]
    fn bad_input_is_refused_with_its_name() {
        let text = "[pgbouncer]\n";
        let error = set_ini(text, &settings(&[("a b", "1")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"a b\" is not a setting name"), "{error}");
        let error = set_ini(text, &settings(&[("pool", "1\n[x]")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "pgbouncer_settings.pool: the value has a control character"
        );
        let error = set_ini("[databases]\n", &settings(&[("a", "1")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("no [pgbouncer] section"), "{error}");
    }

    /// A FIFO as the pid file (nobody writes it): the termination's kill does not block.
    #[test]
    fn a_fifo_as_the_pid_file_does_not_block_the_kill() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pgbouncer.pid");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let params = PgbouncerParams {
            config: dir.path().join("pgbouncer.ini"),
            admin: "host=/nonexistent".into(),
            pid_file: fifo,
        };
        let (done, result) = std::sync::mpsc::channel();
        // On a thread: without the defence the read blocks for ever.
        std::thread::spawn(move || {
            kill_pgbouncer(&params);
            let _ = done.send(());
        });
        result
            .recv_timeout(Duration::from_secs(10))
            .expect("still reading the FIFO after 10 s");
    }

    /// A FIFO nobody writes as the INI file: refused at once, unread (`/dev/zero` and huge
    /// files are the shared reader's, tested end to end in `tests/tests/it/operator_input.rs`).
    #[test]
    fn a_config_that_is_a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pgbouncer.ini");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let params = PgbouncerParams {
            config: fifo,
            admin: "host=/nonexistent".into(),
            pid_file: dir.path().join("pid"),
        };
        let (done, result) = std::sync::mpsc::channel();
        // On a thread: without the defence the open blocks for ever.
        std::thread::spawn(move || {
            let _ = done.send(apply(&params, &settings(&[("a", "1")])).map_err(|e| e.to_string()));
        });
        let error = result
            .recv_timeout(Duration::from_secs(10))
            .expect("still opening the FIFO after 10 s")
            .unwrap_err();
        assert!(
            error.starts_with("reading the pgbouncer configuration "),
            "{error}"
        );
        assert!(
            error.contains("it is a FIFO, not a regular file"),
            "{error}"
        );
    }
}
