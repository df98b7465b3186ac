//! Where the LFC state lives in endpoint storage: `endpoint_storage_addr`/`_token` (or their
//! `neon.*` settings), the tenant, timeline and endpoint, all from the compute's spec.

use compute_spec::ComputeDocument;

use crate::Error;

/// Where the LFC state lives in endpoint storage, and the token for it.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageTarget {
    /// `http://{addr}/{tenant_id}/{timeline_id}/{endpoint_id}/lfc_state`, each id one
    /// percent-encoded path segment.
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
/// own endpoint), from the compute's spec; the error names every missing piece. Each id is
/// one percent-encoded path segment ([`stage_kit::url::path_segment`]): `../x` cannot reach
/// another object, and `.` or `..` are refused.
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
    let endpoint = match from_endpoint {
        Some(name) => Some(("from_endpoint", name.to_string())),
        None => spec.endpoint_id.clone().map(|id| ("endpoint_id", id)),
    }
    .filter(|(_, value)| !value.is_empty());
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
        (Some(address), Some(token), Some((field, endpoint)), Some(tenant), Some(timeline)) => {
            let tenant = segment("tenant_id", &tenant)?;
            let timeline = segment("timeline_id", &timeline)?;
            let endpoint = segment(field, &endpoint)?;
            Ok(StorageTarget {
                url: format!("http://{address}/{tenant}/{timeline}/{endpoint}/lfc_state"),
                token,
            })
        }
        _ => Err(Error::StorageSettings { missing }),
    }
}

/// `value` of `field` as one URL path segment.
fn segment(field: &'static str, value: &str) -> Result<String, Error> {
    stage_kit::url::path_segment(value).map_err(|why| Error::StoragePath {
        field,
        value: value.to_string(),
        why,
    })
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

    #[test]
    fn ids_are_one_encoded_segment_each_and_dot_segments_are_refused() {
        let spec = document(json!({
            "tenant_id": TENANT,
            "timeline_id": TIMELINE,
            "endpoint_id": "ep-own",
            "endpoint_storage_addr": "s:1",
            "endpoint_storage_token": "t0ken",
        }));
        let url = |from: &str| storage_target(&spec, Some(from)).map(|target| target.url);
        let base = format!("http://s:1/{TENANT}/{TIMELINE}");
        assert_eq!(url("../x").unwrap(), format!("{base}/..%2Fx/lfc_state"));
        assert_eq!(
            url("a/../../b?c#d").unwrap(),
            format!("{base}/a%2F..%2F..%2Fb%3Fc%23d/lfc_state")
        );
        for dots in [".", ".."] {
            let error = url(dots).unwrap_err();
            assert!(
                matches!(
                    error,
                    Error::StoragePath {
                        field: "from_endpoint",
                        ..
                    }
                ),
                "{error}"
            );
            assert!(error.to_string().starts_with("from_endpoint"), "{error}");
        }
        // The spec's own ids (settings may stand in for the tenant and timeline) too.
        let settings = document(json!({
            "endpoint_id": "..",
            "cluster": {"roles": [], "databases": [], "settings": [
                {"name": "neon.endpoint_storage_addr", "value": "s:1", "vartype": "string"},
                {"name": "neon.endpoint_storage_token", "value": "t", "vartype": "string"},
                {"name": "neon.tenant_id", "value": "../..", "vartype": "string"},
                {"name": "neon.timeline_id", "value": ".", "vartype": "string"}
            ]}
        }));
        let error = storage_target(&settings, None).unwrap_err();
        assert!(
            matches!(
                error,
                Error::StoragePath {
                    field: "timeline_id",
                    ..
                }
            ),
            "{error}"
        );
        let error = storage_target(&settings, Some("ep")).unwrap_err();
        assert!(
            matches!(
                error,
                Error::StoragePath {
                    field: "timeline_id",
                    ..
                }
            ),
            "{error}"
        );
    }
}
