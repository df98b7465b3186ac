//! The log pipeline is bounded, against a real Postgres: a `log_line_prefix` without a
//! timestamp (every line a continuation) and a flood of log keep pg-supervise's memory small
//! (back-pressure, no drops); an over-long line is cut; a secret split by a cut — an md5 hash at a line's
//! cut, a password literal at a message's cut — is still not forwarded.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::sync::{Arc, Mutex};

use pg_supervise::logs::{LINE_CUT, LINE_JOINER, LINE_MAX, MESSAGE_CUT, MESSAGE_MAX};
use pg_supervise::redact::MASK;
use pg_test_support::rss::peak_rss_kib;

use crate::common::{wait_for, Fixture, Supervisor, SECOND};

/// What the scanning thread saw on pg-supervise's stderr.
#[derive(Default)]
struct Seen {
    /// Occurrences of the flood's text.
    flood_lines: usize,
    /// The longest stderr line.
    longest: usize,
    /// The lines holding any of the watched words, whole.
    kept: Vec<String>,
}

/// Starts pg-supervise on `fixture`, counting `counted` and keeping the lines holding any of
/// `watched` (the rest of stderr is scanned, not kept).
fn supervise(
    fixture: &Fixture,
    counted: &'static str,
    watched: &'static [&'static str],
) -> (Supervisor, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let scanned = seen.clone();
    let supervisor = Supervisor::start_scanning(
        &mut fixture.command(&["--no-monitor"]),
        &fixture.document_json(),
        move |line| {
            let text = String::from_utf8_lossy(line);
            let mut seen = scanned.lock().unwrap();
            seen.flood_lines += text.matches(counted).count();
            seen.longest = seen.longest.max(line.len());
            if watched.iter().any(|word| text.contains(word)) {
                seen.kept.push(text.into_owned());
            }
        },
    );
    supervisor.wait_event("ready", 30 * SECOND);
    (supervisor, seen)
}

/// Waits until a kept line holds `word`; everything kept, joined.
fn wait_kept(seen: &Mutex<Seen>, word: &str) -> String {
    wait_kept_any(seen, &[word])
}

/// Waits until a kept line holds one of `words`; everything kept, joined.
fn wait_kept_any(seen: &Mutex<Seen>, words: &[&str]) -> String {
    wait_for(120 * SECOND, || {
        let kept = seen.lock().unwrap().kept.join("\n");
        words.iter().any(|word| kept.contains(word)).then_some(kept)
    })
    .unwrap_or_else(|| panic!("none of {words:?} was forwarded"))
}

#[test]
fn a_prefix_without_timestamp_and_a_flood_keep_memory_bounded() {
    // `%p ` : no line starts with a timestamp, so each one continues the message before it.
    let fixture = Fixture::new("log_line_prefix = '%p '");
    let (supervisor, seen) = supervise(&fixture, "LOG:  flood ", &["flood-done"]);
    let baseline = peak_rss_kib(supervisor.pid().as_raw()).unwrap();
    // 8192 lines of 8 KiB (64 MiB, each with its STATEMENT line), written as fast as Postgres
    // can. (The marker is built in SQL: the STATEMENT lines quote the block.)
    const LINES: usize = 8192;
    fixture
        .client()
        .batch_execute(&format!(
            "DO $$ BEGIN FOR i IN 1..{LINES} LOOP RAISE LOG 'flood %', repeat('x', 8192); \
             END LOOP; RAISE LOG '%', 'flood' || '-done'; END $$"
        ))
        .unwrap();
    wait_kept(&seen, "flood-done");
    let peak = peak_rss_kib(supervisor.pid().as_raw()).unwrap();
    let seen = seen.lock().unwrap();
    eprintln!(
        "pg-supervise: peak RSS {peak} KiB (before the flood {baseline} KiB); longest stderr \
         line {} bytes; {} flood lines forwarded",
        seen.longest, seen.flood_lines
    );
    // Back-pressure, not drops: the lines arrive (all of them in practice; Postgres itself does
    // not retry a write to its stderr that a signal interrupts while the pipe is full, so
    // allow for the rare message it cuts short).
    assert!(
        seen.flood_lines >= LINES * 99 / 100,
        "{} of {LINES}",
        seen.flood_lines
    );
    // Messages were cut at the cap (plus the log line's own prefix).
    assert!(
        seen.longest <= MESSAGE_MAX + MESSAGE_CUT.len() + 200,
        "a message of {} bytes",
        seen.longest
    );
    assert!(
        peak < 32 << 10,
        "pg-supervise reached {peak} KiB forwarding 64 MiB of log"
    );
}

const HEX: [&str; 3] = [
    "c0ffee00c0ffee00c0ffee00c0ffee00",
    "d1ce0000d1ce0000d1ce0000d1ce0000",
    "beef0000beef0000beef0000beef0000",
];

