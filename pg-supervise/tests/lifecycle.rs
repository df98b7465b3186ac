//! Start, readiness, and shutdown of a real Postgres under the `pg-supervise` binary.

mod common;

use std::time::Duration;

use common::{wait_gone, Fixture, SECOND};
use nix::sys::signal::Signal;

#[test]
fn sigterm_after_ready_is_a_clean_fast_shutdown() {
    let fixture = Fixture::new("");
    let mut supervisor = fixture.supervise(&[]);
    let ready = supervisor.wait_event("ready", 30 * SECOND);
    let pid = ready["pid"].as_i64().unwrap() as i32;
    assert!(ready["start_postgres_ms"].as_u64().unwrap() < 30_000);

    let mut client = fixture.client();
    let one: i32 = client.query_one("select 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
    drop(client);

    supervisor.signal(Signal::SIGTERM);
    let exited = supervisor.next_line(30 * SECOND);
    assert_eq!(
        exited,
        serde_json::json!({"event": "exited", "code": 0, "signal": null})
    );
    let status = supervisor.wait(10 * SECOND);
    assert_eq!(status.code(), Some(0));
    assert!(
        wait_gone(pid, Duration::from_millis(100)).is_some(),
        "postmaster {pid} left"
    );
    assert!(
        !fixture.document.pgdata.join("postmaster.pid").exists(),
        "a fast shutdown removes postmaster.pid"
    );
}
