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

/// A spec field whose change takes effect only at the next start.
#[derive(Clone, Copy)]
pub struct StartOnly {
    /// The field's JSON name (as listed in `reconcile.restart_required`).
    pub name: &'static str,
    /// Why a running compute cannot take a change of it.
    pub why: &'static str,
    /// Whether the field differs between two specs (its typed values compared).
    differs: fn(&ComputeSpec, &ComputeSpec) -> bool,
}

impl std::fmt::Debug for StartOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartOnly")
            .field("name", &self.name)
            .field("why", &self.why)
            .finish_non_exhaustive()
    }
}

/// Declares [`START_ONLY`]: each entry a field of [`ComputeSpec`] (so a renamed or removed
/// field does not compile) compared by its typed value, and named by its identifier, which is
/// its JSON name.
macro_rules! start_only {
    ($($field:ident: $why:literal,)+) => {
        /// Spec fields whose change takes effect only at the next start, with why.
        pub const START_ONLY: &[StartOnly] = &[$(StartOnly {
            name: stringify!($field),
            why: $why,
            differs: |previous, next| previous.$field != next.$field,
        }),+];
    };
}

start_only! {
    mode: "a primary, replica or static compute is chosen at start",
    tenant_id: "the data comes from the tenant at start",
    timeline_id: "the data comes from the timeline at start",
    upstream_connstring: "the data is cloned at start",
    storage_auth_token: "the postmaster's NEON_AUTH_TOKEN is set at start",
    remote_extensions: "control files are downloaded at start",
    swap_size_bytes: "swap is sized at start",
    disk_quota_bytes: "the disk quota is set at start",
    autoprewarm: "the prewarm runs once, at start",
    offload_lfc_interval_seconds: "the offload task starts with the compute",
    disable_lfc_resizing: "vm-monitor gets its connection at start",
    audit_log_level: "the audit log export is set up at start",
}

/// The [`START_ONLY`] fields that differ between `previous` and `next`, in that order.
pub fn restart_required(previous: &ComputeSpec, next: &ComputeSpec) -> Vec<String> {
    START_ONLY
        .iter()
        .filter(|field| (field.differs)(previous, next))
        .map(|field| field.name.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::Value;

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
        for field in START_ONLY {
            assert!(!field.name.is_empty() && !field.why.is_empty());
        }
    }

    /// Each start-only field, changed alone in the JSON a control plane sends, is reported
    /// under that JSON name and no other: the typed comparison sees exactly the wire field.
    #[test]
    fn each_start_only_field_is_compared_by_its_typed_value_under_its_json_name() {
        let changes = [
            ("mode", serde_json::json!({"Static": "0/16B3748"})),
            (
                "tenant_id",
                serde_json::json!("0123456789abcdef0123456789abcdef"),
            ),
            (
                "timeline_id",
                serde_json::json!("fedcba9876543210fedcba9876543210"),
            ),
            ("upstream_connstring", serde_json::json!("host=primary")),
            ("storage_auth_token", serde_json::json!("token")),
            (
                "remote_extensions",
                serde_json::json!({"library_index": {}, "extension_data": {}}),
            ),
            ("swap_size_bytes", serde_json::json!(1024)),
            ("disk_quota_bytes", serde_json::json!(1024)),
            ("autoprewarm", serde_json::json!(true)),
            ("offload_lfc_interval_seconds", serde_json::json!(60)),
            ("disable_lfc_resizing", serde_json::json!(true)),
            ("audit_log_level", serde_json::json!("Hipaa")),
        ];
        let names: Vec<&str> = START_ONLY.iter().map(|field| field.name).collect();
        let changed: Vec<&str> = changes.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, changed);
        let before = spec(serde_json::json!({}));
        for (name, value) in changes {
            let after = spec(serde_json::json!({ name: value.clone() }));
            assert_eq!(restart_required(&before, &after), [name], "{name}");
            assert_eq!(restart_required(&after, &before), [name], "{name}");
            // The same value again, and an explicit null against an absent field: no change.
            assert!(restart_required(&after, &spec(serde_json::json!({ name: value }))).is_empty());
            if !matches!(name, "mode" | "autoprewarm" | "audit_log_level") {
                let null = spec(serde_json::json!({ name: null }));
                assert!(restart_required(&before, &null).is_empty(), "{name}");
            }
        }
        // A remote extension added inside the map is a change too (the whole value compared).
        let one = serde_json::json!({"library_index": {"anon": "anon"}, "extension_data": {
            "anon": {"control_data": {"anon.control": "x"}, "archive_path": "a"}}});
        let none = serde_json::json!({"library_index": {}, "extension_data": {}});
        let empty = spec(serde_json::json!({"remote_extensions": none}));
        let added = spec(serde_json::json!({"remote_extensions": one}));
        assert_eq!(restart_required(&empty, &added), ["remote_extensions"]);
    }
}
