//! The test kit's fake backends against a real client (the `postgres` crate): the scripted
//! [`FakeBackend`] (password, the one answered command, errors, silence, the record of what
//! it saw) and the byte-level [`scripted`] transcript.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use pg_test_support::fake_pg::{messages, scripted};
use pg_test_support::{wait_until, Answer, FakeBackend, Script, Silence};

fn config(backend: &FakeBackend, password: &str) -> postgres::Config {
    let mut config = postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(backend.port)
        .user("no_user")
        .password(password)
        .options("-c timeline_id=7")
        .connect_timeout(Duration::from_secs(1));
    config
}

fn timeline_status(silence: Silence) -> FakeBackend {
    FakeBackend::start(Script {
        password: "token".to_string(),
        command: "TIMELINE_STATUS".to_string(),
        answer: Answer::Row(vec![
            ("term".to_string(), "7".to_string()),
            ("flush_lsn".to_string(), "0/16B5A50".to_string()),
        ]),
        silence,
        ..Script::default()
    })
}

fn row_values(messages: &[postgres::SimpleQueryMessage]) -> Vec<Option<String>> {
    messages
        .iter()
        .find_map(|message| match message {
            postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

#[test]
fn answers_its_command_and_records_the_connection() {
    let backend = timeline_status(Silence::Never);
    let mut client = config(&backend, "token").connect(postgres::NoTls).unwrap();
    let answer = client.simple_query("TIMELINE_STATUS").unwrap();
    assert_eq!(
        row_values(&answer),
        [Some("7".to_string()), Some("0/16B5A50".to_string())]
    );
    let error = client.simple_query("SELECT 1").unwrap_err();
    let message = error.as_db_error().map(|e| e.message().to_string());
    assert_eq!(
        message.as_deref(),
        Some("unexpected command or unknown timeline: SELECT 1")
    );
    drop(client);
    let seen = backend.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].param("user"), Some("no_user"));
    assert_eq!(seen[0].param("options"), Some("-c timeline_id=7"));
    assert_eq!(seen[0].password, "token");
    assert_eq!(seen[0].commands, ["TIMELINE_STATUS", "SELECT 1"]);
}

#[test]
fn refuses_a_wrong_password_with_its_sqlstate() {
    let backend = timeline_status(Silence::Never);
    let Err(error) = config(&backend, "nope").connect(postgres::NoTls) else {
        panic!("a wrong password was taken");
    };
    let code = error.as_db_error().map(|e| e.code().code().to_string());
    assert_eq!(code.as_deref(), Some("28P01"), "{error}");
    assert_eq!(backend.seen()[0].password, "nope");
}

#[test]
fn silent_at_startup_never_answers_the_startup_packet() {
    let backend = timeline_status(Silence::AtStartup);
    let mut stream = TcpStream::connect(("127.0.0.1", backend.port)).unwrap();
    let mut startup = 196608u32.to_be_bytes().to_vec(); // protocol 3.0
    startup.extend_from_slice(b"user\0no_user\0\0");
    let length = u32::try_from(startup.len() + 4).unwrap();
    stream.write_all(&length.to_be_bytes()).unwrap();
    stream.write_all(&startup).unwrap();
    // Waits out an answer that must NOT come.
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8];
    let read = stream.read(&mut byte);
    assert!(
        matches!(&read, Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut),
        "{read:?}"
    );
    assert!(wait_until(Duration::from_secs(5), || backend
        .seen()
        .first()
        .is_some_and(|seen| seen.param("user") == Some("no_user"))));
    assert!(backend.seen()[0].password.is_empty());
}

#[test]
fn down_refuses_connections() {
    let backend = FakeBackend::down();
    assert!(config(&backend, "token").connect(postgres::NoTls).is_err());
    assert_eq!(backend.connections(), 0);
}

#[test]
fn a_transcript_is_replayed_and_what_came_is_returned() {
    let mut greeting = messages::auth(0, &[]);
    greeting.extend(messages::ready());
    let mut answer = messages::row_description(&["a", "b"]);
    answer.extend(messages::data_row(&[Some("1"), None]));
    answer.extend(messages::message(b'C', b"SELECT 1\0"));
    answer.extend(messages::ready());
    let script = scripted(greeting.clone(), vec![answer.clone()]);
    let mut client = UnixStream::connect(script.socket()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut startup = 196608u32.to_be_bytes().to_vec(); // protocol 3.0
    startup.extend_from_slice(b"user\0alice\0\0");
    let length = u32::try_from(startup.len() + 4).unwrap();
    client.write_all(&length.to_be_bytes()).unwrap();
    client.write_all(&startup).unwrap();
    let mut got = vec![0; greeting.len()];
    client.read_exact(&mut got).unwrap();
    assert_eq!(got, greeting);
    client
        .write_all(&messages::message(b'Q', b"SELECT 1, NULL\0"))
        .unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, answer);
    let received = script.received();
    assert_eq!(received[0], (0, startup));
    assert_eq!(received[1], (b'Q', b"SELECT 1, NULL\0".to_vec()));
    // The encoder agrees with the protocol's framing: tag, length (itself included), body.
    assert_eq!(messages::ready(), [b'Z', 0, 0, 0, 5, b'I']);
}
