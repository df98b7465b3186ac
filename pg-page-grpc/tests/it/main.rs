//! pg-page-grpc's tests against its stand-in pageserver (a real gRPC server on 127.0.0.1):
//! the metadata and request the client sends, the stream read whole, and each way a call can
//! fail classified as the stages need (final or worth retrying), naming the server.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

mod basebackup;
mod lease;

use compute_spec::grpc_url::GrpcUrl;
use compute_spec::shard::ShardIndex;
use pg_page_grpc::standin::{Config, StandIn};
use pg_page_grpc::ShardTarget;

/// The tenant the stand-ins hold.
pub const TENANT: &str = "3aa8fcc61f6d357410b7de754b1d9001";
/// The timeline they hold.
pub const TIMELINE: &str = "de5a2f3ab7e1d7cd4e0e6a1c1a5d2f0b";
/// The token they accept.
pub const TOKEN: &str = "storage-token";

/// A stand-in for shard `shard` serving `archive`, with the test token.
pub fn standin(shard: &str, archive: Vec<u8>) -> StandIn {
    let mut config = Config::new(TENANT, TIMELINE, Some(TOKEN), archive);
    config.shard = shard.to_string();
    StandIn::start(config).unwrap()
}

/// The target of shard `shard` at `standin`.
pub fn target(standin: &StandIn, shard: &str) -> ShardTarget {
    ShardTarget {
        url: GrpcUrl::parse(&standin.url()).unwrap(),
        tenant_id: TENANT.parse().unwrap(),
        timeline_id: TIMELINE.parse().unwrap(),
        shard: ShardIndex::parse(shard).unwrap(),
    }
}
