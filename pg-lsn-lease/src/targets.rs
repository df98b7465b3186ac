//! What a Static compute leases: its LSN on every shard of its timeline, at every pageserver
//! the spec lists for that shard, with the tenant-shard id each pageserver expects — over the
//! protocol the spec prefers, as upstream (`prefer_protocol`: libpq's `lease lsn`, or gRPC's
//! `LeaseLsn` with the shard in the request metadata).

use compute_spec::grpc_url::GrpcUrl;
use compute_spec::spec::{ComputeSpec, PageserverProtocol, ShardIndex};
use compute_spec::validate::StorageSource;
use pg_page_grpc::ShardTarget;

/// How one pageserver is asked.
#[derive(Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Over libpq: its connection string (may hold a password: never logged whole).
    Libpq(String),
    /// Over gRPC: its endpoint and the tenant, timeline and shard the metadata names.
    Grpc(ShardTarget),
}

/// One lease to ask for.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// The pageserver and the protocol.
    pub endpoint: Endpoint,
    /// `<tenant>` when unsharded, else `<tenant>-<NNCC>` (shard number and count, two
    /// lowercase hex digits each).
    pub tenant_shard_id: String,
    /// The timeline, 32 hex digits.
    pub timeline_id: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("tenant_shard_id", &self.tenant_shard_id)
            .field("timeline_id", &self.timeline_id)
            .finish_non_exhaustive()
    }
}

/// The leases `spec` asks for, shard by shard (shard order), each listed pageserver in turn;
/// the error names the spec field that makes it impossible.
pub fn targets(spec: &ComputeSpec) -> Result<Vec<Target>, String> {
    let storage = match spec.validate() {
        Ok(StorageSource::Neon(storage)) => storage,
        Ok(_) => return Err("the spec names no pageserver: nothing to lease".to_string()),
        Err(errors) => return Err(format!("the spec is not valid: {errors}")),
    };
    let tenant = storage.tenant_id.to_string();
    let timeline_id = storage.timeline_id.to_string();
    let Some(info) = &spec.pageserver_connection_info else {
        // The legacy list: one connection string per shard, unsharded when there is one.
        let count = storage.pageserver_connstrings.len();
        return storage
            .pageserver_connstrings
            .iter()
            .enumerate()
            .map(|(number, connstr)| {
                let tenant_shard_id = if count <= 1 {
                    tenant.clone()
                } else {
                    let too_many = |_| "pageserver_connstring: more than 255 shards".to_string();
                    let index = ShardIndex {
                        number: u8::try_from(number).map_err(too_many)?,
                        count: u8::try_from(count).map_err(too_many)?,
                    };
                    format!("{tenant}-{index}")
                };
                Ok(Target {
                    endpoint: Endpoint::Libpq(connstr.clone()),
                    tenant_shard_id,
                    timeline_id: timeline_id.clone(),
                })
            })
            .collect();
    };
    let mut shards: Vec<(ShardIndex, &_)> = Vec::new();
    for (key, shard) in &info.shards {
        let index = ShardIndex::parse(key).ok_or_else(|| {
            format!(
                "pageserver_connection_info.shards.{key}: a shard index is 4 hex digits, \
                 shard number then shard count"
            )
        })?;
        shards.push((index, shard));
    }
    shards.sort_by_key(|(index, _)| index.number);
    let mut targets = Vec::new();
    for (index, shard) in shards {
        let tenant_shard_id = if info.shard_count == 0 {
            tenant.clone()
        } else {
            format!("{tenant}-{index}")
        };
        for (position, pageserver) in shard.pageservers.iter().enumerate() {
            let field =
                format!("pageserver_connection_info.shards.{index}.pageservers[{position}]");
            let endpoint = match info.prefer_protocol {
                PageserverProtocol::Libpq => match pageserver.libpq_url.clone() {
                    Some(connstr) => Endpoint::Libpq(connstr),
                    None => {
                        return Err(format!(
                            "{field} has no libpq_url, and libpq is the preferred protocol"
                        ))
                    }
                },
                PageserverProtocol::Grpc => {
                    let url = pageserver.grpc_url.as_deref().unwrap_or_default();
                    let url = GrpcUrl::parse(url)
                        .map_err(|problem| format!("{field}.grpc_url {problem}"))?;
                    Endpoint::Grpc(ShardTarget {
                        url,
                        tenant_id: storage.tenant_id,
                        timeline_id: storage.timeline_id,
                        shard: index,
                    })
                }
            };
            targets.push(Target {
                endpoint,
                tenant_shard_id: tenant_shard_id.clone(),
                timeline_id: timeline_id.clone(),
            });
        }
    }
    if targets.is_empty() {
        return Err("pageserver_connection_info.shards lists no pageserver".to_string());
    }
    Ok(targets)
}

