//! One attempt: the LSN leased on every shard × every listed pageserver of a spec, in turn.
//! A refusal anywhere wins over other failures (renewing cannot help then), so every
//! pageserver is asked even after one fails; the result is each lease and the earliest
//! expiry.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use compute_spec::ids::Lsn;
use compute_spec::spec::ComputeSpec;
use serde::{Serialize, Serializer};

use crate::request::{self, Answer};
use crate::{targets, Error, LeaseSettings};

/// Every lease of a successful attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Leases {
    /// The LSN leased.
    pub lsn: Lsn,
    /// The earliest expiry of all of them: the compute's LSN is safe until then.
    #[serde(serialize_with = "rfc3339")]
    pub valid_until: SystemTime,
    /// One per shard × pageserver, in shard order.
    pub shards: Vec<ShardLease>,
}

/// The lease of one shard at one pageserver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShardLease {
    /// `<tenant>` when unsharded, else `<tenant>-<NNCC>`.
    pub tenant_shard_id: String,
    /// The pageserver's endpoint (`host:port`), never its connection string.
    pub pageserver: String,
    /// When the pageserver lets the lease end.
    #[serde(serialize_with = "rfc3339")]
    pub valid_until: SystemTime,
}

/// A time as RFC 3339 UTC with milliseconds (`2025-01-31T12:00:00.000Z`).
fn rfc3339<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::Error as _;
    // humantime's formatter panics before the epoch and fails after the year 9999.
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) if since.as_secs() < 253_402_300_800 => {
            serializer.collect_str(&humantime::format_rfc3339_millis(*time))
        }
        _ => Err(S::Error::custom(
            "a lease time before 1970 or after the year 9999",
        )),
    }
}

/// Leases `lsn` on every shard × pageserver `spec` lists, with its `storage_auth_token` as
/// the password and `settings`' time limits. Stops asking when `stop` is set.
pub fn lease_every_shard(
    spec: &ComputeSpec,
    lsn: Lsn,
    settings: &LeaseSettings,
    stop: &AtomicBool,
) -> Result<Leases, Error> {
    let targets = targets::targets(spec).map_err(Error::Spec)?;
    let token = spec.storage_auth_token.as_ref().map(|token| token.expose());
    let mut shards = Vec::with_capacity(targets.len());
    let mut refused = None;
    let mut failed = None;
    for target in &targets {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let answer = request::lease(
            target,
            token,
            lsn,
            settings.connect_timeout,
            settings.request_timeout,
        );
        match answer {
            Ok(granted) => match granted.answer {
                Answer::ValidUntil(valid_until) => shards.push(ShardLease {
                    tenant_shard_id: target.tenant_shard_id.clone(),
                    pageserver: granted.server,
                    valid_until,
                }),
                Answer::Refused => {
                    refused.get_or_insert(Error::Refused {
                        server: granted.server,
                        lsn,
                        tenant_shard_id: target.tenant_shard_id.clone(),
                    });
                }
            },
            Err(failure) => {
                failed.get_or_insert(Error::Pageserver {
                    tenant_shard_id: target.tenant_shard_id.clone(),
                    failure,
                });
            }
        }
    }
    if let Some(refused) = refused {
        return Err(refused);
    }
    if let Some(failed) = failed {
        return Err(failed);
    }
    if shards.len() < targets.len() {
        return Err(Error::Stopped);
    }
    let valid_until = shards
        .iter()
        .map(|shard| shard.valid_until)
        .min()
        .ok_or(Error::Stopped)?;
    Ok(Leases {
        lsn,
        valid_until,
        shards,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn leases_print_with_rfc3339_times() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let leases = Leases {
            lsn: "0/16B3748".parse().unwrap(),
            valid_until: at,
            shards: vec![ShardLease {
                tenant_shard_id: "t-0002".into(),
                pageserver: "ps:6400".into(),
                valid_until: at,
            }],
        };
        assert_eq!(
            serde_json::to_value(&leases).unwrap(),
            serde_json::json!({
                "lsn": "0/16B3748", "valid_until": "2023-11-14T22:13:20.123Z",
                "shards": [{"tenant_shard_id": "t-0002", "pageserver": "ps:6400",
                            "valid_until": "2023-11-14T22:13:20.123Z"}],
            })
        );
        let far = Leases {
            valid_until: SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_800),
            ..leases
        };
        assert!(serde_json::to_string(&far).is_err());
    }
}
