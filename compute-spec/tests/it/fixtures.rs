//! The upstream fixtures in `shared/fixtures/neon/`: the valid ones parse and validate, the
//! duplicate-safekeeper one is rejected naming the duplicate, and re-serialising keeps every
//! field.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::path::PathBuf;

use compute_spec::parse::{parse_any, parse_bare, parse_envelope};
use compute_spec::reserved::Reserved;
use compute_spec::spec::{ComputeFeature, ComputeMode, ComputeSpec};
use compute_spec::validate::StorageSource;
use serde_json::Value;

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/neon")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The docker-compose script replaces these placeholders before use; so do we.
fn with_ids(text: &str) -> String {
    text.replace("TENANT_ID", "b0554b632bd4d547a63b86c3630317e8")
        .replace("TIMELINE_ID", "2414a61ffc94e428f14b5758fe308e13")
}

/// Every key of `original` is in `reserialised` with the same value (null == absent).
fn assert_keeps_fields(original: &Value, reserialised: &Value, path: &str) {
    match (original, reserialised) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let other = b.get(key).unwrap_or(&Value::Null);
                assert_keeps_fields(value, other, &format!("{path}.{key}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}: array length");
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                assert_keeps_fields(x, y, &format!("{path}[{index}]"));
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            assert_eq!(a.as_f64(), b.as_f64(), "{path}");
        }
        (a, b) => assert_eq!(a, b, "{path}"),
    }
}

fn round_trip(text: &str, spec: &ComputeSpec) {
    let original: Value = serde_json::from_str(text).unwrap();
    let original = original.get("spec").cloned().unwrap_or(original);
    let reserialised = serde_json::to_value(spec).unwrap();
    assert_keeps_fields(&original, &reserialised, "spec");
}

#[test]
fn compute_api_cluster_spec_parses_validates_and_round_trips() {
    let text = fixture("compute_api-cluster_spec.json");
    let spec = parse_bare(&text, "fixture").unwrap().spec.unwrap();
    assert_eq!(spec.cluster.roles.len(), 6);
    assert_eq!(spec.cluster.databases.len(), 3);
    assert_eq!(spec.cluster.settings.as_ref().unwrap().len(), 25);
    assert_eq!(spec.delta_operations.as_ref().unwrap().len(), 4);
    assert_eq!(spec.reconfigure_concurrency, 1);
    assert_eq!(spec.mode, ComputeMode::Primary);
    assert!(spec.features.is_empty());
    assert_eq!(spec.suspend_timeout_seconds, 3600);
    assert_eq!(
        spec.pgbouncer_settings.as_ref().unwrap()["pool_mode"],
        "session"
    );
    assert_eq!(spec.extra["timestamp"], "2021-05-23T18:25:43.511Z");
    // Its roles `postgres` and `MyRole` and its deltas take none of the cluster's objects.
    let source = spec.validate_for(&Reserved::default()).unwrap();
    let StorageSource::Neon(neon) = source else {
        panic!("expected Neon storage, got {source:?}");
    };
    assert_eq!(
        neon.tenant_id.to_string(),
        "b0554b632bd4d547a63b86c3630317e8"
    );
    assert_eq!(
        neon.timeline_id.to_string(),
        "2414a61ffc94e428f14b5758fe308e13"
    );
    assert_eq!(
        neon.pageserver_connstrings,
        vec!["host=127.0.0.1 port=6400"]
    );
    assert_eq!(neon.safekeepers.len(), 3);
    round_trip(&text, &spec);
}

#[test]
fn duplicate_safekeepers_are_rejected_naming_the_duplicate() {
    let text = fixture("compute_tools-cluster_spec.json");
    let spec = parse_bare(&text, "fixture").unwrap().spec.unwrap();
    round_trip(&text, &spec);
    let errors = spec.validate().unwrap_err();
    let message = errors.to_string();
    assert!(
        message.contains("duplicate entry in safekeeper_connstrings: 127.0.0.1:6502!"),
        "{message}"
    );
    assert_eq!(errors.0.len(), 1, "{message}");
    assert_eq!(errors.0[0].field, "safekeeper_connstrings");
}