/// What identifies the pageservers and the token of a spec: a change ends a lease wait
/// early (the next attempt re-reads them).
pub fn fingerprint(spec: Option<&ComputeSpec>) -> String {
    let Some(spec) = spec else {
        return String::new();
    };
    serde_json::json!([
        spec.pageserver_connection_info,
        spec.pageserver_connstring,
        spec.setting("neon.pageserver_connstring"),
        spec.storage_auth_token.as_ref().map(|token| token.expose()),
    ])
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const TENANT: &str = "0123456789abcdef0123456789abcdef";
    const TIMELINE: &str = "fedcba9876543210fedcba9876543210";

    fn spec(extra: Value) -> ComputeSpec {
        let mut value = crate::test_kit::spec(json!({
            "tenant_id": TENANT, "timeline_id": TIMELINE, "mode": {"Static": "0/16B3748"},
        }));
        if let (Some(value), Value::Object(extra)) = (value.as_object_mut(), extra) {
            value.extend(extra);
        }
        serde_json::from_value(value).unwrap()
    }

    fn ids(targets: &[Target]) -> Vec<(&str, String)> {
        targets
            .iter()
            .map(|target| {
                let endpoint = match &target.endpoint {
                    Endpoint::Libpq(connstr) => connstr.clone(),
                    Endpoint::Grpc(shard) => format!("grpc {} {}", shard.url, shard.shard),
                };
                (target.tenant_shard_id.as_str(), endpoint)
            })
            .collect()
    }

    #[test]
    fn every_shard_and_every_pageserver_is_leased() {
        let sharded = spec(
            json!({"shard_stripe_size": 2048, "pageserver_connection_info": {
                "shard_count": 2,
                "shards": {
                    "0102": {"pageservers": [{"libpq_url": "host=b port=1"}, {"libpq_url": "host=c port=1"}]},
                    "0002": {"pageservers": [{"libpq_url": "host=a port=1"}]},
                },
            }}),
        );
        let found = targets(&sharded).unwrap();
        let shard = |n: &str| format!("{TENANT}-{n}");
        let (s0, s1) = (shard("0002"), shard("0102"));
        assert_eq!(
            ids(&found),
            vec![
                (s0.as_str(), "host=a port=1".to_string()),
                (s1.as_str(), "host=b port=1".to_string()),
                (s1.as_str(), "host=c port=1".to_string()),
            ]
        );
        assert!(found.iter().all(|target| target.timeline_id == TIMELINE));
        let unsharded = spec(json!({"pageserver_connection_info": {
            "shard_count": 0, "shards": {"0000": {"pageservers": [{"libpq_url": "host=a"}]}},
        }}));
        assert_eq!(
            ids(&targets(&unsharded).unwrap()),
            vec![(TENANT, "host=a".to_string())]
        );
        let legacy =
            spec(json!({"pageserver_connstring": "host=a,host=b", "shard_stripe_size": 2048}));
        let (s0, s1) = (shard("0002"), shard("0102"));
        assert_eq!(
            ids(&targets(&legacy).unwrap()),
            vec![
                (s0.as_str(), "host=a".to_string()),
                (s1.as_str(), "host=b".to_string())
            ]
        );
        let one = spec(json!({"pageserver_connstring": "host=a"}));
        assert_eq!(
            ids(&targets(&one).unwrap()),
            vec![(TENANT, "host=a".to_string())]
        );
    }

    #[test]
    fn a_grpc_spec_leases_every_shard_and_pageserver_over_grpc() {
        let grpc = spec(
            json!({"shard_stripe_size": 2048, "pageserver_connection_info": {
                "shard_count": 2, "prefer_protocol": "grpc",
                "shards": {
                    "0102": {"pageservers": [{"grpc_url": "grpc://no_user@b:1", "libpq_url": "host=b"},
                                             {"grpc_url": "grpc://c:1"}]},
                    "0002": {"pageservers": [{"grpc_url": "grpc://a:1"}]},
                },
            }}),
        );
        let found = targets(&grpc).unwrap();
        let shard = |n: &str| format!("{TENANT}-{n}");
        let (s0, s1) = (shard("0002"), shard("0102"));
        assert_eq!(
            ids(&found),
            vec![
                (s0.as_str(), "grpc a:1 0002".to_string()),
                (s1.as_str(), "grpc b:1 0102".to_string()),
                (s1.as_str(), "grpc c:1 0102".to_string()),
            ]
        );
        let Endpoint::Grpc(first) = &found[0].endpoint else {
            panic!("not gRPC");
        };
        assert_eq!(first.tenant_id.to_string(), TENANT);
        assert_eq!(first.timeline_id.to_string(), TIMELINE);
    }

    #[test]
    fn what_cannot_be_leased_is_named() {
        let grpc = spec(json!({"pageserver_connection_info": {
            "shard_count": 0, "prefer_protocol": "grpc",
            "shards": {"0000": {"pageservers": [{"libpq_url": "host=a"}]}},
        }}));
        // Refused by validation already, naming the field.
        let error = targets(&grpc).unwrap_err();
        assert!(
            error.contains(
                "pageserver_connection_info.shards.0000.pageservers[0].grpc_url: is missing"
            ),
            "{error}"
        );
        let bad_key = spec(
            json!({"shard_stripe_size": 2048, "pageserver_connection_info": {
                "shard_count": 2, "shards": {"zz02": {"pageservers": [{"libpq_url": "host=a"}]}},
            }}),
        );
        // Refused by validation already, naming the key.
        let error = targets(&bad_key).unwrap_err();
        assert!(
            error.contains("pageserver_connection_info.shards.zz02: a shard index is 4 hex digits"),
            "{error}"
        );
        let vanilla: ComputeSpec = serde_json::from_value(crate::test_kit::spec(
            json!({"upstream_connstring": "host=x"}),
        ))
        .unwrap();
        assert!(targets(&vanilla)
            .unwrap_err()
            .contains("names no pageserver"));
    }

    #[test]
    fn the_fingerprint_follows_pageservers_and_token() {
        let a = spec(json!({"pageserver_connstring": "host=a"}));
        let b = spec(json!({"pageserver_connstring": "host=b"}));
        let token = spec(json!({"pageserver_connstring": "host=a", "storage_auth_token": "t"}));
        assert_eq!(fingerprint(Some(&a)), fingerprint(Some(&a.clone())));
        assert_ne!(fingerprint(Some(&a)), fingerprint(Some(&b)));
        assert_ne!(fingerprint(Some(&a)), fingerprint(Some(&token)));
    }
}
