//! Where the LFC state lives in endpoint storage: `endpoint_storage_addr`/`_token` (or their
//! `neon.*` settings), the tenant, timeline and endpoint, all from the compute's spec.

use crate::state::Shared;

/// Where the LFC state lives in endpoint storage, and the token for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageTarget {
    /// `http://{addr}/{tenant_id}/{timeline_id}/{endpoint_id}/lfc_state`.
    pub url: String,
    /// The bearer token.
    pub token: String,
}

/// The endpoint-storage location of the LFC state, from the compute's spec; the error names
/// every missing piece.
pub fn storage_target(
    shared: &Shared,
    from_endpoint: Option<&str>,
) -> Result<StorageTarget, String> {
    let inner = shared.lock();
    let Some(spec) = inner
        .document
        .as_ref()
        .and_then(|document| document.spec.as_ref())
    else {
        return Err("the compute has no spec yet".to_string());
    };
    let address = spec
        .endpoint_storage_addr
        .clone()
        .or_else(|| {
            spec.setting("neon.endpoint_storage_addr")
                .map(str::to_string)
        })
        .filter(|value| !value.is_empty());
    let token = spec
        .endpoint_storage_token
        .as_ref()
        .map(|secret| secret.expose().to_string())
        .or_else(|| {
            spec.setting("neon.endpoint_storage_token")
                .map(str::to_string)
        })
        .filter(|value| !value.is_empty());
    let endpoint = from_endpoint
        .map(str::to_string)
        .or_else(|| spec.endpoint_id.clone())
        .filter(|value| !value.is_empty());
    let tenant = spec
        .tenant_id
        .as_ref()
        .map(ToString::to_string)
        .or_else(|| spec.setting("neon.tenant_id").map(str::to_string));
    let timeline = spec
        .timeline_id
        .as_ref()
        .map(ToString::to_string)
        .or_else(|| spec.setting("neon.timeline_id").map(str::to_string));
    let mut missing = Vec::new();
    if address.is_none() {
        missing.push("endpoint_storage_addr (or neon.endpoint_storage_addr in cluster.settings)");
    }
    if token.is_none() {
        missing.push("endpoint_storage_token (or neon.endpoint_storage_token in cluster.settings)");
    }
    if endpoint.is_none() {
        missing.push("endpoint_id (and no from_endpoint was given)");
    }
    if tenant.is_none() {
        missing.push("tenant_id");
    }
    if timeline.is_none() {
        missing.push("timeline_id");
    }
    match (address, token, endpoint, tenant, timeline) {
        (Some(address), Some(token), Some(endpoint), Some(tenant), Some(timeline)) => {
            Ok(StorageTarget {
                url: format!("http://{address}/{tenant}/{timeline}/{endpoint}/lfc_state"),
                token,
            })
        }
        _ => Err(format!(
            "the spec lacks what endpoint storage needs: {}",
            missing.join(", ")
        )),
    }
}
