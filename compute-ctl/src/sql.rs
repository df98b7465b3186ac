//! Handlers that talk SQL to the compute's own Postgres (through its socket, with the
//! admin connection of [`stage_kit::local::admin_config`]): `/readyz`, `/dbs_and_roles`
//! (the snapshot is [`pg_catalog::listing`]'s), `/check_writability` and `/insights` (the SQL
//! is [`pg_catalog::health`]'s).
//!
//! Each session is a [`Session`] with its route's [`Limits`] (statement and lock timeouts, a
//! cancel request at the deadline); an error names the limit it hit. `/readyz` opens no
//! session per request: callers share one check at a time ([`compute_http::shared_check`]),
//! whose outcome answers for [`READY_CACHE`], and none waits longer than [`READY_WAIT`].

use std::time::Duration;

use compute_spec::ComputeDocument;
use serde_json::{json, Value};
use stage_kit::local::{limited_config, pg_error_text, Limits, Session};

use crate::api::wrong_status;
use crate::api::Api;
use crate::state::ComputeStatus;
use compute_http::shared_check::Outcome;
use compute_http::Reply;
use hyper::StatusCode;

const APPLICATION_NAME: &str = "compute_ctl:http";

/// `/readyz`'s check (`SELECT 1`): statement and lock timeouts, deadline.
pub const READYZ_LIMITS: Limits = Limits::seconds(1, 1, 2);
/// How long a readiness check's outcome answers `/readyz`.
pub const READY_CACHE: Duration = Duration::from_secs(1);
/// How long a `/readyz` call waits for the check under way before answering 503.
pub const READY_WAIT: Duration = Duration::from_secs(1);
/// `GET /dbs_and_roles`.
pub const DBS_AND_ROLES_LIMITS: Limits = Limits::seconds(10, 5, 15);
/// `POST /check_writability`.
pub const CHECK_WRITABILITY_LIMITS: Limits = Limits::seconds(10, 5, 15);
/// `GET /insights`.
pub const INSIGHTS_LIMITS: Limits = Limits::seconds(30, 5, 35);

/// A session on the running compute, or the reply to send instead.
fn client(api: &Api, limits: Limits) -> Result<Session, Reply> {
    let (status, document) = {
        let inner = api.shared.lock();
        (inner.status(), inner.document.clone())
    };
    if status != ComputeStatus::Running {
        return Err(wrong_status(status));
    }
    connect(document.as_ref(), limits)
        .map_err(|error| Reply::error(StatusCode::INTERNAL_SERVER_ERROR, error))
}

fn connect(document: Option<&ComputeDocument>, limits: Limits) -> Result<Session, String> {
    let document = document.ok_or("the compute has no document yet")?;
    let config = limited_config(
        document,
        crate::stages::STAGE,
        APPLICATION_NAME,
        None,
        limits,
    )
    .map_err(|error| error.message)?;
    Session::connect(&config, limits).map_err(|error| {
        // The client's own text ("error connecting to server") leaves out why.
        let cause = std::error::Error::source(&error)
            .filter(|_| error.as_db_error().is_none())
            .map(|cause| format!(": {cause}"))
            .unwrap_or_default();
        format!("connecting to postgres: {}{cause}", pg_error_text(&error))
    })
}

/// `GET /readyz`: 200 when running and Postgres answered the shared check
/// ([`compute_http::shared_check`]: one at a time, its outcome answering for [`READY_CACHE`],
/// no caller waiting longer than [`READY_WAIT`]), else 503.
pub async fn readyz(api: Api) -> Reply {
    let (status, document) = {
        let inner = api.shared.lock();
        (inner.status(), inner.document.clone())
    };
    if status != ComputeStatus::Running {
        return Reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: compute status is {status}"),
        );
    }
    let check = || {
        let document = document.clone();
        move || {
            let outcome = connect(document.as_ref(), READYZ_LIMITS).and_then(|mut session| {
                session.simple_query("SELECT 1").map(drop).map_err(|error| {
                    format!("postgres did not answer: {}", session.describe(&error))
                })
            });
            if let Err(error) = &outcome {
                tracing::warn!(%error, "the readiness check failed");
            }
            outcome
        }
    };
    let not_ready = |why: String| Reply::error(StatusCode::SERVICE_UNAVAILABLE, why);
    match api
        .ready
        .outcome("readyz", READY_CACHE, READY_WAIT, check)
        .await
    {
        Outcome::Done(Ok(())) => Reply::json(StatusCode::OK, &json!({"status": "ready"})),
        Outcome::Done(Err(error)) => not_ready(format!("not ready: {error}")),
        Outcome::TimedOut => not_ready(format!(
            "not ready: postgres has not answered the readiness check within {}",
            humantime::format_duration(READY_WAIT)
        )),
        Outcome::CannotStart(error) => not_ready(format!(
            "not ready: cannot start the readiness check: {error}"
        )),
    }
}

/// `GET /dbs_and_roles`: the roles and databases as upstream's catalog snapshot, in any
/// status (500 when Postgres cannot be reached or does not answer in time).
pub fn dbs_and_roles(api: &Api) -> Reply {
    let document = api.shared.lock().document.clone();
    let mut session = match connect(document.as_ref(), DBS_AND_ROLES_LIMITS) {
        Ok(session) => session,
        Err(error) => return Reply::error(StatusCode::INTERNAL_SERVER_ERROR, error),
    };
    match pg_catalog::read_dbs_and_roles(&mut session) {
        Ok(listing) => Reply::json(StatusCode::OK, &listing),
        Err(error) => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading roles and databases: {}", session.describe(&error)),
        ),
    }
}

