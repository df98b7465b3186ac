//! `--keep`: a lease line per renewal on upstream's schedule until SIGTERM (exit 0); a
//! refusal, or a failure of the first attempt, ends the run with its error.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pg_test_support::fake_pg::page_service::Behaviour;
use pg_test_support::wait_for;

use super::*;

/// A `pg-lsn-lease --keep` run, its stdout lines as they come; killed on drop (a failing
/// test leaves nothing running).
pub(crate) struct Keeping {
    child: Child,
    lines: Receiver<String>,
}

impl Keeping {
    pub(crate) fn start(args: &[&str], document: &str) -> Keeping {
        let mut child = Command::new(PG_LSN_LEASE)
            .arg("--keep")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(document.as_bytes())
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Keeping { child, lines }
    }

    /// The next stdout line as JSON, within 20 s.
    pub(crate) fn next(&self) -> Value {
        let line = self.lines.recv_timeout(Duration::from_secs(20)).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    /// The exit code, within `limit`.
    pub(crate) fn exit_within(&mut self, limit: Duration) -> Option<i32> {
        let status = wait_for(limit, || self.child.try_wait().unwrap())
            .unwrap_or_else(|| panic!("pg-lsn-lease still runs after {limit:?}"));
        status.code()
    }

    pub(crate) fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }
}

impl Drop for Keeping {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn keep_renews_on_schedule_until_sigterm() {
    // Valid 2 s → renewed after max(2 s − 60 s, 1 s) = 1 s.
    let a = Pageserver::start(TOKEN, vec![Behaviour::ValidFor(Duration::from_secs(2))]);
    let b = Pageserver::start(TOKEN, vec![Behaviour::ValidFor(Duration::from_secs(2))]);
    let mut run = Keeping::start(&[], &two_shards(&a, &b));
    for _ in 0..3 {
        let leases = run.next();
        assert_eq!(leases["shards"].as_array().unwrap().len(), 2, "{leases}");
        assert!(from_now(&leases["valid_until"]) <= Duration::from_secs(2));
    }
    let seen = b.seen();
    assert!(seen.len() >= 3);
    for pair in seen.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(800), "renewed after {gap:?}");
    }
    run.signal(Signal::SIGTERM);
    assert_eq!(run.exit_within(Duration::from_secs(10)), Some(0));
    assert!(a.seen().len() >= 3);
}

#[test]
fn a_later_failure_is_retried_and_a_refusal_ends_the_run() {
    let a = Pageserver::start(
        TOKEN,
        vec![
            Behaviour::ValidFor(Duration::from_millis(500)),
            Behaviour::Fail,
            Behaviour::ValidFor(Duration::from_millis(500)),
            Behaviour::Refuse,
        ],
    );
    let mut run = Keeping::start(&[], &one_shard(&a));
    assert_eq!(run.next()["shards"][0]["tenant_shard_id"], TENANT);
    // The failure is retried (0.5 s later), not printed.
    assert_eq!(run.next()["shards"][0]["pageserver"], a.address());
    let error = run.next();
    assert_eq!(error["error"]["kind"], "server", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains(&a.address()), "{message}");
    assert!(message.contains("refused to lease 0/16B3748"), "{message}");
    assert_eq!(run.exit_within(Duration::from_secs(10)), Some(1));
    assert_eq!(a.seen().len(), 4);
}

#[test]
fn a_first_failure_ends_the_run_at_once() {
    let silent = Pageserver::silent(TOKEN);
    let mut run = Keeping::start(&["--request-timeout", "1s"], &one_shard(&silent));
    let error = run.next();
    assert_eq!(error["error"]["kind"], "timeout", "{error}");
    assert_eq!(run.exit_within(Duration::from_secs(10)), Some(1));
    assert_eq!(silent.seen().len(), 1);
}

#[test]
fn a_lease_that_has_already_ended_is_renewed_with_back_off_not_in_a_loop() {
    // A pageserver granting leases that ended ten seconds ago, every time.
    let past = SystemTime::now() - Duration::from_secs(10);
    let millis = past
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let a = Pageserver::start(TOKEN, vec![Behaviour::Says(Some(millis.to_string()))]);
    let run = Keeping::start(&[], &one_shard(&a));
    run.next();
    std::thread::sleep(Duration::from_secs(4));
    let seen = a.seen();
    // At least a second between renewals, growing: 1 + 1 + 1.1 s… in 4 s.
    assert!(
        (2..=5).contains(&seen.len()),
        "{} lease requests in 4 s",
        seen.len()
    );
    for pair in seen.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(900), "renewed after {gap:?}");
    }
    run.signal(Signal::SIGTERM);
}
