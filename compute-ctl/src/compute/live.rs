//! Which spec fields a running compute takes live, and which only at the next start.
//!
//! Live (pg-reconcile `--reconfigure`): `cluster.postgresql_conf`, `cluster.settings`, the
//! pageserver connection (`pageserver_connection_info`, `pageserver_connstring`,
//! `shard_stripe_size`), the safekeepers, roles, databases and deltas,
//! `drop_subscriptions_before_start`, `reconfigure_concurrency`, `skip_pg_catalog_updates`,
//! `suspend_timeout_seconds` (the stored spec is replaced) and every other field that only
//! feeds `postgresql.conf`. Start-only (as upstream §3.1): the ones
//! [`START_ONLY`] lists; a change to one of them is reported, not silently dropped.

use compute_spec::spec::ComputeSpec;
use serde_json::Value;

/// Spec fields whose change takes effect only at the next start, with why.
pub const START_ONLY: [(&str, &str); 12] = [
    (
        "mode",
        "a primary, replica or static compute is chosen at start",
    ),
    ("tenant_id", "the data comes from the tenant at start"),
    ("timeline_id", "the data comes from the timeline at start"),
    ("upstream_connstring", "the data is cloned at start"),
    (
        "storage_auth_token",
        "the postmaster's NEON_AUTH_TOKEN is set at start",
    ),
    ("remote_extensions", "control files are downloaded at start"),
    ("swap_size_bytes", "swap is sized at start"),
    ("disk_quota_bytes", "the disk quota is set at start"),
    ("autoprewarm", "the prewarm runs once, at start"),
    (
        "offload_lfc_interval_seconds",
        "the offload task starts with the compute",
    ),
    (
        "disable_lfc_resizing",
        "vm-monitor gets its connection at start",
    ),
    ("audit_log_level", "the audit log export is set up at start"),
];

/// The [`START_ONLY`] fields that differ between `previous` and `next`, in that order.
pub fn restart_required(previous: &ComputeSpec, next: &ComputeSpec) -> Vec<String> {
    let (Ok(previous), Ok(next)) = (serde_json::to_value(previous), serde_json::to_value(next))
    else {
        return Vec::new();
    };
    START_ONLY
        .iter()
        .filter(|(field, _)| field_of(&previous, field) != field_of(&next, field))
        .map(|(field, _)| field.to_string())
        .collect()
}

/// A field's value, absent and `null` alike.
fn field_of<'a>(spec: &'a Value, field: &str) -> Option<&'a Value> {
    spec.get(field).filter(|value| !value.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: Value) -> ComputeSpec {
        let mut value = serde_json::json!({
            "format_version": 1.0,
            "cluster": {"roles": [], "databases": []},
        });
        if let (Some(value), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
            value.extend(extra.clone());
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn live_fields_need_no_restart_and_start_only_ones_are_named() {
        let before = spec(serde_json::json!({"suspend_timeout_seconds": 0}));
        let live = spec(serde_json::json!({
            "suspend_timeout_seconds": 300,
            "pageserver_connstring": "host=ps2",
            "safekeeper_connstrings": ["sk:1"],
            "reconfigure_concurrency": 4,
            "cluster": {"roles": [], "databases": [], "postgresql_conf": "work_mem = 1MB\n"},
        }));
        assert!(restart_required(&before, &live).is_empty());
        let restart = spec(serde_json::json!({
            "mode": "Replica",
            "autoprewarm": true,
            "swap_size_bytes": 1024,
        }));
        assert_eq!(
            restart_required(&before, &restart),
            ["mode", "swap_size_bytes", "autoprewarm"]
        );
        for (field, why) in START_ONLY {
            assert!(!field.is_empty() && !why.is_empty());
        }
    }
}
