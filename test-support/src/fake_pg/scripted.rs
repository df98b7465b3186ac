//! A byte-level scripted backend on a Unix socket, for unit tests of a wire client: it answers
//! the startup packet with a greeting and each following frontend message with the next
//! answer, all given as bytes (see [`messages`](super::messages)), and returns what it
//! received. Where [`FakeBackend`](super::FakeBackend) plays a server, this plays a transcript.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use super::messages::read_frontend;

/// Frontend messages as received: `(tag, body)`, the startup packet first with tag 0.
pub type Received = Vec<(u8, Vec<u8>)>;

/// A running script; the socket and its directory go when it is dropped.
pub struct Scripted {
    dir: tempfile::TempDir,
    server: JoinHandle<std::io::Result<Received>>,
}

/// Starts a script on `<temp dir>/.s.PGSQL.5432` serving one connection: `greeting` after the
/// startup packet, then one answer per frontend message.
///
/// # Panics
///
/// Panics when the temporary directory or the socket cannot be made.
pub fn scripted(greeting: Vec<u8>, answers: Vec<Vec<u8>>) -> Scripted {
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let listener = UnixListener::bind(dir.path().join(".s.PGSQL.5432"))
        .unwrap_or_else(|e| panic!("cannot bind a Unix socket in {}: {e}", dir.path().display()));
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept()?;
        let mut received = vec![read_frontend(&mut stream, true)?];
        stream.write_all(&greeting)?;
        for answer in answers {
            received.push(read_frontend(&mut stream, false)?);
            stream.write_all(&answer)?;
        }
        Ok(received)
    });
    Scripted { dir, server }
}

impl Scripted {
    /// The socket's directory (libpq's `host`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The socket's path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join(".s.PGSQL.5432")
    }

    /// Waits for the script to end; every frontend message it received, the startup packet
    /// first (tag 0).
    ///
    /// # Panics
    ///
    /// Panics when the connection failed before the script ended.
    pub fn received(self) -> Received {
        match self.server.join() {
            Ok(Ok(received)) => received,
            Ok(Err(error)) => panic!("the scripted backend's connection failed: {error}"),
            Err(_) => panic!("the scripted backend's thread panicked"),
        }
    }
}
