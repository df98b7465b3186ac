//! gRPC pageservers in a spec: `prefer_protocol` chooses the protocol as upstream does, the
//! shard URLs come out in shard order, and every missing or malformed `grpc_url` is named by
//! its JSON path.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::path::PathBuf;

use compute_spec::grpc_url::GrpcUrl;
use compute_spec::parse::parse_bare;
use compute_spec::spec::{ComputeSpec, PageserverProtocol};
use compute_spec::validate::{NeonStorage, StorageSource};
use serde_json::{json, Value};

/// A Replica spec on Neon storage with `info` as its `pageserver_connection_info`.
fn spec(info: Value) -> ComputeSpec {
    let text = json!({
        "format_version": 1.0, "mode": "Replica",
        "tenant_id": "b0554b632bd4d547a63b86c3630317e8",
        "timeline_id": "2414a61ffc94e428f14b5758fe308e13",
        "pageserver_connection_info": info,
        "cluster": {"roles": [], "databases": []},
    });
    parse_bare(&text.to_string(), "inline")
        .unwrap()
        .spec
        .unwrap()
}

fn neon(spec: &ComputeSpec) -> NeonStorage {
    match spec.validate() {
        Ok(StorageSource::Neon(neon)) => neon,
        other => panic!("expected Neon storage, got {other:?}"),
    }
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

fn url(host: &str, port: u16) -> GrpcUrl {
    GrpcUrl {
        host: host.to_string(),
        port,
    }
}

#[test]
fn a_grpc_only_sharded_spec_is_valid_with_its_shard_urls_in_order() {
    let spec = spec(json!({
        "shard_count": 2, "stripe_size": 2048, "prefer_protocol": "grpc",
        "shards": {
            "0102": {"pageservers": [{"id": 2, "grpc_url": "grpc://no_user@ps-b:51051"},
                                     {"id": 3, "grpc_url": "grpc://ps-c:51051"}]},
            "0002": {"pageservers": [{"id": 1, "grpc_url": "grpc://no_user@ps-a:51051"}]},
        },
    }));
    let neon = neon(&spec);
    assert_eq!(neon.protocol, PageserverProtocol::Grpc);
    assert_eq!(
        neon.pageserver_grpc_urls,
        [url("ps-a", 51051), url("ps-b", 51051)]
    );
    assert!(neon.pageserver_connstrings.is_empty());
    assert_eq!(neon.stripe_size, Some(2048));
    // As upstream: no libpq URL for every shard, no neon.pageserver_connstring.
    let conf = conf_of(&spec);
    assert!(!conf.contains("neon.pageserver_connstring"), "{conf}");
    assert!(conf.contains("neon.stripe_size=2048"), "{conf}");
}

#[test]
fn with_both_urls_the_preferred_protocol_is_used() {
    let info = |prefer: &str| {
        json!({"shard_count": 0, "prefer_protocol": prefer, "shards": {"0000": {"pageservers": [
            {"libpq_url": "postgresql://no_user@ps:6400", "grpc_url": "grpc://no_user@ps:51051"}]}}})
    };
    let grpc = neon(&spec(info("grpc")));
    assert_eq!(grpc.protocol, PageserverProtocol::Grpc);
    assert_eq!(grpc.pageserver_grpc_urls, [url("ps", 51051)]);
    // The libpq URL still goes to neon.pageserver_connstring, for Postgres.
    assert_eq!(
        grpc.pageserver_connstrings,
        ["postgresql://no_user@ps:6400"]
    );
    let libpq = neon(&spec(info("libpq")));
    assert_eq!(libpq.protocol, PageserverProtocol::Libpq);
    assert!(libpq.pageserver_grpc_urls.is_empty());
    // Absent means libpq, as upstream's default.
    let mut absent = info("libpq");
    absent.as_object_mut().unwrap().remove("prefer_protocol");
    assert_eq!(neon(&spec(absent)).protocol, PageserverProtocol::Libpq);
}

#[test]
fn every_missing_or_malformed_grpc_url_is_named_by_its_path() {
    let broken = spec(json!({
        "shard_count": 4, "prefer_protocol": "grpc",
        "shards": {
            "0004": {"pageservers": [{"grpc_url": "grpc://ps-a:1"}, {"libpq_url": "host=x"}]},
            "0104": {"pageservers": [{"grpc_url": "postgresql://no_user@ps-b:6400"}]},
            "0204": {"pageservers": []},
        },
    }));
    let errors = broken.validate().unwrap_err().to_string();
    let shards = "pageserver_connection_info.shards";
    for expected in [
        format!("{shards}.0004.pageservers[1].grpc_url: is missing: prefer_protocol is grpc"),
        format!("{shards}.0104.pageservers[0].grpc_url: is a libpq URL"),
        format!("{shards}.0204.pageservers: is empty"),
        format!("{shards}: shard 0304 is missing from the shard map"),
        "shard_stripe_size: is required".to_string(),
    ] {
        // The stripe size is reported only once the shard URLs are known.
        if expected.starts_with("shard_stripe_size") {
            assert!(!errors.contains(&expected), "{errors}");
        } else {
            assert!(errors.contains(&expected), "{expected}\nnot in: {errors}");
        }
    }
    let two = spec(json!({
        "shard_count": 2, "prefer_protocol": "grpc",
        "shards": {"0002": {"pageservers": [{"grpc_url": "grpc://a:1"}]},
                   "0102": {"pageservers": [{"grpc_url": "grpc://b:1"}]}},
    }));
    let errors = two.validate().unwrap_err().to_string();
    assert!(
        errors.contains("shard_stripe_size: is required with more than one pageserver shard"),
        "{errors}"
    );
}

#[test]
fn grpc_urls_without_the_preference_are_not_used() {
    // Upstream reads the URLs of the preferred protocol only: libpq is preferred here and a
    // shard has none, so there is nothing to fetch from; the error says how to choose gRPC.
    let libpq = spec(json!({
        "shard_count": 0,
        "shards": {"0000": {"pageservers": [{"grpc_url": "grpc://ps:51051"}]}},
    }));
    let errors = libpq.validate().unwrap_err().to_string();
    assert!(
        errors.contains("pageserver_connection_info: a shard has no pageserver with a libpq_url"),
        "{errors}"
    );
    assert!(errors.contains("\"prefer_protocol\": \"grpc\""), "{errors}");
}
