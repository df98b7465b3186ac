//! local_proxy (upstream's §10): the spec's `local_proxy_config` is written as pretty JSON to
//! local_proxy's configuration file, its `tls` replaced by compute-ctl's own TLS paths (when
//! the spec asks for TLS: `tls_experimental` with `compute_ctl_config.tls`) or dropped, and
//! null members omitted; then local_proxy gets SIGHUP — the pid in its pid file, and only when
//! that file is `flock`-held (a stale pid file never gets a signal through). At start-up this
//! runs before `running`, and an error fails the start; on a reconfiguration an error is
//! logged. On termination local_proxy gets SIGTERM, under the same lock rule. The roles of
//! `jwks[].role_names` are created by pg-reconcile.
//!
//! The paths are compute-ctl's flags (`--local-proxy-config`, `--local-proxy-pid-file`) with upstream's
//! defaults, `/etc/local_proxy/config.json` and `/etc/local_proxy/pid`.

use std::path::{Path, PathBuf};

use compute_spec::ComputeDocument;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use thiserror::Error;

/// Upstream's configuration file.
pub const CONFIG: &str = "/etc/local_proxy/config.json";
/// Upstream's pid file.
pub const PID_FILE: &str = "/etc/local_proxy/pid";

/// Why local_proxy's configuration was not written.
#[derive(Debug, Error)]
pub enum LocalProxyError {
    /// The configuration cannot be serialised.
    #[error("local_proxy_config: cannot be written as JSON: {0}")]
    Json(serde_json::Error),
    /// The configuration file cannot be written.
    #[error("writing the local_proxy configuration {}: {source}", path.display())]
    Write {
        /// The configuration file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// Where local_proxy's files are.
#[derive(Clone, Debug)]
pub struct LocalProxyParams {
    /// The configuration file written from the spec.
    pub config: PathBuf,
    /// The pid file local_proxy holds locked while it runs.
    pub pid_file: PathBuf,
}

/// The configuration file's JSON for `document`, `None` when the spec has no
/// `local_proxy_config`.
pub fn config_json(document: &ComputeDocument) -> Option<Value> {
    let spec = document.spec.as_ref()?;
    let config = spec.local_proxy_config.as_ref()?;
    let mut value = serde_json::to_value(config).ok()?;
    if let Value::Object(map) = &mut value {
        map.remove("tls");
        if let Some(tls) = compute_spec::pgconf::tls::wanted(document, spec) {
            map.insert(
                "tls".into(),
                serde_json::json!({"key_path": tls.key_path, "cert_path": tls.cert_path}),
            );
        }
    }
    drop_nulls(&mut value);
    Some(value)
}

fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, member| !member.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Writes the configuration (when the spec has one) and sends SIGHUP to a running
/// local_proxy. The error names the file.
pub fn configure(
    params: &LocalProxyParams,
    document: &ComputeDocument,
) -> Result<(), LocalProxyError> {
    let Some(json) = config_json(document) else {
        return Ok(());
    };
    let path = &params.config;
    let mut text = serde_json::to_string_pretty(&json).map_err(LocalProxyError::Json)?;
    text.push('\n');
    // A new temporary file renamed over the path: never written through a link.
    let options = stage_kit::fsutil::FileOptions::mode(0o644);
    stage_kit::fsutil::replace_file(path, text.as_bytes(), options).map_err(|source| {
        LocalProxyError::Write {
            path: path.clone(),
            source,
        }
    })?;
    tracing::info!(file = %path.display(), "local_proxy configuration written");
    if signal_if_held(&params.pid_file, Signal::SIGHUP) {
        tracing::info!("local_proxy told to reload");
    }
    Ok(())
}

/// SIGTERM to a running local_proxy (termination).
pub fn stop(params: &LocalProxyParams) {
    if signal_if_held(&params.pid_file, Signal::SIGTERM) {
        tracing::info!("local_proxy stopped");
    }
}

/// Sends `signal` to the pid in `pid_file` when another process holds the file's `flock`;
/// true when it was sent.
pub fn signal_if_held(pid_file: &Path, signal: Signal) -> bool {
    // Regular files only (opened without blocking), at most 4 KiB: a FIFO there cannot hold
    // up the termination.
    let file = match stage_kit::bounded::open_regular(pid_file) {
        Ok((file, _)) => file,
        Err(error) if error.is_not_found() => return false,
        Err(error) => {
            tracing::warn!(%error, "cannot open the local_proxy pid file");
            return false;
        }
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // Not held (we got the lock): a stale file; the lock goes with the drop.
        Ok(_unheld) => return false,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {}
        Err((_, errno)) => {
            tracing::warn!(file = %pid_file.display(), %errno, "cannot test the local_proxy pid file lock");
            return false;
        }
    }
    let pid =
        stage_kit::bounded::read_file_string(pid_file, stage_kit::bounded::PID_FILE_MAX_BYTES)
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
            .filter(|pid| *pid > 1);
    let Some(pid) = pid else {
        tracing::warn!(file = %pid_file.display(), "the local_proxy pid file holds no pid");
        return false;
    };
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(pid, %signal, %error, "cannot signal local_proxy");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    /// A FIFO as the pid file (nobody writes it): no signal, and no blocking in `open`.
    #[test]
    fn a_fifo_as_the_pid_file_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pid");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (done, result) = std::sync::mpsc::channel();
        // On a thread: without the defence the open blocks for ever.
        std::thread::spawn(move || {
            let _ = done.send(signal_if_held(&fifo, Signal::SIGHUP));
        });
        let signalled = result
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("still opening the FIFO after 10 s");
        assert!(!signalled);
    }

    /// A pid file nobody holds gets no signal through; once locked (by another open file
    /// description, as local_proxy's own), its pid gets the signal.
    #[test]
    fn only_a_locked_pid_file_is_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let mut sleeper = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        std::fs::write(&pid_file, format!("{}\n", sleeper.id())).unwrap();
        assert!(!signal_if_held(&pid_file, Signal::SIGHUP));
        assert!(
            sleeper.try_wait().unwrap().is_none(),
            "a stale pid file was signalled"
        );
        assert!(!signal_if_held(&dir.path().join("absent"), Signal::SIGHUP));

        let held = Flock::lock(File::open(&pid_file).unwrap(), FlockArg::LockExclusive).unwrap();
        assert!(signal_if_held(&pid_file, Signal::SIGHUP));
        let status = sleeper.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(Signal::SIGHUP as i32));
        drop(held);
    }

    /// A link planted at the temporary name the old code used: the configuration is
    /// written, the link's target is untouched.
    #[test]
    fn the_configuration_is_never_written_through_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("passwd");
        std::fs::write(&victim, "root:x:0:0\n").unwrap();
        let params = LocalProxyParams {
            config: dir.path().join("config.json"),
            pid_file: dir.path().join("pid"),
        };
        std::os::unix::fs::symlink(&victim, dir.path().join("config.json.compute-tools")).unwrap();
        let document: ComputeDocument = serde_json::from_value(serde_json::json!({
            "document_version": 1,
            "spec": {"format_version": 1.0, "cluster": {"roles": [], "databases": []},
                     "local_proxy_config": {"jwks": []}},
            "pgdata": "/d", "pgbin": "/b/postgres",
            "connstr": "postgresql://a@localhost/postgres",
            "instance": {"port": 5432, "socket_dir": "/d"},
        }))
        .unwrap();
        configure(&params, &document).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:x:0:0\n");
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(&params.config).unwrap()).unwrap();
        assert_eq!(written, serde_json::json!({"jwks": []}));
    }

    #[test]
    fn tls_is_replaced_and_nulls_are_dropped() {
        let spec = serde_json::json!({
            "format_version": 1.0,
            "cluster": {"roles": [], "databases": []},
            "features": ["tls_experimental"],
            "local_proxy_config": {
                "jwks": [{"id": "1", "role_names": ["r"], "jwks_url": "https://x/jwks",
                          "provider_name": "p", "jwt_audience": null}],
                "tls": {"key_path": "/from/spec.key", "cert_path": "/from/spec.crt"}
            }
        });
        let mut document: ComputeDocument = serde_json::from_value(serde_json::json!({
            "document_version": 1, "spec": spec, "pgdata": "/d", "pgbin": "/b/postgres",
            "connstr": "postgresql://a@localhost/postgres",
            "instance": {"port": 5432, "socket_dir": "/d"},
        }))
        .unwrap();
        let without_tls = config_json(&document).unwrap();
        assert_eq!(
            without_tls,
            serde_json::json!({"jwks": [{"id": "1", "role_names": ["r"],
                "jwks_url": "https://x/jwks", "provider_name": "p"}]})
        );
        document.compute_ctl_config.tls = Some(compute_spec::spec::TlsConfig {
            key_path: "/tls/k".into(),
            cert_path: "/tls/c".into(),
        });
        let with_tls = config_json(&document).unwrap();
        assert_eq!(
            with_tls["tls"],
            serde_json::json!({"key_path": "/tls/k", "cert_path": "/tls/c"})
        );
    }
}
