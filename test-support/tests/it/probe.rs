//! The kit's probes: they return as soon as the condition holds, give up at the deadline, and
//! the specific ones (ports, PostgreSQL, processes) see what they claim to see.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};

use pg_test_support::probe::{
    settle, time_until, wait_dead, wait_for_path, wait_for_port, wait_for_postgres,
};
use pg_test_support::{free_tcp_port, process_alive, wait_for, wait_until, TestDir, TestPostgres};

#[test]
fn a_probe_returns_as_soon_as_it_holds_and_gives_up_at_the_deadline() {
    let started = Instant::now();
    let mut calls = 0;
    assert_eq!(
        wait_for(Duration::from_secs(10), || {
            calls += 1;
            (calls == 3).then_some(calls)
        }),
        Some(3)
    );
    assert!(started.elapsed() < Duration::from_secs(1));

    let started = Instant::now();
    assert!(!wait_until(Duration::from_millis(200), || false));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(time_until(Duration::from_millis(10), || true).is_some());
}

#[test]
fn settle_returns_the_first_value_not_busy_or_the_last_one_seen() {
    let mut calls = 0;
    let state = settle(
        Duration::from_secs(10),
        || {
            calls += 1;
            calls
        },
        |calls| *calls < 3,
    );
    assert_eq!(state, 3);
    let started = Instant::now();
    let mut calls = 0;
    let state = settle(
        Duration::from_millis(100),
        || {
            calls += 1;
            calls
        },
        |_| true,
    );
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(state, calls, "the last value seen");
}

#[test]
fn ports_paths_and_processes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap();
    assert!(wait_for_port(open, Duration::from_secs(1)));
    let closed = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
    assert!(!wait_for_port(closed, Duration::from_millis(100)));

    let dir = TestDir::new("probe");
    let path = dir.path().join("later");
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50)); // the thing waited for, happening
            std::fs::write(path, "x").unwrap();
        })
    };
    assert!(wait_for_path(&path, Duration::from_secs(5)));
    writer.join().unwrap();

    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    assert!(process_alive(pid));
    child.kill().unwrap();
    // Killed but not reaped: a zombie, which counts as dead.
    assert!(wait_dead(pid, Duration::from_secs(5)));
    child.wait().unwrap();
    assert!(!process_alive(pid));
}

#[test]
fn postgres_accepting_connections_and_not() {
    let pg = TestPostgres::start();
    let config: postgres::Config = pg.connstr("postgres").parse().unwrap();
    let mut client = wait_for_postgres(&config, Duration::from_secs(5)).unwrap();
    let one: i32 = client.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);

    let mut nowhere = postgres::Config::new();
    nowhere
        .host("127.0.0.1")
        .port(free_tcp_port())
        .user("nobody");
    let started = Instant::now();
    assert!(wait_for_postgres(&nowhere, Duration::from_millis(200)).is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}
