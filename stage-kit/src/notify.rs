//! systemd readiness notification (`sd_notify`): a datagram to the unix socket named by
//! `$NOTIFY_SOCKET` (a path, or an abstract name when it starts with `@`). Used by
//! `compute-ctl` (READY=1 once running) and `pg-supervise --notify` (READY=1 once Postgres is).

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::Command;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (e.g. `READY=1`) to `$NOTIFY_SOCKET`; false when the variable is not set.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return Ok(false);
    };
    send(&socket, state)?;
    Ok(true)
}

/// Sends `state` to the notification socket `socket` (a path, or `@` and an abstract name).
pub fn send(socket: &OsStr, state: &str) -> io::Result<()> {
    let bytes = socket.as_encoded_bytes();
    let address = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(socket)?,
    };
    UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &address)?;
    Ok(())
}

/// Keeps the notification socket from `command`'s child: only the process systemd started
/// tells it when the service is ready (not Postgres, not a stage, not a tool or sidecar).
pub fn hide_from(command: &mut Command) {
    command.env_remove(NOTIFY_SOCKET);
}

/// [`notify`], logging instead of failing: a lost notification must not stop Postgres.
pub fn notify_or_warn(state: &str) {
    match notify(state) {
        Ok(true) => tracing::debug!("notified systemd: {state}"),
        Ok(false) => tracing::warn!("--notify given but {NOTIFY_SOCKET} is not set"),
        Err(error) => tracing::warn!("cannot notify systemd ({state}): {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_paths_and_abstract_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buffer = [0u8; 64];
        let n = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1");

        let name = format!("compute-spec-notify-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&address).unwrap();
        send(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"STOPPING=1");
    }

    #[test]
    fn a_hidden_socket_is_removed_from_the_child_s_environment() {
        let mut command = Command::new("env");
        command.env(NOTIFY_SOCKET, "/run/systemd/notify");
        hide_from(&mut command);
        let output = command.output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(!text.contains(NOTIFY_SOCKET), "{text}");
    }
}
