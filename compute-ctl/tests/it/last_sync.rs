//! The safekeeper sync after Postgres stops, through the real `pg-sync-safekeepers` stage:
//! a Primary with Neon storage whose safekeeper is gone (its fast path is refused), and a
//! script standing in for `postgres --sync-safekeepers` (the walproposer) that reaches a
//! quorum or, once the test takes the safekeepers down, fails as the real one does. The
//! other stages are the harness's stand-ins.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use pg_test_support::TestDir;
use serde_json::json;

/// The LSN the stand-in walproposer reports when the safekeepers answer.
const SYNCED_LSN: &str = "0/2A00028";

/// A Primary on Neon storage whose safekeeper at `safekeeper_port` refuses connections.
fn neon_primary(safekeeper_port: u16) -> serde_json::Value {
    json!({"format_version": 1.0, "mode": "Primary",
        "tenant_id": "00000000000000000000000000000001",
        "timeline_id": "00000000000000000000000000000002",
        "pageserver_connstring": "postgresql://no_user@127.0.0.1:6400",
        "safekeeper_connstrings": [format!("127.0.0.1:{safekeeper_port}")],
        "cluster": {"roles": [], "databases": []}})
}

/// The walproposer stand-in's directory: `postgres` (the script), `calls` (one line per
/// run), and the switches `down` (the safekeepers are unreachable) and `slow` (a run takes
/// a second).
struct Walproposer {
    dir: TestDir,
}

impl Walproposer {
    fn new() -> Walproposer {
        let dir = TestDir::new("walprop");
        let home = dir.path().display();
        let script = format!(
            "#!/bin/sh\n\
             echo \"$*\" >> {home}/calls\n\
             if [ -e {home}/slow ]; then sleep 1; fi\n\
             if [ -e {home}/down ]; then\n\
             \x20 echo 'FATAL: failed to connect to safekeepers: connection refused' >&2\n\
             \x20 exit 1\n\
             fi\n\
             echo {SYNCED_LSN}\n"
        );
        let path = dir.path().join("postgres");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Walproposer { dir }
    }

    fn pgbin(&self) -> PathBuf {
        self.dir.path().join("postgres")
    }

    fn switch_on(&self, name: &str) {
        std::fs::write(self.dir.path().join(name), "").unwrap();
    }

    /// How many times `postgres --sync-safekeepers` ran.
    fn syncs(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("--sync-safekeepers"))
            .count()
    }
}

/// A running Neon Primary (the real pg-sync-safekeepers, the start sync done), its
/// walproposer and the harness, compute-ctl's log in `compute-ctl.log`.
fn start_primary() -> (Compute, Walproposer, Harness) {
    let walproposer = Walproposer::new();
    let mut harness = Harness::with_pgbin(&walproposer.pgbin());
    harness.command.env(
        "COMPUTE_CTL_STAGE_PG_SYNC_SAFEKEEPERS",
        workspace_bin("pg-sync-safekeepers"),
    );
    let log = std::fs::File::create(harness.path().join("compute-ctl.log")).unwrap();
    harness.command.stderr(log);
    let spec = neon_primary(pg_test_support::free_tcp_port());
    let compute = harness.start(&["-s", &spec.to_string()]);
    compute.wait_status("running");
    assert_eq!(walproposer.syncs(), 1, "the start-up sync");
    (compute, walproposer, harness)
}

fn log_of(harness: &Harness) -> String {
    std::fs::read_to_string(harness.path().join("compute-ctl.log")).unwrap()
}

/// Two `/terminate`s: the first, then a second that joins it while the final sync runs.
fn terminate_twice(compute: &Compute) -> (Answer, Answer) {
    let port = compute.port;
    let first = std::thread::spawn(move || http(port, "POST", "/terminate", &[], b""));
    compute.wait_status("termination_pending_fast");
    let second = compute.post("/terminate", b"");
    (first.join().unwrap(), second)
}

/// The attack: the safekeepers are unreachable when Postgres has stopped, so the last WAL may
/// be on no safekeeper. The caller must not read that as a clean stop: both the `/terminate`
/// and one that joins it get 500 naming the failure, `/status` never says `terminated`, and
/// compute-ctl exits 1.
#[test]
fn a_failed_final_sync_answers_500_and_exits_1() {
    let (mut compute, walproposer, harness) = start_primary();
    walproposer.switch_on("down");
    let (first, joined) = terminate_twice(&compute);
    for answer in [&first, &joined] {
        assert_eq!(answer.status, 500, "{}", answer.body);
        let error = answer.json()["error"].as_str().unwrap().to_string();
        assert!(
            error.contains("the safekeeper sync after Postgres stopped failed")
                && error.contains("failed to connect to safekeepers"),
            "{error}"
        );
    }
    assert_eq!(compute.wait_exit(Duration::from_secs(20)), 1);
    assert!(walproposer.syncs() >= 2, "the final sync never ran");
    let log = log_of(&harness);
    assert!(!log.contains("to=terminated"), "{log}");
    assert!(
        log.contains("the safekeeper sync after Postgres stopped failed"),
        "{log}"
    );
}

/// A sync that reaches the safekeepers: 200 with their LSN, to the caller and to one that
/// joined the termination (upstream answers the latter 412), then exit 0.
#[test]
fn a_final_sync_answers_200_with_its_lsn_to_every_caller() {
    let (mut compute, walproposer, harness) = start_primary();
    walproposer.switch_on("slow");
    let (first, joined) = terminate_twice(&compute);
    for answer in [&first, &joined] {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.json(), json!({"lsn": SYNCED_LSN}));
    }
    assert_eq!(compute.wait_exit(Duration::from_secs(20)), 0);
    assert_eq!(walproposer.syncs(), 2);
    assert!(log_of(&harness).contains("to=terminated"));
}

/// Postgres dying while `running` (no termination asked) gets the final sync too, as
/// upstream: its exit code when the sync succeeds (the stand-in's 3), 1 when it fails.
#[test]
fn a_primary_that_crashed_while_running_is_synced_once_more() {
    for (down, code) in [(false, 3), (true, 1)] {
        let (mut compute, walproposer, harness) = start_primary();
        if down {
            walproposer.switch_on("down");
        }
        std::fs::write(harness.path().join("crash"), "").unwrap();
        assert_eq!(
            compute.wait_exit(Duration::from_secs(20)),
            code,
            "down: {down}"
        );
        assert!(walproposer.syncs() >= 2, "down: {down}: no final sync");
        let log = log_of(&harness);
        assert!(
            log.contains("syncing the safekeepers after Postgres stopped"),
            "{log}"
        );
        assert!(!log.contains("to=terminated"), "{log}");
    }
}
