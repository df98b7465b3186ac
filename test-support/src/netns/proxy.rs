//! [`Proxy`]: a TCP forwarding proxy for network-fault tests, standing in for the `netem`
//! this kernel lacks. It forwards every connection it accepts to one upstream address, and
//! on the test's word it slows the downstream direction to a rate, stalls every connection
//! (nothing forwarded, the connections stay open), stalls the first connections for good after
//! some bytes, resets every other new connection, or cuts every open one.
//!
//! Its listener is usually made inside a namespace ([`super::NetNs::listen`]) so that the
//! namespace's drop rules apply to it; the upstream connections are made from the test's own
//! namespace. Dropping the proxy stops its threads and closes every connection.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How often waiting threads look at the proxy's state again.
const TICK: Duration = Duration::from_millis(10);
/// How long connecting upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes forwarded per read.
const CHUNK: usize = 16 * 1024;

/// A running forwarding proxy; stopped (threads ended, connections closed) on drop.
pub struct Proxy {
    address: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    stalled: AtomicBool,
    drop_every_other: AtomicBool,
    /// Downstream bytes per second; 0 means unlimited.
    rate: AtomicU64,
    /// The first `stall_first` connections stall for good after `stall_after` downstream bytes.
    stall_first: AtomicUsize,
    stall_after: AtomicU64,
    accepted: AtomicUsize,
    dropped: AtomicUsize,
    to_client: AtomicU64,
    /// Clones of every forwarded connection's two sockets, for [`Proxy::cut`].
    open: Mutex<Vec<(TcpStream, TcpStream)>>,
}

impl Proxy {
    /// Forwards every connection accepted on `listener` to `upstream`.
    ///
    /// # Panics
    ///
    /// Panics when the listener's address cannot be read or it cannot be made non-blocking.
    pub fn start(listener: TcpListener, upstream: SocketAddr) -> Proxy {
        let address = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("cannot read the proxy listener's address: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("cannot make the proxy listener non-blocking: {e}"));
        let shared = Arc::new(Shared {
            stall_after: AtomicU64::new(u64::MAX),
            ..Shared::default()
        });
        let state = shared.clone();
        thread::spawn(move || accept_loop(&listener, upstream, &state));
        Proxy { address, shared }
    }

    /// Where the proxy listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Limits the downstream direction (upstream → client) to `bytes_per_second` per
    /// connection; 0 lifts the limit.
    pub fn limit_rate(&self, bytes_per_second: u64) {
        self.shared.rate.store(bytes_per_second, Ordering::SeqCst);
    }

    /// Stops (`true`) or resumes (`false`) forwarding on every connection, both directions;
    /// the connections stay open and silent meanwhile.
    pub fn stall(&self, stalled: bool) {
        self.shared.stalled.store(stalled, Ordering::SeqCst);
    }

    /// The first `connections` connections (counted from the proxy's start) stall for good
    /// once `after_bytes` bytes went downstream: a server silent mid-stream.
    pub fn stall_first_after(&self, connections: usize, after_bytes: u64) {
        self.shared.stall_after.store(after_bytes, Ordering::SeqCst);
        self.shared.stall_first.store(connections, Ordering::SeqCst);
    }

    /// Resets (or not) every other new connection at once — the first, the third, … — before
    /// anything is forwarded.
    pub fn drop_every_other(&self, enabled: bool) {
        self.shared
            .drop_every_other
            .store(enabled, Ordering::SeqCst);
    }

    /// Shuts down every connection open now, both sockets.
    pub fn cut(&self) {
        for (client, upstream) in lock(&self.shared.open).drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
    }

    /// Connections accepted so far (dropped ones included).
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections reset by [`Proxy::drop_every_other`] so far.
    pub fn dropped(&self) -> usize {
        self.shared.dropped.load(Ordering::SeqCst)
    }

    /// Bytes forwarded downstream (to clients) so far, all connections.
    pub fn bytes_to_clients(&self) -> u64 {
        self.shared.to_client.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn accept_loop(listener: &TcpListener, upstream: SocketAddr, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(TICK);
                continue;
            }
            Err(_) => continue,
        };
        let index = shared.accepted.fetch_add(1, Ordering::SeqCst);
        if shared.drop_every_other.load(Ordering::SeqCst) && index.is_multiple_of(2) {
            shared.dropped.fetch_add(1, Ordering::SeqCst);
            reset(client);
            continue;
        }
        let stall_after = if index < shared.stall_first.load(Ordering::SeqCst) {
            shared.stall_after.load(Ordering::SeqCst)
        } else {
            u64::MAX
        };
        let shared = shared.clone();
        thread::spawn(move || forward(client, upstream, stall_after, &shared));
    }
}

/// Closes `stream` with a reset (linger 0) rather than an orderly FIN.
fn reset(stream: TcpStream) {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::Linger, &linger);
    drop(stream);
}

fn forward(client: TcpStream, upstream: SocketAddr, stall_after: u64, shared: &Arc<Shared>) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = TcpStream::connect_timeout(&upstream, CONNECT_TIMEOUT) else {
        reset(client);
        return;
    };
    let clones = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    );
    let (Ok(client_in), Ok(server_out), Ok(client_keep), Ok(server_keep)) = clones else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    lock(&shared.open).push((client_keep, server_keep));
    let up = {
        let shared = shared.clone();
        thread::spawn(move || pump(client_in, server_out, Direction::Up, &shared))
    };
    pump(server, client, Direction::Down { stall_after }, shared);
    let _ = up.join();
}

#[derive(Clone, Copy)]
enum Direction {
    /// Client → upstream.
    Up,
    /// Upstream → client, stalling for good after `stall_after` bytes.
    Down { stall_after: u64 },
}

/// Copies `from` → `to` until either ends, following the proxy's faults.
fn pump(mut from: TcpStream, mut to: TcpStream, direction: Direction, shared: &Shared) {
    let mut buffer = vec![0u8; CHUNK];
    let started = Instant::now();
    let mut forwarded: u64 = 0;
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let mut chunk = buffer.get(..read).unwrap_or_default();
        let mut stall_now = false;
        if let Direction::Down { stall_after } = direction {
            let room = stall_after.saturating_sub(forwarded);
            if (chunk.len() as u64) >= room {
                chunk = chunk
                    .get(..usize::try_from(room).unwrap_or(usize::MAX))
                    .unwrap_or(chunk);
                stall_now = true;
            }
        }
        if !wait_while(shared, || shared.stalled.load(Ordering::SeqCst)) {
            break;
        }
        if to.write_all(chunk).is_err() {
            break;
        }
        forwarded += chunk.len() as u64;
        if matches!(direction, Direction::Down { .. }) {
            shared
                .to_client
                .fetch_add(chunk.len() as u64, Ordering::SeqCst);
            let rate = shared.rate.load(Ordering::SeqCst);
            if rate > 0 {
                let due = Duration::from_secs_f64(forwarded as f64 / rate as f64);
                let wait = due.saturating_sub(started.elapsed());
                if !wait.is_zero() && !wait_while(shared, || started.elapsed() < due) {
                    break;
                }
            }
        }
        if stall_now {
            // Silent for good: hold both sockets open until the proxy stops.
            wait_while(shared, || true);
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Waits while `condition` holds; false when the proxy stopped meanwhile.
fn wait_while(shared: &Shared, mut condition: impl FnMut() -> bool) -> bool {
    while condition() {
        if shared.stop.load(Ordering::SeqCst) {
            return false;
        }
        thread::sleep(TICK);
    }
    !shared.stop.load(Ordering::SeqCst)
}