#[test]
fn an_over_long_line_is_cut_and_a_secret_at_the_cut_is_still_masked() {
    // No prefix: a line is exactly `LOG:  ` and the message, so the cut falls where we want;
    // no STATEMENT lines (they would quote the SQL that builds the lines).
    let fixture = Fixture::new("log_line_prefix = ''\nlog_min_error_statement = panic");
    let (mut supervisor, seen) = supervise(&fixture, "tail-never-forwarded", &["LOG:  x"]);
    let head = "LOG:  ".len();
    let mut raises = String::new();
    // An md5 hash cut after 1, 10 and 31 of its hex digits.
    for (hex, kept) in HEX.iter().zip([1, 10, 31]) {
        let filler = LINE_MAX - head - " md5".len() - kept;
        raises.push_str(&format!(
            "RAISE LOG '%', repeat('x', {filler}) || ' md5{hex} tail-never-forwarded';"
        ));
    }
    // A SCRAM verifier cut in its salt, a password literal cut inside.
    let filler = LINE_MAX - head - " SCRAM-SHA-256$4096:c2Fs".len();
    raises.push_str(&format!(
        "RAISE LOG '%', repeat('x', {filler}) || ' SCRAM-SHA-256$4096:c2FsdHNhbHQ=$abc:def';"
    ));
    raises.push_str("RAISE LOG '%', 'cut' || '-done';");
    // Last: an unterminated literal is masked to the end of its message.
    let filler = LINE_MAX - head - " PASSWORD 'plain-sec".len();
    raises.push_str(&format!(
        "RAISE LOG '%', repeat('x', {filler}) || ' PASSWORD ''pl' || 'ain-secret'' LOGIN';"
    ));
    fixture
        .client()
        .batch_execute(&format!("DO $$ BEGIN {raises} END $$"))
        .unwrap();
    wait_kept(&seen, "cut-done");
    let kept = wait_kept(&seen, "x PASSWORD '");
    let cut = format!("x {MASK}{LINE_CUT}");
    assert_eq!(
        kept.matches(&cut).count(),
        4,
        "masked hash or verifier at a cut"
    );
    assert!(
        kept.contains(&format!("x PASSWORD '{MASK}'")),
        "literal at a cut"
    );
    for (hex, kept_digits) in HEX.iter().zip([1, 10, 31]) {
        let fragment = format!("md5{}", &hex[..kept_digits]);
        assert!(!kept.contains(&fragment), "{fragment} was forwarded");
    }
    for secret in ["c2FsdHNh", "c2Fs", "plain-sec", "tail-never-forwarded"] {
        assert!(!kept.contains(secret), "{secret} was forwarded");
    }
    // Each line of the (joined) messages is at most the cap (and the log line's own prefix).
    for line in kept.split(['\n', LINE_JOINER]) {
        assert!(
            line.len() < LINE_MAX + LINE_CUT.len() + 100,
            "{}",
            line.len()
        );
    }
    supervisor.signal(nix::sys::signal::Signal::SIGTERM);
    supervisor.wait_event("exited", 30 * SECOND);
    assert_eq!(supervisor.wait(10 * SECOND).code(), Some(0));
}

#[test]
fn a_password_split_by_a_message_cut_is_not_forwarded() {
    let fixture = Fixture::new("log_line_prefix = '%p '");
    let (_supervisor, seen) = supervise(
        &fixture,
        "never-counted",
        &[
            "STATEMENT",
            "plain-secret",
            "continuation lines",
            "were dropped",
        ],
    );
    // A failing batch logged as ERROR, then STATEMENT and its lines, all continuations: 17
    // lines of 60,000 bytes bring the message near the 1 MiB cap, the keyword still fits, the
    // literal's line does not: the message is cut between them.
    let filler = format!("-- {}\n", "f".repeat(59_996));
    let secret = format!("'plain-secret-{}'", "s".repeat(59_000));
    let batch = format!(
        "SELECT 1;\n{}CREATE ROLE split_secret PASSWORD\n{secret};\nSELECT 1/0;",
        filler.repeat(17)
    );
    let error = fixture.client().batch_execute(&batch).unwrap_err();
    let message = error.as_db_error().map(|db| db.message().to_string());
    assert_eq!(message.as_deref(), Some("division by zero"), "{error:?}");
    // The warning that ends the dropped lines, or (without the defence) the secret's line.
    let kept = wait_kept_any(&seen, &["were dropped", "plain-secret"]);
    assert!(!kept.contains("plain-secret"), "the password was forwarded");
    assert!(kept.contains("PASSWORD"), "the statement was not forwarded");
    assert!(kept.contains(MESSAGE_CUT.trim()), "the message was not cut");
}
