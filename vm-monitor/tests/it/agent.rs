//! End-to-end tests: a fake autoscaler-agent (tungstenite client) against
//! `vm_monitor::start()` on 127.0.0.1:0, with a fake cgroup directory.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::{Agent, FakeCgroup, Received, GIB, MIB};
use pg_test_support::probe::wait_for_every;
use serde_json::json;

fn mem(bytes: u64) -> serde_json::Value {
    json!({"cpu": 1.0, "mem": bytes})
}

#[test]
fn handshake_health_check_and_upscale() {
    let h = common::start(None, None);
    let mut a = Agent::connect_v1(h.local_addr());
    a.send("HealthCheck", json!({}), 2);
    assert_eq!(a.recv_reply(), json!({"type": "HealthCheck", "id": 2}));
    a.send("UpscaleNotification", json!({"granted": mem(4 * GIB)}), 4);
    assert_eq!(
        a.recv_reply(),
        json!({"type": "UpscaleConfirmation", "id": 4})
    );
    // Agent-side errors are only logged: the next reply is for the next request.
    a.send("InvalidMessage", json!({"error": "what?"}), 6);
    a.send("InternalError", json!({"error": "oops"}), 8);
    a.send("HealthCheck", json!({}), 10);
    assert_eq!(a.recv_reply(), json!({"type": "HealthCheck", "id": 10}));
    h.shutdown();
}

#[test]
fn version_mismatch_gets_error_and_close() {
    let h = common::start(None, None);
    for bad in [r#"{"min":2,"max":3}"#, "garbage"] {
        let mut a = Agent::connect(h.local_addr());
        a.send_text(bad);
        let reply = a.recv_json(Duration::from_secs(3));
        assert!(reply["error"].is_string(), "{bad}: {reply}");
        assert!(reply.get("version").is_none());
        a.expect_closed(Duration::from_secs(2));
    }
    // The monitor still serves a well-behaved agent afterwards.
    let mut a = Agent::connect_v1(h.local_addr());
    a.send("HealthCheck", json!({}), 2);
    assert_eq!(a.recv_reply()["id"], 2);
    h.shutdown();
}

#[test]
fn other_paths_are_404() {
    let h = common::start(None, None);
    let stream = std::net::TcpStream::connect(h.local_addr()).unwrap();
    match tungstenite::client(format!("ws://{}/other", h.local_addr()), stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            assert_eq!(resp.status(), 404)
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("/other was upgraded"),
    }
    h.shutdown();
}

