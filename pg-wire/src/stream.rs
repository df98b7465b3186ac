//! Sockets: connecting with a deadline that covers name resolution, TCP and Unix streams
//! behind one type, and the retry of interrupted system calls.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::{Endpoint, WireError};

/// A connected socket: TCP (with `TCP_NODELAY`) or Unix.
pub(super) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub(super) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(timeout),
            Stream::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    pub(super) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(timeout),
            Stream::Unix(s) => s.set_write_timeout(timeout),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs a system call again while it is interrupted by a signal.
pub(super) fn retry_interrupted<T>(mut call: impl FnMut() -> nix::Result<T>) -> nix::Result<T> {
    loop {
        match call() {
            Err(Errno::EINTR) => continue,
            result => return result,
        }
    }
}

pub(super) fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A host name lookup: the system resolver ([`system_lookup`]), or a test's stand-in.
pub(super) type Lookup = fn(&str, u16) -> io::Result<Vec<SocketAddr>>;

/// Connects to `endpoint` before `deadline`: name resolution, each address tried, and the
/// connection itself all count against it.
pub(super) fn open(
    endpoint: &Endpoint,
    name: &str,
    deadlines: (Instant, Duration),
) -> Result<Stream, WireError> {
    open_with(endpoint, name, deadlines, system_lookup)
}

/// [`open`] with host names looked up by `lookup` (the seam the resolver's tests use).
pub(super) fn open_with(
    endpoint: &Endpoint,
    name: &str,
    (deadline, timeout): (Instant, Duration),
    lookup: Lookup,
) -> Result<Stream, WireError> {
    let io_error = |source: io::Error| WireError::Io {
        endpoint: name.to_string(),
        action: "connecting",
        source,
    };
    let timed_out = || WireError::Timeout {
        endpoint: name.to_string(),
        timeout,
    };
    match endpoint {
        Endpoint::Unix(path) => {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match connect_unix(path, remaining) {
                Ok(stream) => Ok(Stream::Unix(stream)),
                Err(error) if is_timeout(&error) => Err(timed_out()),
                Err(error) => Err(io_error(error)),
            }
        }
        Endpoint::Tcp(host, port) => {
            let addresses = resolve(host, *port, deadline, lookup).ok_or_else(timed_out)?;
            let addresses = addresses.map_err(io_error)?;
            let mut last_error = None;
            for address in addresses {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    return Err(timed_out());
                }
                match TcpStream::connect_timeout(&address, remaining) {
                    Ok(stream) => {
                        drop(stream.set_nodelay(true));
                        return Ok(Stream::Tcp(stream));
                    }
                    Err(error) if is_timeout(&error) => return Err(timed_out()),
                    Err(error) => last_error = Some(error),
                }
            }
            Err(io_error(last_error.unwrap_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "the host name resolves to no address",
                )
            })))
        }
    }
}

/// Connects to a Unix socket within `timeout`: a server whose accept queue is full (a stopped
/// postmaster) makes `connect` wait, bounded here by the socket's send timeout, which Linux
/// applies to that wait.
fn connect_unix(path: &std::path::Path, timeout: Duration) -> io::Result<UnixStream> {
    use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
    use nix::sys::time::{TimeVal, TimeValLike};
    use std::os::fd::AsRawFd;
    if timeout.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let micros = i64::try_from(timeout.as_micros())
        .unwrap_or(i64::MAX)
        .max(1);
    socket::setsockopt(&fd, sockopt::SendTimeout, &TimeVal::microseconds(micros))?;
    let address = UnixAddr::new(path)?;
    retry_interrupted(|| socket::connect(fd.as_raw_fd(), &address))?;
    Ok(UnixStream::from(fd))
}

/// Resolves `host` before `deadline`. The system resolver has no timeout of its own (a dead
/// DNS server holds `getaddrinfo` for as long as `resolv.conf` says, retries included), so it
/// runs on a helper thread and is abandoned, not waited for, past the deadline: `None`.
fn resolve(
    host: &str,
    port: u16,
    deadline: Instant,
    lookup: Lookup,
) -> Option<io::Result<Vec<SocketAddr>>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(Ok(vec![SocketAddr::new(ip, port)]));
    }
    let (sender, receiver) = mpsc::sync_channel(1);
    let name = host.to_string();
    let spawned = std::thread::Builder::new()
        .name("wire-resolve".into())
        .spawn(move || {
            let result = lookup(&name, port);
            // The caller may have given up: nobody to tell, nothing to do.
            let _ = sender.send(result);
        });
    if let Err(error) = spawned {
        return Some(Err(error));
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    receiver.recv_timeout(remaining).ok()
}

/// The system resolver (`getaddrinfo`), which has no timeout of its own.
pub(super) fn system_lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    (host, port)
        .to_socket_addrs()
        .map(|addresses| addresses.collect())
}
