//! Scenario 3: three safekeeper stand-ins behind proxies in one namespace; one, then two of
//! them unreachable (their packets dropped, not refused).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use compute_spec::exit_code;
use pg_test_support::netns::{netns_or_skip, NetNs, Proxy};
use pg_test_support::{Answer, FakeBackend, Script};
use serde_json::json;

use super::common::{self, Running, Watchdog};

const TENANT: &str = "b0554b632bd4d547a63b86c3630317e8";
const TIMELINE: &str = "2414a61ffc94e428f14b5758fe308e13";
const TOKEN: &str = "storage-token-netfault";
const COMMITTED: &str = "0/3000028";

/// A safekeeper stand-in answering `TIMELINE_STATUS` with everything committed at `COMMITTED`.
fn safekeeper() -> FakeBackend {
    let columns = [
        ("term", "7"),
        ("flush_lsn", COMMITTED),
        ("commit_lsn", COMMITTED),
    ];
    FakeBackend::start(Script {
        password: TOKEN.to_string(),
        command: "TIMELINE_STATUS".to_string(),
        answer: Answer::Row(
            columns
                .iter()
                .map(|(name, value)| ((*name).to_string(), (*value).to_string()))
                .collect(),
        ),
        ..Script::default()
    })
}

/// Stands in for Neon's `postgres --sync-safekeepers`: like it, it needs a quorum (2 of 3)
/// of the safekeepers in `neon.safekeepers` to accept a connection, and waits for one as long
/// as it is let; then prints the LSN.
fn sync_standin(dir: &Path) -> PathBuf {
    let path = dir.join("postgres");
    let script = format!(
        r#"#!/bin/bash
line=$(grep "^neon.safekeepers" "$PGDATA/postgresql.conf" | tail -n 1)
list=${{line#*=}}; list=${{list//\'/}}; list=${{list// /}}
IFS=, read -r -a safekeepers <<< "$list"
while true; do
  reached=0
  for sk in "${{safekeepers[@]}}"; do
    if timeout 1 bash -c "exec 3<>/dev/tcp/${{sk%:*}}/${{sk##*:}}" 2>/dev/null; then
      reached=$((reached + 1))
    fi
  done
  if [ "$reached" -ge 2 ]; then echo {COMMITTED}; exit 0; fi
  echo "sync-safekeepers stand-in: only $reached of ${{#safekeepers[@]}} safekeepers reachable" >&2
done
"#
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

struct Setup {
    proxies: Vec<Proxy>,
    _standins: Vec<FakeBackend>,
    ns: NetNs,
}

fn setup(test: &str) -> Option<Setup> {
    let ns = netns_or_skip(test)?;
    let standins: Vec<FakeBackend> = (0..3).map(|_| safekeeper()).collect();
    let proxies = standins
        .iter()
        .map(|standin| Proxy::start(ns.listen(0), standin.address().parse().unwrap()))
        .collect();
    Some(Setup {
        proxies,
        _standins: standins,
        ns,
    })
}

/// Runs pg-sync-safekeepers for a Neon Primary whose safekeepers are the three proxies.
fn run_sync(setup: &Setup, prefix: &str, args: &[&str]) -> (pg_test_support::StageRun, Duration) {
    let (dir, port) = common::compute_dir(prefix);
    let safekeepers: Vec<String> = setup
        .proxies
        .iter()
        .map(|proxy| format!("{}:{}", setup.ns.peer_addr(), proxy.port()))
        .collect();
    let spec = common::spec_file(dir.path(), port, |spec| {
        spec["tenant_id"] = json!(TENANT);
        spec["timeline_id"] = json!(TIMELINE);
        spec["pageserver_connstring"] = json!("postgresql://no_user@127.0.0.1:1");
        spec["safekeeper_connstrings"] = json!(safekeepers);
        spec["storage_auth_token"] = json!(TOKEN);
        spec["mode"] = json!("Primary");
    });
    let pgbin = sync_standin(dir.path());
    let document = common::document(&spec, &dir.path().join("pgdata"), &pgbin);
    Running::start("pg-sync-safekeepers", args, &document).finish(Duration::from_secs(30))
}

#[test]
fn one_safekeeper_of_three_dropped_the_quorum_decides_without_waiting_for_it() {
    let watchdog = Watchdog::new("one_safekeeper_dropped", Duration::from_secs(60));
    let Some(setup) = setup("one_safekeeper_of_three_dropped") else {
        return;
    };
    setup.ns.drop_ports(&[setup.proxies[1].port()]);
    // A per-safekeeper time far above what the answering two need: the decision must not wait
    // for the silent one.
    let (outcome, took) = run_sync(&setup, "nf-sk1", &["--fast-path-timeout", "5s"]);
    assert_eq!(outcome.code, i32::from(exit_code::OK), "{}", outcome.stderr);
    let section = &outcome.json["sync_safekeepers"];
    assert_eq!(section["lsn"], COMMITTED, "{section}");
    assert_eq!(section["method"], "safekeepers-fast-path", "{section}");
    let check_ms = section["sync_sk_check_ms"].as_u64().unwrap();
    assert!(
        check_ms < 2_500,
        "the quorum decision took {check_ms} ms: it waited for the dropped safekeeper"
    );
    assert_eq!(
        setup.proxies[1].accepted(),
        0,
        "the dropped one was reached"
    );
    assert!(setup.ns.dropped_packets() > 0);
    eprintln!(
        "measured: 1 of 3 safekeepers dropped: fast-path decision in {check_ms} ms, stage {took:?}"
    );
    eprintln!("measured: scenario 3a took {:?}", watchdog.elapsed());
}

#[test]
fn two_safekeepers_of_three_dropped_fail_clearly_within_the_deadline() {
    let watchdog = Watchdog::new("two_safekeepers_dropped", Duration::from_secs(60));
    let Some(setup) = setup("two_safekeepers_of_three_dropped") else {
        return;
    };
    setup
        .ns
        .drop_ports(&[setup.proxies[0].port(), setup.proxies[2].port()]);
    let (outcome, took) = run_sync(
        &setup,
        "nf-sk2",
        &["--fast-path-timeout", "500ms", "--timeout", "4s"],
    );
    let error = outcome.failed_with(exit_code::RUNTIME, "timeout");
    let message = error["message"].as_str().unwrap();
    eprintln!("measured: 2 of 3 safekeepers dropped: failed after {took:?}: {message}");
    // The fast path's 0.5 s and the slow path's 4 s deadline, and little more.
    assert!(took >= Duration::from_secs(4), "failed too early: {took:?}");
    assert!(took < Duration::from_secs(8), "failed only after {took:?}");
    assert!(
        outcome.stderr.contains("only 1 of 3 safekeepers answered"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("only 1 of 3 safekeepers reachable"),
        "the stand-in's log did not reach the stage's: {}",
        outcome.stderr
    );
    eprintln!("measured: scenario 3b took {:?}", watchdog.elapsed());
}