#[test]
fn garbage_frames_are_answered_and_session_survives() {
    let h = common::start(None, None);
    let mut a = Agent::connect_v1(h.local_addr());
    let garbage = [
        ("not json at all", None),
        (r#"{"type":"Bogus","content":{},"id":10}"#, Some(10)),
        (
            r#"{"type":"DownscaleRequest","content":{"target":"x"},"id":12}"#,
            Some(12),
        ),
        (r#"{"type":"UpscaleNotification","id":14}"#, Some(14)),
        (r#"[1,2,3]"#, None),
        (
            r#"{"type":"HealthCheck","content":{},"id":"sixteen"}"#,
            None,
        ),
    ];
    let mut minted = Vec::new();
    for (text, id) in garbage {
        a.send_text(text);
        let r = a.recv_reply();
        assert_eq!(r["type"], "InvalidMessage", "{text}: {r}");
        assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
        match id {
            Some(id) => assert_eq!(r["id"], id, "{text}"),
            None => minted.push(r["id"].as_u64().unwrap()),
        }
    }
    a.ws.send(tungstenite::Message::binary(vec![0u8, 1, 2]))
        .unwrap();
    let r = a.recv_reply();
    assert_eq!(r["type"], "InvalidMessage");
    minted.push(r["id"].as_u64().unwrap());
    // Ids minted by the monitor are odd and strictly increasing.
    assert!(minted.iter().all(|i| i % 2 == 1), "{minted:?}");
    assert!(minted.windows(2).all(|w| w[1] > w[0]), "{minted:?}");
    a.send("HealthCheck", json!({}), 20);
    assert_eq!(a.recv_reply(), json!({"type": "HealthCheck", "id": 20}));
    h.shutdown();
}

#[test]
fn second_agent_replaces_first() {
    let h = common::start(None, None);
    let mut first = Agent::connect_v1(h.local_addr());
    let mut second = Agent::connect_v1(h.local_addr());
    first.expect_closed(Duration::from_secs(2));
    second.send("HealthCheck", json!({}), 2);
    assert_eq!(second.recv_reply(), json!({"type": "HealthCheck", "id": 2}));
    h.shutdown();
}

#[test]
fn shutdown_closes_agent_promptly() {
    let h = common::start(None, None);
    let mut a = Agent::connect_v1(h.local_addr());
    let t = Instant::now();
    h.shutdown();
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    a.expect_closed(Duration::from_secs(1));
}

#[test]
fn without_cgroup_downscale_is_always_ok() {
    // No cgroup configured, and a configured but missing cgroup (cgroup v1 host).
    let missing = tempfile::tempdir().unwrap();
    for cg in [None, Some((missing.path(), "neon-postgres"))] {
        let h = common::start(cg, None);
        assert!(!h.cgroup_managed());
        let mut a = Agent::connect_v1(h.local_addr());
        a.send("DownscaleRequest", json!({"target": mem(MIB)}), 2);
        let r = a.recv_reply();
        assert_eq!(r["type"], "DownscaleResult");
        assert_eq!(r["Ok"], true, "{r}");
        assert!(r["Status"].is_string());
        assert_eq!(r["id"], 2);
        h.shutdown();
    }
}

/// Asks for a downscale to `target` bytes every 50 ms (even ids from `first_id`) until the
/// answer's `Ok` is `ok`, for at most 5 s; returns that answer, whose id is the request's.
fn downscale_until(a: &mut Agent, target: u64, ok: bool, first_id: u64) -> serde_json::Value {
    let mut id = first_id;
    let mut last = serde_json::Value::Null;
    let answer = wait_for_every(Duration::from_millis(50), Duration::from_secs(5), || {
        a.send("DownscaleRequest", json!({"target": mem(target)}), id);
        last = a.recv_reply();
        assert_eq!(last["id"], id, "{last}");
        id += 2;
        (last["Ok"] == ok).then(|| last.clone())
    });
    answer.unwrap_or_else(|| panic!("no DownscaleResult with Ok {ok} within 5 s; last: {last}"))
}

#[test]
fn downscale_granted_then_denied() {
    let cg = FakeCgroup::new(100 * MIB, "max");
    let before = cg.snapshot();
    let h = common::start(Some((cg.root.path(), cg.name)), None);
    assert!(h.cgroup_managed());
    let mut a = Agent::connect_v1(h.local_addr());
    a.send("UpscaleNotification", json!({"granted": mem(4 * GIB)}), 2);
    assert_eq!(a.recv_reply()["type"], "UpscaleConfirmation");

    // 1 GiB → threshold ≈ 785 MiB ≥ 100 MiB used + 100 MiB headroom (once sampled).
    let r = downscale_until(&mut a, GIB, true, 4);
    assert_eq!(r["type"], "DownscaleResult");
    assert_eq!(r["Ok"], true, "{r}");

    // Usage grows to 700 MiB: 785 < 700 + 100, so shrinking to 1 GiB is refused (once the
    // sample window has refreshed).
    cg.set_usage(700 * MIB);
    let r = downscale_until(&mut a, GIB, false, 1000);
    assert_eq!(r["type"], "DownscaleResult");
    assert_eq!(r["Ok"], false, "{r}");
    assert!(r["Status"].as_str().unwrap().contains("below"), "{r}");
    h.shutdown();
    // Nothing in the cgroup was written (memory.high untouched, no new files).
    assert_eq!(cg.snapshot(), before);
}

#[test]
fn memory_pressure_sends_rate_limited_upscale_requests() {
    let cg = FakeCgroup::new(100 * MIB, &GIB.to_string());
    let h = common::start(Some((cg.root.path(), cg.name)), None);
    let mut a = Agent::connect_v1(h.local_addr());
    // Below the threshold (85 % of 924 MiB ≈ 785 MiB): nothing is requested (a wait for
    // something that must NOT happen).
    assert!(a.recv(Duration::from_millis(500)).is_none());

    cg.set_usage(950 * MIB);
    // Count the requests in a fixed window: the rate is what is under test.
    let mut seen = Vec::new();
    let end = Instant::now() + Duration::from_millis(2600);
    while Instant::now() < end {
        match a.recv(end.saturating_duration_since(Instant::now())) {
            Some(Received::Json(v)) => {
                assert_eq!(v["type"], "UpscaleRequest", "{v}");
                assert_eq!(v.as_object().unwrap().len(), 2, "flat, no fields: {v}");
                seen.push((Instant::now(), v["id"].as_u64().unwrap()));
            }
            Some(Received::Closed) => panic!("closed"),
            None => {}
        }
    }
    assert!((2..=3).contains(&seen.len()), "{} requests", seen.len());
    for w in seen.windows(2) {
        assert!(
            w[1].0 - w[0].0 >= Duration::from_millis(900),
            "too close together"
        );
        assert!(w[1].1 > w[0].1);
    }
    assert!(seen.iter().all(|(_, id)| id % 2 == 1));

    // After an upscale to 4 GiB the pressure is gone.
    a.send("UpscaleNotification", json!({"granted": mem(4 * GIB)}), 2);
    assert_eq!(
        a.recv_reply(),
        json!({"type": "UpscaleConfirmation", "id": 2})
    );
    // No request may follow (a wait for something that must NOT happen).
    assert!(a.recv(Duration::from_millis(1300)).is_none());
    h.shutdown();
}

#[test]
fn session_setup_must_finish_within_four_seconds() {
    use std::io::Read;
    let h = common::start(None, None);
    // A raw TCP client that never sends the HTTP upgrade…
    let mut raw = std::net::TcpStream::connect(h.local_addr()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    // …and an upgraded agent that never sends its version range.
    let mut silent = Agent::connect(h.local_addr());
    let t = Instant::now();
    let mut buf = [0u8; 64];
    assert_eq!(raw.read(&mut buf).unwrap_or(0), 0, "expected EOF");
    silent.expect_closed(Duration::from_secs(6));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(3500) && took < Duration::from_millis(5500),
        "{took:?}"
    );
    // A stalled client does not keep a good agent out.
    let mut a = Agent::connect_v1(h.local_addr());
    a.send("HealthCheck", json!({}), 2);
    assert_eq!(a.recv_reply()["id"], 2);
    h.shutdown();
}
