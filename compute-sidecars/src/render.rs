//! Every sidecar file a compute document asks for, rendered and checked as compute-ctl would
//! write it at a start, without writing anything: the `compute-sidecars render` binary's
//! output, for checking a spec by hand.

use std::ffi::OsString;

use compute_spec::ComputeDocument;
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use crate::audit::{AuditError, AuditParams, StartPlan};
use crate::pgbouncer::IniError;

/// What a start would write.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rendered {
    /// The settings set in pgbouncer's `[pgbouncer]` section (the spec's
    /// `pgbouncer_settings` and the TLS ones); `None`: the spec has none.
    pub pgbouncer_settings: Option<IndexMap<String, String>>,
    /// local_proxy's configuration file; `None`: the spec has no `local_proxy_config`.
    pub local_proxy_config: Option<Value>,
    /// The rsyslog files: the compliance audit and the log export configuration.
    pub rsyslog: StartPlan,
}

/// Why a document's sidecar files cannot be written.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RenderError {
    /// A `pgbouncer_settings` entry cannot be written into the INI file.
    #[error(transparent)]
    Pgbouncer(#[from] IniError),
    /// A value cannot be written into an rsyslog file.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Renders `document`'s sidecar files (`env` reads the audit endpoint variables, as at a
/// start); each value is checked as when the files are written.
pub fn render(
    document: &ComputeDocument,
    audit: &AuditParams,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Rendered, RenderError> {
    let pgbouncer_settings = crate::pgbouncer::settings_for(document);
    if let Some(settings) = &pgbouncer_settings {
        crate::pgbouncer::check_settings(settings)?;
    }
    Ok(Rendered {
        pgbouncer_settings,
        local_proxy_config: crate::local_proxy::config_json(document),
        rsyslog: crate::audit::plan_start(audit, document, env)?,
    })
}
