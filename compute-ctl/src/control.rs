//! `POST /configure` and `POST /terminate`: they change the shared state, wake the
//! controller, and block until it reports the outcome.

use std::time::Duration;

use compute_spec::spec::{ComputeCtlConfig, ComputeSpec};
use serde::Deserialize;
use serde_json::json;

use crate::api::wrong_status;
use crate::api::Api;
use crate::state::{ComputeStatus, PendingConfig};
use compute_http::{parse_json, Rejection, Reply};
use hyper::StatusCode;

/// How long a blocked request sleeps between checks (it is woken on every change anyway).
const POLL: Duration = Duration::from_secs(1);

/// The `/configure` body: both members required, as upstream. `compute_ctl_config` is read
/// and then ignored: the key set and TLS paths are fixed at start.
#[derive(Debug, Deserialize)]
struct ConfigureRequest {
    spec: ComputeSpec,
    #[allow(dead_code)]
    compute_ctl_config: ComputeCtlConfig,
}

/// `POST /configure` with `{spec, compute_ctl_config}`: 400/422 for a bad body, 400 for a spec
/// that fails validation ([`crate::api::validate`], checked before the status), 412 unless `empty` or `running`; then
/// blocks until `running` (200 and the status body) or `failed` (500 and the error).
pub fn configure(api: &Api, body: &[u8]) -> Reply {
    let request: ConfigureRequest = match parse_json(body) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    if let Err(errors) = crate::api::validate(api, &request.spec) {
        return Reply::error(StatusCode::BAD_REQUEST, errors.to_string());
    }
    let pending = PendingConfig { spec: request.spec };
    let accepted = api.shared.update(|inner| {
        let status = inner.status();
        if !matches!(status, ComputeStatus::Empty | ComputeStatus::Running) {
            return Err(status);
        }
        inner.pending = Some(pending);
        compute_trace::process::hand_off();
        inner.error = None;
        inner
            .transition(ComputeStatus::ConfigurationPending)
            .map_err(|error| error.from)
    });
    if let Err(status) = accepted {
        return wrong_status(status);
    }
    api.wake();
    loop {
        let inner = api.shared.wait_until(POLL, |inner| settled(inner.status()));
        match inner.status() {
            ComputeStatus::Running => return Reply::json(StatusCode::OK, &inner.status_body()),
            ComputeStatus::Failed => {
                let error = inner.error.as_deref().unwrap_or("unknown error");
                return Reply::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("compute configuration failed: {error:?}"),
                );
            }
            status if settled(status) => {
                return Reply::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the compute stopped while configuring: {status}"),
                );
            }
            _ => {}
        }
    }
}

fn settled(status: ComputeStatus) -> bool {
    !matches!(
        status,
        ComputeStatus::ConfigurationPending | ComputeStatus::Configuration | ComputeStatus::Init
    )
}

/// The termination mode of a `/terminate` query: none or no `mode` means fast; any other
/// parameter is ignored; a bad `mode` is a 400 in plain text, as upstream's extractor.
fn termination_mode(query: Option<&str>) -> Result<ComputeStatus, Reply> {
    /// The query of `POST /terminate`.
    #[derive(serde::Deserialize)]
    struct TerminateQuery {
        #[serde(default)]
        mode: Mode,
    }
    #[derive(Default, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        #[default]
        Fast,
        Immediate,
    }
    let TerminateQuery { mode } = compute_http::extract::query(query, Rejection::PlainText)?;
    Ok(match mode {
        Mode::Fast => ComputeStatus::TerminationPendingFast,
        Mode::Immediate => ComputeStatus::TerminationPendingImmediate,
    })
}

/// `POST /terminate[?mode=fast|immediate]`: 200 `{"lsn"}` once terminated, 201 if it already
/// was; accepted in `empty`, `running` and — unlike upstream, which leaves only a signal —
/// `failed`. During a termination it joins it and gets the same answer (upstream: 412), so a
/// control plane that retries a timed-out call learns the outcome. When the safekeeper sync
/// after Postgres stopped failed, 500 naming the failure, to every caller: the WAL may not be
/// on the safekeepers (upstream drops the connection as it exits 1).
pub fn terminate(api: &Api, query: Option<&str>) -> Reply {
    let next = match termination_mode(query) {
        Ok(next) => next,
        Err(reply) => return reply,
    };
    let requested = api.shared.update(|inner| {
        if let Some(error) = &inner.final_sync_error {
            return Err(failed_sync(error));
        }
        match inner.status() {
            ComputeStatus::Terminated => Err(Reply::json(
                StatusCode::CREATED,
                &json!({ "lsn": inner.terminate_lsn }),
            )),
            ComputeStatus::Empty | ComputeStatus::Running | ComputeStatus::Failed => {
                inner.terminate_requested = Some(next);
                compute_trace::process::hand_off();
                inner
                    .transition(next)
                    .map_err(|error| wrong_status(error.from))
            }
            status if status.is_terminating() => {
                if next == ComputeStatus::TerminationPendingImmediate {
                    let _ = inner.transition(next);
                }
                inner.terminate_requested.get_or_insert(next);
                Ok(())
            }
            status => Err(wrong_status(status)),
        }
    });
    if let Err(reply) = requested {
        return reply;
    }
    api.wake();
    loop {
        let inner = api.shared.wait_until(POLL, |inner| {
            inner.status() == ComputeStatus::Terminated || inner.final_sync_error.is_some()
        });
        if let Some(error) = &inner.final_sync_error {
            return failed_sync(error);
        }
        if inner.status() == ComputeStatus::Terminated {
            return Reply::json(StatusCode::OK, &json!({ "lsn": inner.terminate_lsn }));
        }
    }
}

