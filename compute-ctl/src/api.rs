//! What every handler reaches ([`Api`]: the shared state, the controller's wake-up, the
//! features' process-wide state) and what handlers share: upstream's 412 ([`wrong_status`])
//! and the validation of a spec that arrives by HTTP ([`validate`]).

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use compute_http::auth::Auth;
use compute_http::{Deadlines, Reply};
use compute_spec::reserved::Reserved;
use compute_spec::spec::ComputeSpec;
use compute_spec::validate::{SpecErrors, StorageSource};
use hyper::StatusCode;

use crate::state::{ComputeStatus, Shared};
use crate::supervise::Event;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct Api {
    /// The compute's state.
    pub shared: Arc<Shared>,
    /// Wakes the controller.
    pub wake: Sender<Event>,
    /// `-i`, for the JWT `compute_id` check.
    pub compute_id: Option<String>,
    /// The authentication fixed at start.
    pub auth: Arc<Auth>,
    /// The deadlines on each connection.
    pub deadlines: Deadlines,
    /// LFC prewarm/offload state and counters (shared with the controller).
    pub lfc: Arc<pg_prewarm::Lfc>,
    /// Installed-extension statistics (`compute_installed_extensions` on `/metrics`).
    pub ext_stats: Arc<Mutex<pg_catalog::ext_stats::ExtStats>>,
    /// The process-lifetime `/promote` result.
    pub promotion: Arc<pg_promote::Promotion>,
    /// `-r` and the remote extension downloads.
    pub remote_ext: Arc<pg_extensions_fetch::on_demand::OnDemand>,
    /// The readiness check `/readyz` callers share (`sql::readyz`).
    pub ready: Arc<compute_http::shared_check::SharedCheck>,
}

impl Api {
    /// Wakes the controller after a change to the shared state.
    pub fn wake(&self) {
        let _ = self.wake.send(Event::Wake);
    }
}

/// The checks in front of the handlers: the key set fixed at start, `-i`, the body deadline.
impl compute_http::routes::Context for Api {
    fn auth(&self) -> &Auth {
        &self.auth
    }

    fn compute_id(&self) -> Option<&str> {
        self.compute_id.as_deref()
    }

    fn body_deadline(&self) -> Duration {
        self.deadlines.body
    }
}

/// 412 with upstream's message.
pub fn wrong_status(status: ComputeStatus) -> Reply {
    Reply::error(
        StatusCode::PRECONDITION_FAILED,
        format!("invalid compute status: {}", status.label()),
    )
}

/// Validates a spec that arrives by HTTP against this compute's reserved names
/// (`compute_spec::reserved`): the admin role of the document's `connstr` and its privileged
/// role. Before the first document exists only PostgreSQL's own names are known here; the
/// `compute-spec` stage then checks the rest.
pub fn validate(api: &Api, spec: &ComputeSpec) -> Result<StorageSource, SpecErrors> {
    let names = api.shared.lock().document.as_ref().map(|document| {
        let admin = stage_kit::local::admin_user(document);
        (admin, document.privileged_role_name.clone())
    });
    match &names {
        Some((admin, privileged)) => spec.validate_for(&Reserved { admin, privileged }),
        None => spec.validate(),
    }
}
