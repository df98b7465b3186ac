//! Where the LFC state lives in endpoint storage: `endpoint_storage_addr`/`_token` (or their
//! `neon.*` settings), the tenant, timeline and endpoint, all from the compute's spec.

use compute_spec::ComputeDocument;

use crate::Error;

/// Where the LFC state lives in endpoint storage, and the token for it.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageTarget {
    /// `http://{addr}/{tenant_id}/{timeline_id}/{endpoint_id}/lfc_state`.
    pub url: String,
    /// The bearer token.
    pub token: String,
}

/// The URL only: the token is a secret.
impl std::fmt::Debug for StorageTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageTarget")
            .field("url", &self.url)
            .field("token", &"********")
            .finish()
    }
}

/// The endpoint-storage location of the LFC state of `from_endpoint` (else of the compute's
/// own endpoint), from the compute's spec; the error names every missing piece.
pub fn storage_target(
    document: &ComputeDocument,
    from_endpoint: Option<&str>,
) -> Result<StorageTarget, Error> {
    let Some(spec) = document.spec.as_ref() else {
        return Err(Error::NoSpec);
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
        _ => Err(Error::StorageSettings { missing }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_kit::{document, TENANT, TIMELINE};
    use serde_json::json;

    #[test]
    fn the_target_comes_from_the_spec_or_its_settings_and_hides_its_token() {
        let bare = document(json!({}));
        let Err(Error::StorageSettings { missing }) = storage_target(&bare, None) else {
            panic!("accepted");
        };
        assert_eq!(missing.len(), 5, "{missing:?}");
        // from_endpoint stands in for endpoint_id; the settings stand in for the fields.
        let settings = document(json!({
            "tenant_id": TENANT,
            "timeline_id": TIMELINE,
            "cluster": {"roles": [], "databases": [], "settings": [
                {"name": "neon.endpoint_storage_addr", "value": "s:1", "vartype": "string"},
                {"name": "neon.endpoint_storage_token", "value": "t0ken", "vartype": "string"}
            ]}
        }));
        let target = storage_target(&settings, Some("ep-other")).unwrap();
        assert_eq!(
            target.url,
            format!("http://s:1/{TENANT}/{TIMELINE}/ep-other/lfc_state")
        );
        assert_eq!(target.token, "t0ken");
        assert!(!format!("{target:?}").contains("t0ken"), "{target:?}");
        let mut none = bare.clone();
        none.spec = None;
        assert_eq!(storage_target(&none, None), Err(Error::NoSpec));
    }
}
