//! What pg-supervise forwards from a real Postgres's log carries no password hash, even when a
//! failing statement holding one is logged.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::common;

use crate::common::{wait_for, Fixture, SECOND};
use std::os::unix::fs::PermissionsExt;

use nix::sys::signal::Signal;

const SCRAM: &str = "SCRAM-SHA-256$4096:cmVkYWN0aW9uLXNhbHQ=$\
                     U3RvcmVkS2V5U3RvcmVkS2V5U3RvcmVkS2V5U3RvcmU=:\
                     U2VydmVyS2V5U2VydmVyS2V5U2VydmVyS2V5U2VydmU=";
const MD5: &str = "md5c0ffee00c0ffee00c0ffee00c0ffee00";
const SECRETS: [&str; 7] = [
    "SCRAM-SHA-256$",
    "cmVkYWN0aW9uLXNhbHQ",
    "U3RvcmVkS2V5",
    "U2VydmVyS2V5",
    "c0ffee00",
    "escaped-secret",
    "dollar-secret",
];

/// The server's message of a failed query.
fn db_message(error: postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_string(),
        None => error.to_string(),
    }
}

#[test]
fn failing_statements_are_forwarded_without_their_passwords() {
    let fixture = Fixture::new("");
    let mut supervisor = fixture.supervise(&["--no-monitor"]);
    supervisor.wait_event("ready", 30 * SECOND);
    let mut client = fixture.client();

    // A multi-line batch whose last statement fails: Postgres logs the whole batch as the
    // STATEMENT of the error, its lines continued on tab-indented lines.
    let batch = format!(
        "CREATE ROLE redact_a ENCRYPTED PASSWORD '{SCRAM}';\n\
         \tCREATE ROLE redact_b\n\
         \t\tPASSWORD\n\
         \t\t'{MD5}';\n\
         \tCREATE ROLE redact_c PASSWORD E'escaped-secret\\'s';\n\
         \tCREATE ROLE redact_d PASSWORD $pw$dollar-secret$pw$;\n\
         \tCREATE ROLE redact_a PASSWORD 'again'"
    );
    let error = db_message(client.batch_execute(&batch).unwrap_err());
    assert!(error.contains("already exists"), "{error}");
    // A syntax error whose message quotes the hash itself.
    let error = db_message(
        client
            .batch_execute(&format!("ALTER ROLE redact_x WITH '{MD5}'"))
            .unwrap_err(),
    );
    assert!(error.contains("syntax error"), "{error}");

    let logged = wait_for(10 * SECOND, || {
        let text = supervisor.stderr_text();
        (text.contains("redact_a\" already exists")
            && text.contains("ALTER ROLE redact_x WITH")
            && text.matches("STATEMENT").count() >= 2)
            .then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "the errors were not forwarded:\n{}",
            supervisor.stderr_text()
        )
    });
    for secret in SECRETS {
        assert!(
            !logged.contains(secret),
            "{secret:?} was forwarded:\n{logged}"
        );
    }
    assert!(logged.contains("ENCRYPTED PASSWORD '********'"), "{logged}");
    assert!(
        logged.contains("syntax error at or near \"'********'\""),
        "{logged}"
    );

    supervisor.signal(Signal::SIGTERM);
    supervisor.wait_event("exited", 30 * SECOND);
    assert_eq!(supervisor.wait(10 * SECOND).code(), Some(0));
}

/// Whatever Postgres writes, on stdout as on stderr, goes through the redacting forwarder, and
/// the start-up error report carries no hash either.
#[test]
fn postgres_stdout_is_forwarded_redacted_too() {
    let fixture = Fixture::new("");
    // Runs as the postgres user when the test is root: the fixture's directory is theirs.
    let fake = fixture.pg.dir().join("fake-postgres.sh");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\n\
             echo 'on stdout: ALTER ROLE a PASSWORD '\\''{MD5}'\\'\n\
             echo '2026-11-30 00:00:00 UTC [1] FATAL:  on stderr: {SCRAM}' >&2\n\
             exit 3\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    if nix::unistd::Uid::effective().is_root() {
        let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        nix::unistd::chown(&fake, Some(postgres.uid), Some(postgres.gid)).unwrap();
    }
    let mut document = fixture.document.clone();
    document.pgbin = fake;
    let mut supervisor = common::Supervisor::start(
        &mut fixture.command(&["--no-monitor"]),
        &serde_json::to_string(&document).unwrap(),
    );
    let envelope = supervisor.next_line(30 * SECOND);
    let message = envelope["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("exit code 3"), "{envelope}");
    assert_eq!(supervisor.wait(10 * SECOND).code(), Some(1));
    let logged = supervisor.stderr_text();
    assert!(
        logged.contains("PG:on stdout: ALTER ROLE a PASSWORD '********'"),
        "{logged}"
    );
    assert!(logged.contains("on stderr: ********"), "{logged}");
    for secret in SECRETS {
        assert!(
            !logged.contains(secret),
            "{secret:?} was forwarded:\n{logged}"
        );
        assert!(
            !message.contains(secret),
            "{secret:?} was reported:\n{message}"
        );
    }
}