/// The answer to `/terminate` when the final safekeeper sync failed.
fn failed_sync(error: &str) -> Reply {
    Reply::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            "the safekeeper sync after Postgres stopped failed, so the WAL may not be on the \
             safekeepers: {error}"
        ),
    )
}

/// `POST /refresh_configuration` (internal): counts the call, then from `running`, `failed`
/// or `refresh_configuration_pending` asks the controller to fetch the configuration again
/// (200); from `init` nothing (200); from anything else 500, as upstream.
pub fn refresh_configuration(api: &Api) -> Reply {
    let outcome = api.shared.update(|inner| {
        inner.counters.pagestream_request_errors_total += 1;
        match inner.status() {
            ComputeStatus::Running
            | ComputeStatus::Failed
            | ComputeStatus::RefreshConfigurationPending => inner
                .transition_direct(ComputeStatus::RefreshConfigurationPending)
                .map(|_| true)
                .map_err(|error| error.from),
            ComputeStatus::Init => Ok(false),
            status => Err(status),
        }
    });
    match outcome {
        Ok(true) => {
            api.wake();
            Reply::empty(StatusCode::OK)
        }
        Ok(false) => Reply::empty(StatusCode::OK),
        Err(status) => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Cannot refresh compute configuration in state {status:?}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> Api {
        let (sender, _receiver) = std::sync::mpsc::channel();
        Api {
            shared: std::sync::Arc::new(crate::state::Shared::new()),
            wake: sender,
            compute_id: None,
            auth: std::sync::Arc::new(compute_http::auth::Auth::Open),
            deadlines: compute_http::Deadlines::default(),
            lfc: Default::default(),
            ext_stats: Default::default(),
            promotion: Default::default(),
            remote_ext: Default::default(),
            ready: Default::default(),
        }
    }

    fn error_of(reply: &Reply) -> String {
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        body["error"].as_str().unwrap().to_string()
    }

    #[test]
    fn configure_bodies() {
        let api = api();
        let syntax = configure(&api, b"{");
        assert_eq!(syntax.status, 400);
        assert!(error_of(&syntax).starts_with("failed to parse the request body as json"));
        let missing = configure(&api, b"{}");
        assert_eq!(missing.status, 422);
        assert!(
            error_of(&missing).contains("missing field `spec`"),
            "{}",
            error_of(&missing)
        );
        let no_config =
            br#"{"spec": {"format_version": 1.0, "cluster": {"roles": [], "databases": []}}}"#;
        let missing = configure(&api, no_config);
        assert_eq!(missing.status, 422);
        assert!(
            error_of(&missing).contains("compute_ctl_config"),
            "{}",
            error_of(&missing)
        );
        let shape = br#"{"spec": {"format_version": 1.0, "cluster": {"roles": 1, "databases": []}}, "compute_ctl_config": {}}"#;
        let wrong = configure(&api, shape);
        assert_eq!(wrong.status, 422);
        assert!(
            error_of(&wrong).contains("spec.cluster.roles"),
            "{}",
            error_of(&wrong)
        );
    }

    /// Every problem of a spec in one 400, each as `<JSON path>: <message>`, joined by `; `
    /// (upstream answers with the first problem's bare message).
    #[test]
    fn a_spec_with_several_problems_is_one_400_naming_each() {
        let api = api();
        let body = br#"{"spec": {"format_version": 1.0,
            "tenant_id": "00000000000000000000000000000001",
            "timeline_id": "00000000000000000000000000000002",
            "pageserver_connstring": "host=ps1 port=6400",
            "safekeeper_connstrings": ["sk1:5454", "sk1:5454"],
            "cluster": {"roles": [], "databases": []},
            "delta_operations": [{"action": "delete_db", "name": "template1"}]},
            "compute_ctl_config": {}}"#;
        let refused = configure(&api, body);
        assert_eq!(refused.status, 400);
        let error = error_of(&refused);
        let (first, second) = ("delta_operations[0].name: ", "safekeeper_connstrings: ");
        assert!(
            error.starts_with(first) && error.contains(&format!("; {second}"))
                || error.starts_with(second) && error.contains(&format!("; {first}")),
            "{error}"
        );
        assert_eq!(api.shared.status(), ComputeStatus::Empty);
    }

    #[test]
    fn terminate_modes() {
        assert_eq!(
            termination_mode(None).ok(),
            Some(ComputeStatus::TerminationPendingFast)
        );
        assert_eq!(
            termination_mode(Some("")).ok(),
            Some(ComputeStatus::TerminationPendingFast)
        );
        assert_eq!(
            termination_mode(Some("x=1&mode=immediate")).ok(),
            Some(ComputeStatus::TerminationPendingImmediate)
        );
        let bad = termination_mode(Some("mode=slow")).unwrap_err();
        assert_eq!(bad.status, 400);
        assert_eq!(
            bad.content_type.as_deref(),
            Some("text/plain; charset=utf-8")
        );
        // axum's `Query` reads the fields in order: a bad first value is refused before
        // the duplicate is seen.
        for (query, refusal) in [
            ("mode=fast&mode=slow", "duplicate field `mode`"),
            ("mode=slow&mode=fast", "mode: unknown variant `slow`"),
        ] {
            let refused = termination_mode(Some(query)).unwrap_err();
            assert_eq!(refused.status, 400);
            let text = String::from_utf8_lossy(&refused.body);
            assert!(
                text.starts_with("Failed to deserialize query string: ") && text.contains(refusal),
                "{text}"
            );
        }
    }

    /// A `/terminate` during a termination joins it (upstream: 412) and gets its outcome: the
    /// LSN, or — when the final sync failed — the 500, as does any later call.
    #[test]
    fn terminate_joins_a_termination_and_a_failed_sync_is_500() {
        for failed in [false, true] {
            let api = std::sync::Arc::new(api());
            api.shared
                .transition(ComputeStatus::TerminationPendingFast)
                .unwrap();
            let joiner = {
                let api = api.clone();
                std::thread::spawn(move || terminate(&api, None))
            };
            // The joiner waits for the controller's outcome.
            std::thread::sleep(Duration::from_millis(50));
            assert!(!joiner.is_finished());
            api.shared.update(|inner| {
                if failed {
                    inner.final_sync_error = Some("safekeepers unreachable".into());
                } else {
                    inner.terminate_lsn = Some("0/2A00028".into());
                    inner.transition(ComputeStatus::Terminated).unwrap();
                }
            });
            let joined = joiner.join().unwrap();
            if failed {
                assert_eq!(joined.status, 500);
                let error = error_of(&joined);
                assert!(
                    error.starts_with("the safekeeper sync after Postgres stopped failed, so the WAL may not be on the safekeepers: ")
                        && error.ends_with("safekeepers unreachable"),
                    "{error}"
                );
                let later = terminate(&api, Some("mode=immediate"));
                assert_eq!(later.status, 500);
                assert_eq!(error_of(&later), error);
                assert_eq!(api.shared.status(), ComputeStatus::TerminationPendingFast);
            } else {
                assert_eq!(joined.status, 200);
                assert_eq!(joined.body, br#"{"lsn":"0/2A00028"}"#);
            }
        }
    }

    #[test]
    fn terminate_when_already_terminated_is_201() {
        let api = api();
        api.shared
            .transition(ComputeStatus::TerminationPendingFast)
            .unwrap();
        api.shared
            .update(|inner| {
                inner.terminate_lsn = Some("0/16B5A50".into());
                inner.transition(ComputeStatus::Terminated)
            })
            .unwrap();
        let reply = terminate(&api, Some("mode=fast"));
        assert_eq!(reply.status, 201);
        assert_eq!(reply.body, br#"{"lsn":"0/16B5A50"}"#);
        assert_eq!(terminate(&api, Some("mode=other")).status, 400);
        let spec = br#"{"spec": {"format_version": 1.0, "cluster": {"roles": [], "databases": []}}, "compute_ctl_config": {}}"#;
        let refused = configure(&api, spec);
        assert_eq!(refused.status, 412);
        assert_eq!(
            refused.body,
            br#"{"error":"invalid compute status: terminated"}"#
        );
        let refresh = refresh_configuration(&api);
        assert_eq!(refresh.status, 500);
        assert_eq!(
            error_of(&refresh),
            "Cannot refresh compute configuration in state Terminated"
        );
        assert_eq!(
            api.shared.lock().counters.pagestream_request_errors_total,
            1
        );
    }
}