/// `POST /check_writability`: upserts `public.health_check` row 1; 200 `true`. The table
/// is pg-reconcile's (its `create_availability_check` phase, at every catalog apply of a
/// primary); when it is missing the answer is 500, as upstream.
pub fn check_writability(api: &Api) -> Reply {
    let mut session = match client(api, CHECK_WRITABILITY_LIMITS) {
        Ok(session) => session,
        Err(reply) => return reply,
    };
    match pg_catalog::health::check_writability(&mut session) {
        Ok(()) => Reply::json(StatusCode::OK, &json!(true)),
        Err(error) => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("check_writability failed: {}", session.describe(&error)),
        ),
    }
}

/// `GET /insights`: [`pg_catalog::health::insights`]. Like upstream, the body is a JSON
/// **string** holding `{"pg_stat_statements": [...]}`.
pub fn insights(api: &Api) -> Reply {
    match client(api, INSIGHTS_LIMITS) {
        Ok(mut session) => {
            let text = pg_catalog::health::insights(&mut session);
            Reply::json(StatusCode::OK, &Value::String(text))
        }
        Err(reply) => reply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::api_for;
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use pg_test_support::TestPostgres;
    use std::time::Instant;

    fn checks(api: &Api) -> u64 {
        api.ready.started()
    }

    /// `count` concurrent `/readyz` calls: each one's status and time.
    async fn probes(api: &Api, count: usize) -> Vec<(u16, Duration)> {
        let calls: Vec<_> = (0..count)
            .map(|_| {
                let api = api.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let reply = readyz(api).await;
                    (reply.status.as_u16(), started.elapsed())
                })
            })
            .collect();
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await.unwrap());
        }
        answers
    }

    #[tokio::test]
    async fn readyz_callers_share_one_cached_check() {
        let server = TestPostgres::start();
        let api = api_for(&server, true);
        let answers = probes(&api, 64).await;
        assert!(
            answers.iter().all(|(status, _)| *status == 200),
            "{answers:?}"
        );
        assert_eq!(checks(&api), 1, "64 calls, one session");
        assert_eq!(readyz(api.clone()).await.status, 200);
        assert_eq!(checks(&api), 1, "the outcome is kept");
        tokio::time::sleep(READY_CACHE).await;
        assert_eq!(readyz(api.clone()).await.status, 200);
        assert_eq!(checks(&api), 2, "a stale outcome is checked again");
        let stopped = api_for(&server, false);
        assert_eq!(readyz(stopped.clone()).await.status, 503);
        assert_eq!(checks(&stopped), 0, "not running: no session at all");
    }

    /// Resumes a stopped postmaster, even when the test fails.
    struct Resume(i32);

    impl Drop for Resume {
        fn drop(&mut self) {
            let _ = kill(Pid::from_raw(self.0), Signal::SIGCONT);
        }
    }

    #[tokio::test]
    async fn readyz_answers_in_time_when_postgres_stalls() {
        let server = TestPostgres::start();
        let api = api_for(&server, true);
        assert_eq!(readyz(api.clone()).await.status, 200);
        tokio::time::sleep(READY_CACHE).await;
        // A postmaster that accepts nothing: connections wait in its backlog for ever.
        kill(Pid::from_raw(server.pid()), Signal::SIGSTOP).unwrap();
        let resume = Resume(server.pid());
        let answers = probes(&api, 64).await;
        let slowest = answers.iter().map(|(_, took)| *took).max().unwrap();
        eprintln!("measured: 64 /readyz on a stopped postmaster, slowest {slowest:?}");
        assert!(
            answers.iter().all(|(status, _)| *status == 503),
            "{answers:?}"
        );
        assert!(
            slowest < READY_WAIT + Duration::from_millis(500),
            "{slowest:?}"
        );
        let reply = readyz(api.clone()).await;
        let body = String::from_utf8_lossy(&reply.body).into_owned();
        assert!(
            body.contains("has not answered the readiness check"),
            "{body}"
        );
        assert_eq!(checks(&api), 2, "one check under way, never more");
        drop(resume);
        let started = Instant::now();
        while readyz(api.clone()).await.status != 200 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "never ready again"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[test]
    fn dbs_and_roles_bytes_are_upstreams_shape() {
        let server = TestPostgres::start();
        server.psql("CREATE ROLE reader LOGIN");
        server.psql("CREATE ROLE writer LOGIN PASSWORD 'md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'");
        server.psql("CREATE DATABASE shop OWNER reader");
        server.psql("CREATE DATABASE closed ALLOW_CONNECTIONS false");
        let reply = dbs_and_roles(&api_for(&server, false));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type.as_deref(), Some("application/json"));
        let text = String::from_utf8(reply.body).unwrap();
        // Key order, nulls and flags exactly as the `json!` objects built them before.
        assert!(text.starts_with(r#"{"roles":[{"name":"#), "{text}");
        for exact in [
            r#"{"name":"reader","encrypted_password":null,"options":null}"#,
            r#"{"name":"writer","encrypted_password":"md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","options":null}"#,
            r#"{"name":"shop","owner":"reader","options":null,"restrict_conn":false,"invalid":false}"#,
            r#""restrict_conn":true,"invalid":false}"#,
            r#"],"databases":[{"name":"#,
        ] {
            assert!(text.contains(exact), "{exact} not in {text}");
        }
    }
}