#[test]
fn legacy_spec_json_parses_without_suspend_timeout() {
    let text = fixture("spec.json");
    let spec = parse_bare(&text, "fixture").unwrap().spec.unwrap();
    assert_eq!(spec.suspend_timeout_seconds, 0);
    round_trip(&text, &spec);
    // The placeholders are not ids: validation says which setting is wrong.
    let message = spec.validate().unwrap_err().to_string();
    assert!(
        message.contains("cluster.settings.neon.tenant_id"),
        "{message}"
    );
    assert!(
        message.contains("cluster.settings.neon.timeline_id"),
        "{message}"
    );
    let spec = parse_bare(&with_ids(&text), "fixture")
        .unwrap()
        .spec
        .unwrap();
    // Its role `cloud_admin` (the admin) only sets a password: accepted.
    assert!(matches!(
        spec.validate_for(&Reserved::default()),
        Ok(StorageSource::Neon(_))
    ));
}

#[test]
fn config_json_envelope_parses_with_jwks() {
    let text = fixture("config.json");
    let loaded = parse_envelope(&text, "fixture").unwrap();
    let spec = loaded.spec.clone().unwrap();
    assert_eq!(spec.suspend_timeout_seconds, -1);
    assert_eq!(
        loaded.compute_ctl_config.jwks.as_ref().unwrap().keys.len(),
        1
    );
    assert_eq!(
        loaded.compute_ctl_config.jwks.as_ref().unwrap().keys[0]["crv"],
        "Ed25519"
    );
    round_trip(&text, &spec);
    let any = parse_any(&with_ids(&text), "fixture").unwrap();
    assert!(matches!(
        any.spec.unwrap().validate_for(&Reserved::default()),
        Ok(StorageSource::Neon(_))
    ));
}

#[test]
fn unknown_fields_and_features_are_kept() {
    let text = r#"{"format_version": 1.0, "brand_new": {"x": 1},
        "features": ["activity_monitor_experimental", "warp_drive"],
        "mode": {"Static": "0/16B5A50"},
        "cluster": {"roles": [], "databases": [], "future": true}}"#;
    let spec = parse_bare(text, "inline").unwrap().spec.unwrap();
    assert_eq!(
        spec.features,
        vec![
            ComputeFeature::ActivityMonitorExperimental,
            ComputeFeature::Unknown("warp_drive".to_string())
        ]
    );
    assert_eq!(spec.mode, ComputeMode::Static("0/16B5A50".parse().unwrap()));
    round_trip(text, &spec);
}

#[test]
fn every_bad_field_is_reported_at_once() {
    let text = r#"{"format_version": 1.0, "upstream_connstring": "host=a",
        "pageserver_connstring": "host=ps", "reconfigure_concurrency": 0,
        "cluster": {"roles": [{"name": ""}, {"name": "a"}, {"name": "a"}],
                    "databases": [{"name": "d", "owner": ""}]},
        "delta_operations": [{"action": "rename_role", "name": "x"}]}"#;
    let spec = parse_bare(text, "inline").unwrap().spec.unwrap();
    let errors = spec.validate().unwrap_err();
    let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
    for expected in [
        "cluster.roles[0].name",
        "cluster.roles[2].name",
        "cluster.databases[0].owner",
        "delta_operations[0].new_name",
        "reconfigure_concurrency",
        "upstream_connstring",
        "tenant_id",
        "timeline_id",
        "safekeeper_connstrings",
    ] {
        assert!(fields.contains(&expected), "{expected} not in {fields:?}");
    }
}

