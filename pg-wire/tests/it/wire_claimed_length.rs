//! The wire client's receive buffer follows the bytes that arrive, not the length a message
//! claims: found by the `wire` fuzz target (a 5-byte header claiming 1 GiB made the client
//! allocate and zero 1 GiB before authentication, per connection). Scripted servers on a
//! Unix socket of the test's own.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use pg_wire::{AnswerLimit, Connection, Endpoint, Startup, WireError};

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn startup_ok() -> Vec<u8> {
    let mut out = message(b'R', &0u32.to_be_bytes());
    out.extend(message(b'Z', b"I"));
    out
}

/// Peak resident memory of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Serves `script` to one client on a fresh socket, then reads until the client is gone;
/// returns the client's result.
fn against<T: Send + 'static>(
    script: Vec<u8>,
    client: impl FnOnce(Endpoint) -> T + Send + 'static,
) -> T {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".s.PGSQL.5432");
    let listener = UnixListener::bind(&path).unwrap();
    let client = std::thread::spawn(move || client(Endpoint::Unix(path)));
    let (mut stream, _) = listener.accept().unwrap();
    stream.write_all(&script).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    client.join().unwrap()
}

fn startup() -> Startup {
    let config: postgres::Config = "host=/tmp user=test dbname=postgres".parse().unwrap();
    Startup::from_config(&config, &[])
}

#[test]
fn a_claimed_length_costs_no_memory_until_the_bytes_arrive() {
    // A CopyData claiming 1 GiB (within the protocol's limit; the data of a COPY OUT is
    // streamed, not held, so no answer limit applies), a few bytes of it, then the server
    // is gone. (Whole messages are refused earlier, by their answer's limit.)
    let mut script = startup_ok();
    script.extend(message(b'H', &[0, 0, 0]));
    script.push(b'd');
    script.extend_from_slice(&(1u32 << 30).to_be_bytes());
    script.extend_from_slice(b"data");
    let before = peak_rss_kib();
    let started = Instant::now();
    let result = against(script, |endpoint| -> Result<(), WireError> {
        let mut connection = Connection::connect(&endpoint, &startup(), Duration::from_secs(20))?;
        let mut copy = connection.copy_out("BASE_BACKUP")?;
        let claimed = copy.next_data()?;
        assert_eq!(claimed, Some((1 << 30) - 4));
        let mut buffer = vec![0u8; 64 << 10];
        loop {
            copy.read(&mut buffer)?;
        }
    });
    assert!(
        matches!(result, Err(WireError::Closed { .. })),
        "expected the cut to be reported: {result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(
        grown < 64 << 10,
        "a claimed length cost {grown} KiB of memory"
    );
}

#[test]
fn a_large_message_still_arrives_whole() {
    let value = "v".repeat(3 << 20);
    let mut script = startup_ok();
    let mut description = 1u16.to_be_bytes().to_vec();
    description.extend_from_slice(b"big\0");
    description.extend_from_slice(&[
        0, 0, 0, 0, 0, 0, 0, 0, 0, 25, 255, 255, 255, 255, 255, 255, 0, 0,
    ]);
    script.extend(message(b'T', &description));
    let mut row = 1u16.to_be_bytes().to_vec();
    row.extend_from_slice(&u32::try_from(value.len()).unwrap().to_be_bytes());
    row.extend_from_slice(value.as_bytes());
    script.extend(message(b'D', &row));
    script.extend(message(b'C', b"SELECT 1\0"));
    script.extend(message(b'Z', b"I"));
    let rows = against(script, |endpoint| {
        let mut connection =
            Connection::connect(&endpoint, &startup(), Duration::from_secs(20)).unwrap();
        let limit = AnswerLimit {
            rows: 1,
            bytes: 4 << 20,
        };
        connection
            .simple_query_limited("SELECT big", limit)
            .unwrap()
    });
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get("big").map(str::len), Some(value.len()));
}
