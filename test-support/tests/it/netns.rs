//! The network-namespace kit against the real kernel: namespaces deleted on drop (also when
//! the test panics), stale ones swept, dropped ports silent rather than refused, and each of
//! the proxy's faults.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use pg_test_support::netns::{netns_or_skip, sweep_stale, NetNs, Proxy};

fn namespaces() -> String {
    let output = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn has_namespace(name: &str) -> bool {
    namespaces()
        .lines()
        .any(|line| line.split_whitespace().next() == Some(name))
}

fn has_interface(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .output()
        .unwrap()
        .status
        .success()
}

/// A server on 127.0.0.1 (the test's namespace) that echoes what it reads.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while let Ok(read) = stream.read(&mut buffer) {
                    if read == 0 || stream.write_all(&buffer[..read]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

/// A server on 127.0.0.1 that sends `size` bytes to every client and closes.
fn sending_server(size: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let _ = stream.write_all(&vec![7u8; size]);
            });
        }
    });
    address
}

fn proxy_to(ns: &NetNs, upstream: SocketAddr) -> Proxy {
    Proxy::start(ns.listen(0), upstream)
}

fn connect(proxy: &Proxy) -> TcpStream {
    let stream = TcpStream::connect_timeout(&proxy.address(), Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

#[test]
fn a_namespace_and_its_veth_pair_are_deleted_on_drop_even_when_the_test_panics() {
    let Some(first) = netns_or_skip("a_namespace_is_deleted_on_drop") else {
        return;
    };
    let (name, interface) = (first.name().to_string(), first.host_interface().to_string());
    assert!(has_namespace(&name) && has_interface(&interface));
    drop(first);
    assert!(!has_namespace(&name), "{name} outlived its guard");
    assert!(!has_interface(&interface), "{interface} outlived its guard");

    let mut made = None;
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ns = NetNs::create().unwrap();
        made = Some((ns.name().to_string(), ns.host_interface().to_string()));
        panic!("a test failing while it holds a namespace");
    }));
    assert!(unwound.is_err());
    let (name, interface) = made.unwrap();
    assert!(!has_namespace(&name), "{name} survived a panicking test");
    assert!(
        !has_interface(&interface),
        "{interface} survived a panicking test"
    );
}

#[test]
fn namespaces_of_dead_processes_are_swept_and_those_of_live_ones_kept() {
    let Some(_probe) = netns_or_skip("namespaces_of_dead_processes_are_swept") else {
        return;
    };
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!("ctnf{dead}-7");
    let live = format!("ctnf{}-9999", std::process::id());
    for name in [&stale, &live] {
        assert!(Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .unwrap()
            .success());
    }
    let swept = sweep_stale();
    let live_kept = has_namespace(&live);
    let _ = Command::new("ip").args(["netns", "del", &live]).status();
    assert!(swept.contains(&stale), "swept {swept:?}");
    assert!(!has_namespace(&stale));
    assert!(live_kept, "the namespace of a live process was swept");
}

#[test]
fn dropped_ports_time_out_instead_of_refusing_and_come_back_on_restore() {
    let Some(ns) = netns_or_skip("dropped_ports_time_out") else {
        return;
    };
    let listener = ns.listen(0);
    let address = listener.local_addr().unwrap();
    let closed = SocketAddr::from((ns.peer_addr(), {
        let spare = ns.listen(0);
        spare.local_addr().unwrap().port()
    }));
    // Nothing listens on `closed`: refused at once, the control for what follows.
    let refused = TcpStream::connect_timeout(&closed, Duration::from_secs(2)).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);

    ns.drop_ports(&[address.port()]);
    let started = Instant::now();
    let silent = TcpStream::connect_timeout(&address, Duration::from_millis(500)).unwrap_err();
    assert_eq!(silent.kind(), ErrorKind::TimedOut, "{silent}");
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert!(ns.dropped_packets() > 0);

    ns.restore();
    TcpStream::connect_timeout(&address, Duration::from_secs(2)).unwrap();
    assert_eq!(ns.dropped_packets(), 0, "restore left a rule behind");

    ns.drop_all();
    let cut = TcpStream::connect_timeout(&closed, Duration::from_millis(300)).unwrap_err();
    assert_eq!(
        cut.kind(),
        ErrorKind::TimedOut,
        "drop_all let a reset through: {cut}"
    );
}

#[test]
fn the_proxy_resets_every_other_connection_and_forwards_the_rest() {
    let Some(ns) = netns_or_skip("the_proxy_resets_every_other_connection") else {
        return;
    };
    let proxy = proxy_to(&ns, echo_server());
    proxy.drop_every_other(true);
    let mut answers = Vec::new();
    for _ in 0..4 {
        let mut stream = connect(&proxy);
        let _ = stream.write_all(b"ping");
        let mut buffer = [0u8; 4];
        answers.push(stream.read_exact(&mut buffer).map(|()| buffer));
    }
    assert!(answers[0].is_err() && answers[2].is_err(), "{answers:?}");
    assert_eq!(answers[1].as_ref().unwrap(), b"ping");
    assert_eq!(answers[3].as_ref().unwrap(), b"ping");
    assert_eq!((proxy.accepted(), proxy.dropped()), (4, 2));
}

#[test]
fn the_proxy_stalls_resumes_and_cuts() {
    let Some(ns) = netns_or_skip("the_proxy_stalls_resumes_and_cuts") else {
        return;
    };
    let proxy = proxy_to(&ns, echo_server());
    let mut stream = connect(&proxy);
    stream.write_all(b"one!").unwrap();
    let mut buffer = [0u8; 4];
    stream.read_exact(&mut buffer).unwrap();
    proxy.stall(true);
    stream.write_all(b"two!").unwrap();
    // A fixed wait for what must not happen: an answer through a stalled proxy.
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let stalled = stream.read(&mut buffer).unwrap_err();
    assert!(matches!(
        stalled.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    proxy.stall(false);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.read_exact(&mut buffer).unwrap();
    assert_eq!(&buffer, b"two!");
    proxy.cut();
    assert!(
        matches!(stream.read(&mut buffer), Ok(0) | Err(_)),
        "the cut connection still delivers"
    );
}

#[test]
fn the_proxy_stalls_the_first_connection_mid_stream_and_paces_the_downstream() {
    let Some(ns) = netns_or_skip("the_proxy_stalls_the_first_connection_mid_stream") else {
        return;
    };
    const SIZE: usize = 512 * 1024;
    let proxy = proxy_to(&ns, sending_server(SIZE));
    proxy.stall_first_after(1, 100_000);
    let mut first = connect(&proxy);
    first
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = Vec::new();
    let ended = first.read_to_end(&mut got).unwrap_err();
    assert!(matches!(
        ended.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    assert_eq!(got.len(), 100_000, "the stall did not land where asked");

    proxy.limit_rate(1024 * 1024);
    let started = Instant::now();
    let mut second = connect(&proxy);
    let mut all = Vec::new();
    second.read_to_end(&mut all).unwrap();
    let took = started.elapsed();
    assert_eq!(all.len(), SIZE);
    // 512 KiB at 1 MiB/s: half a second, give or take the first chunk.
    assert!(
        took >= Duration::from_millis(450),
        "the rate limit did not pace: {took:?}"
    );
    eprintln!("measured: 512 KiB through a 1 MiB/s proxy took {took:?}");
}
