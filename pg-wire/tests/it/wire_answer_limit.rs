//! Every answer is limited ([`AnswerLimit`]): a server sending more rows or bytes than the
//! caller allows (or the default) is refused with an error naming it, before the message
//! over the limit is received. Scripted servers on a Unix socket of the test's own.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::time::{Duration, Instant};

use pg_test_support::fake_pg::messages::{auth, data_row, message, ready, row_description};
use pg_test_support::fake_pg::{scripted, Scripted};
use pg_wire::{AnswerLimit, Connection, Endpoint, Startup, WireError};

const TIMEOUT: Duration = Duration::from_secs(20);

fn connect(server: &Scripted) -> Result<Connection, WireError> {
    let startup = Startup {
        user: "alice".to_string(),
        ..Startup::default()
    };
    Connection::connect(&Endpoint::Unix(server.socket()), &startup, TIMEOUT)
}

fn greeting() -> Vec<u8> {
    let mut greeting = auth(0, &[]);
    greeting.extend(ready());
    greeting
}

/// `rows` one-column rows of `value`, as a complete answer.
fn answer(rows: usize, value: &str) -> Vec<u8> {
    let mut answer = row_description(&["v"]);
    for _ in 0..rows {
        answer.extend(data_row(&[Some(value)]));
    }
    answer.extend(message(b'C', b"SELECT\0"));
    answer.extend(ready());
    answer
}

fn assert_too_large(error: &WireError, server: &Scripted, limit: AnswerLimit) {
    match error {
        WireError::TooLarge {
            endpoint,
            limit: over,
        } => {
            assert_eq!(*endpoint, server.socket().display().to_string());
            assert_eq!(*over, limit);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let text = error.to_string();
    assert!(
        text.contains(&server.socket().display().to_string()),
        "{text}"
    );
    assert!(text.contains("larger than"), "{text}");
}

#[test]
fn rows_over_the_callers_limit_or_the_default_are_refused() {
    let limit = AnswerLimit {
        rows: 2,
        bytes: 1 << 20,
    };
    let server = scripted(greeting(), vec![answer(3, "x")]);
    let mut connection = connect(&server).unwrap();
    let error = connection
        .simple_query_limited("SELECT", limit)
        .unwrap_err();
    assert_too_large(&error, &server, limit);

    let server = scripted(greeting(), vec![answer(2, "x")]);
    let mut connection = connect(&server).unwrap();
    let rows = connection.simple_query_limited("SELECT", limit).unwrap();
    assert_eq!(rows.len(), 2);

    let server = scripted(greeting(), vec![answer(AnswerLimit::DEFAULT.rows + 1, "x")]);
    let mut connection = connect(&server).unwrap();
    let error = connection.simple_query("SELECT").unwrap_err();
    assert_too_large(&error, &server, AnswerLimit::DEFAULT);
}

#[test]
fn bytes_over_the_limit_are_refused_in_one_row_or_many() {
    // One row: 40 KiB fits in ONE_ROW's 64 KiB, 70 KiB does not.
    let server = scripted(greeting(), vec![answer(1, &"v".repeat(40 << 10))]);
    let rows = connect(&server)
        .unwrap()
        .simple_query_limited("SELECT", AnswerLimit::ONE_ROW)
        .unwrap();
    assert_eq!(rows[0].get("v").map(str::len), Some(40 << 10));
    let server = scripted(greeting(), vec![answer(1, &"v".repeat(70 << 10))]);
    let error = connect(&server)
        .unwrap()
        .simple_query_limited("SELECT", AnswerLimit::ONE_ROW)
        .unwrap_err();
    assert_too_large(&error, &server, AnswerLimit::ONE_ROW);
    // Many rows, each small, few enough: 30 × 40 KiB is over the default's 1 MiB.
    let server = scripted(greeting(), vec![answer(30, &"v".repeat(40 << 10))]);
    let error = connect(&server)
        .unwrap()
        .simple_query("SELECT")
        .unwrap_err();
    assert_too_large(&error, &server, AnswerLimit::DEFAULT);
}

#[test]
fn a_message_claiming_more_than_the_limit_is_refused_before_its_bytes_arrive() {
    // A DataRow header claiming 512 MiB and nothing more: without the limit the client
    // would wait for the bytes (here: until the server hangs up).
    let mut claim = row_description(&["v"]);
    claim.push(b'D');
    claim.extend_from_slice(&(512u32 << 20).to_be_bytes());
    let server = scripted(greeting(), vec![claim]);
    let mut connection = connect(&server).unwrap();
    let started = Instant::now();
    let error = connection
        .simple_query_limited("SELECT", AnswerLimit::ONE_ROW)
        .unwrap_err();
    assert_too_large(&error, &server, AnswerLimit::ONE_ROW);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_start_up_flooded_with_parameters_is_refused() {
    let mut greeting = auth(0, &[]);
    let parameter = message(b'S', format!("x\0{}\0", "p".repeat(1000)).as_bytes());
    for _ in 0..(AnswerLimit::DEFAULT.bytes / parameter.len() + 1) {
        greeting.extend_from_slice(&parameter);
    }
    greeting.extend(ready());
    let server = scripted(greeting, vec![]);
    let error = connect(&server).map(drop).unwrap_err();
    assert_too_large(&error, &server, AnswerLimit::DEFAULT);
}
