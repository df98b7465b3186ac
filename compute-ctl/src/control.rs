//! `POST /configure` and `POST /terminate`: they change the shared state, wake the
//! controller, and block until it reports the outcome.

use std::time::Duration;

use compute_spec::spec::ComputeSpec;
use serde_json::{json, Value};

use crate::http::{Api, Reply};
use crate::routes::wrong_status;
use crate::state::{ComputeStatus, PendingConfig};

/// How long a blocked request sleeps between checks (it is woken on every change anyway).
const POLL: Duration = Duration::from_secs(1);

/// `POST /configure` with `{spec, compute_ctl_config?}`: accepted in `empty` and `running`;
/// blocks until `running` (200 and the status body) or `failed` (500 and the error).
pub fn configure(api: &Api, body: &[u8]) -> Reply {
    let pending = match parse_configure(body) {
        Ok(pending) => pending,
        Err(message) => return Reply::error(400, message),
    };
    let accepted = api.shared.update(|inner| {
        let status = inner.status();
        if !matches!(status, ComputeStatus::Empty | ComputeStatus::Running) {
            return Err(status);
        }
        inner.pending = Some(pending);
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
            ComputeStatus::Running => return Reply::json(200, &inner.status_body()),
            ComputeStatus::Failed => {
                let error = inner
                    .error
                    .clone()
                    .unwrap_or_else(|| "unknown error".into());
                return Reply::error(500, error);
            }
            status if settled(status) => {
                return Reply::error(
                    500,
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

/// Reads and validates a `/configure` body; the message says what is wrong.
fn parse_configure(body: &[u8]) -> Result<PendingConfig, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| format!("invalid request body: not JSON: {error}"))?;
    let Some(spec) = value.get("spec").filter(|spec| !spec.is_null()) else {
        return Err("invalid request body: missing field `spec`".to_string());
    };
    let parsed: ComputeSpec =
        serde_json::from_value(spec.clone()).map_err(|error| format!("invalid spec: {error}"))?;
    if let Err(errors) = parsed.validate() {
        return Err(format!("invalid spec: {errors}"));
    }
    let compute_ctl_config = value
        .get("compute_ctl_config")
        .cloned()
        .unwrap_or_else(|| json!({}));
    serde_json::from_value::<compute_spec::spec::ComputeCtlConfig>(compute_ctl_config.clone())
        .map_err(|error| format!("invalid compute_ctl_config: {error}"))?;
    Ok(PendingConfig {
        spec: spec.clone(),
        compute_ctl_config,
    })
}

/// `POST /terminate?mode=fast|immediate`: 200 `{"lsn"}` once terminated, 201 if it already
/// was; accepted in `empty` and `running` (and joins a termination already under way).
pub fn terminate(api: &Api, query: &str) -> Reply {
    let mode = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "mode")
        .map_or("fast", |(_, value)| value);
    let next = match mode {
        "fast" => ComputeStatus::TerminationPendingFast,
        "immediate" => ComputeStatus::TerminationPendingImmediate,
        other => {
            return Reply::error(
                400,
                format!("invalid termination mode {other:?}: use fast or immediate"),
            )
        }
    };
    let requested = api.shared.update(|inner| match inner.status() {
        ComputeStatus::Terminated => Ok(false),
        ComputeStatus::Empty | ComputeStatus::Running => inner
            .transition(next)
            .map(|_| true)
            .map_err(|error| error.from),
        status if status.is_terminating() => {
            if next == ComputeStatus::TerminationPendingImmediate {
                let _ = inner.transition(next);
            }
            Ok(true)
        }
        status => Err(status),
    });
    match requested {
        Err(status) => return wrong_status(status),
        Ok(false) => {
            let lsn = api.shared.lock().terminate_lsn.clone();
            return Reply::json(201, &json!({ "lsn": lsn }));
        }
        Ok(true) => api.wake(),
    }
    loop {
        let inner = api
            .shared
            .wait_until(POLL, |inner| inner.status() == ComputeStatus::Terminated);
        if inner.status() == ComputeStatus::Terminated {
            return Reply::json(200, &json!({ "lsn": inner.terminate_lsn }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configure_bodies() {
        assert!(parse_configure(b"{").unwrap_err().contains("not JSON"));
        assert!(parse_configure(b"{}")
            .unwrap_err()
            .contains("missing field `spec`"));
        let bad = br#"{"spec": {"format_version": 1.0}}"#;
        assert!(parse_configure(bad)
            .unwrap_err()
            .starts_with("invalid spec"));
        let good =
            br#"{"spec": {"format_version": 1.0, "cluster": {"roles": [], "databases": []}}}"#;
        assert!(parse_configure(good).is_ok());
    }

    #[test]
    fn terminate_when_already_terminated_is_201() {
        let (sender, _receiver) = std::sync::mpsc::channel();
        let api = Api {
            shared: std::sync::Arc::new(crate::state::Shared::new()),
            wake: sender,
            compute_id: None,
        };
        api.shared
            .transition(ComputeStatus::TerminationPendingFast)
            .unwrap();
        api.shared
            .update(|inner| {
                inner.terminate_lsn = Some("0/16B5A50".into());
                inner.transition(ComputeStatus::Terminated)
            })
            .unwrap();
        let reply = terminate(&api, "mode=fast");
        assert_eq!(reply.status, 201);
        assert_eq!(reply.body, br#"{"lsn":"0/16B5A50"}"#);
        assert_eq!(terminate(&api, "mode=other").status, 400);
        assert_eq!(configure(&api, b"{}").status, 400);
        let spec =
            br#"{"spec": {"format_version": 1.0, "cluster": {"roles": [], "databases": []}}}"#;
        let refused = configure(&api, spec);
        assert_eq!(refused.status, 412);
        assert_eq!(
            refused.body,
            br#"{"error":"invalid compute status: terminated"}"#
        );
    }
}
