//! pg-page-grpc: the pageserver's gRPC page service (`page_api.PageService`), as a compute
//! uses it — the basebackup (`GetBaseBackup`, a stream of chunks of an archive) and LSN
//! leases (`LeaseLsn`) — for `pg-basebackup-fetch` and `pg-lsn-lease` when a spec prefers
//! gRPC (`pageserver_connection_info.prefer_protocol: "grpc"`).
//!
//! * [`proto`]: the messages and the client generated at build time (tonic and prost) from
//!   our own transcription of the protocol (`proto/page_service.proto`: upstream's names,
//!   field numbers and types), compiled by protox: no `protoc` is needed to build.
//! * [`client`]: the target of a call ([`ShardTarget`]: endpoint, tenant, timeline, shard),
//!   the metadata every request carries (`neon-tenant-id`, `neon-timeline-id`,
//!   `neon-shard-id`, `authorization: Bearer <token>`), and the connection under a deadline.
//!   Messages from the server are capped at 4 MiB ([`client::MAX_MESSAGE`]).
//! * [`blocking`]: the calls for synchronous callers, each on a single-threaded runtime of its
//!   own, every wait for the server bounded: [`BaseBackupStream`] (an `io::Read` of the
//!   archive: connect, answer and idle deadlines, a minimum rate) and [`lease_lsn`].
//! * [`GrpcError`]: every failure names the pageserver (`host:port`; never the token); it
//!   tells a status the server sent from a broken connection, and says which are final
//!   ([`GrpcError::is_auth`]) and which may pass ([`GrpcError::is_transient`]).
//! * `standin` (feature `stand-in`): a stand-in pageserver for tests and benchmarks — a real
//!   gRPC server that checks the metadata and the token, answers the real server's status
//!   codes, streams 256 KiB chunks, and can fall silent, stall, trickle, be cut, or fail.
//!
//! Plain HTTP/2 (no TLS), as upstream's computes reach their pageservers; gzip is the
//! archive's own compression (asked for in the request), not gRPC's.

pub mod blocking;
pub mod client;
mod error;
#[cfg(feature = "stand-in")]
pub mod standin;

/// The generated messages and client (and, with `stand-in`, server) of `page_api`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("page_api");
}

pub use blocking::{lease_lsn, BaseBackupRequest, BaseBackupStream, Deadlines, LeaseAnswer};
pub use client::{Metadata, PageClient, ShardTarget};
pub use error::{code_name, GrpcError};
pub use tonic::Code;