#[test]
fn replica_with_neon_storage_needs_no_safekeepers() {
    let text = r#"{"format_version": 1.0, "mode": "Replica",
        "tenant_id": "b0554b632bd4d547a63b86c3630317e8",
        "timeline_id": "2414a61ffc94e428f14b5758fe308e13",
        "pageserver_connection_info": {"shard_count": 0, "shards": {"0000": {"pageservers": [
            {"id": 1, "libpq_url": "postgresql://no_user@ps:6400"}]}}},
        "cluster": {"roles": [], "databases": []}}"#;
    let spec = parse_bare(text, "inline").unwrap().spec.unwrap();
    let StorageSource::Neon(neon) = spec.validate().unwrap() else {
        panic!("expected Neon storage");
    };
    assert_eq!(
        neon.pageserver_connstrings,
        vec!["postgresql://no_user@ps:6400"]
    );
    assert!(neon.safekeepers.is_empty());
}

#[test]
fn embedded_sample_is_valid_and_uses_initdb() {
    let loaded = parse_bare(compute_spec::parse::EMBEDDED_SAMPLE_SPEC, "embedded").unwrap();
    assert_eq!(loaded.spec.unwrap().validate(), Ok(StorageSource::Empty));
}

/// The real fixture with `pageserver_connection_info` in place of its connection string.
fn with_shards(shard_count: u8, keys: &[&str], stripe_size: Option<u32>) -> ComputeSpec {
    let mut value: Value = serde_json::from_str(&fixture("compute_api-cluster_spec.json")).unwrap();
    let shards: serde_json::Map<String, Value> = keys
        .iter()
        .map(|key| {
            let url = format!("postgresql://no_user@ps{key}:6400");
            (
                key.to_string(),
                serde_json::json!({"pageservers": [{"libpq_url": url}]}),
            )
        })
        .collect();
    value["pageserver_connstring"] = Value::Null;
    value["pageserver_connection_info"] = serde_json::json!({"shard_count": shard_count, "stripe_size": stripe_size, "shards": shards});
    serde_json::from_value(value).unwrap()
}

fn conf_of(spec: &ComputeSpec) -> String {
    let params = compute_spec::pgconf::ConfParams {
        port: 55432,
        socket_dir: PathBuf::from("/run/pg"),
        privileged_role_name: "neon_superuser".to_string(),
        extension_server_port: None,
        dynamic_shared_memory_mmap: false,
        extra_lines: Vec::new(),
        neon_library: false,
    };
    compute_spec::pgconf::render(spec, &params).unwrap()
}

#[test]
fn a_stripe_size_is_written_whenever_the_spec_sets_one() {
    let unsharded = with_shards(0, &["0000"], Some(2048));
    assert!(unsharded.validate().is_ok());
    let conf = conf_of(&unsharded);
    let stripe = conf.find("neon.stripe_size=2048\n").expect(&conf);
    let connstring = conf
        .find("neon.pageserver_connstring='postgresql://no_user@ps0000:6400'")
        .expect(&conf);
    assert!(stripe < connstring, "the stripe size comes first:\n{conf}");
    assert!(!conf_of(&with_shards(0, &["0000"], None)).contains("neon.stripe_size"));
}

#[test]
fn a_shard_missing_from_the_map_is_refused_naming_it() {
    let error = with_shards(4, &["0004", "0104", "0304"], Some(2048))
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("pageserver_connection_info.shards: shard 0204 is missing"),
        "{error}"
    );
    // All four, in shard order; a key for another count is not one of them.
    let spec = with_shards(4, &["0304", "0004", "0204", "0104", "0002"], Some(2048));
    let StorageSource::Neon(neon) = spec.validate().unwrap() else {
        panic!("expected Neon storage");
    };
    let hosts: Vec<&str> = neon
        .pageserver_connstrings
        .iter()
        .map(|url| &url["postgresql://no_user@ps".len()..][..4])
        .collect();
    assert_eq!(hosts, ["0004", "0104", "0204", "0304"]);
}
