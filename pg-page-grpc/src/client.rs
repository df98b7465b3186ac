//! The async client: one pageserver shard, its metadata on every request, a deadline on the
//! connection. The callers are synchronous; [`crate::blocking`] runs these on a runtime of
//! their own.

use std::time::Duration;

use compute_spec::grpc_url::GrpcUrl;
use compute_spec::ids::{TenantId, TimelineId};
use compute_spec::shard::ShardIndex;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};

use crate::proto::page_service_client::PageServiceClient;
use crate::GrpcError;

/// The largest message accepted from the server: gRPC's usual 4 MiB (the pageserver sends
/// 256 KiB chunks), so one message can never take more memory than that.
pub const MAX_MESSAGE: usize = 4 << 20;

/// One shard of a timeline at one pageserver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardTarget {
    /// The pageserver's gRPC endpoint.
    pub url: GrpcUrl,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The timeline.
    pub timeline_id: TimelineId,
    /// The shard (number and count; `0000` unsharded).
    pub shard: ShardIndex,
}

/// The metadata every request carries: tenant, timeline, shard, and the token.
#[derive(Clone)]
pub struct Metadata {
    tenant_id: AsciiMetadataValue,
    timeline_id: AsciiMetadataValue,
    shard_id: AsciiMetadataValue,
    authorization: Option<AsciiMetadataValue>,
}

impl std::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metadata")
            .field("tenant_id", &self.tenant_id)
            .field("timeline_id", &self.timeline_id)
            .field("shard_id", &self.shard_id)
            .field("token", &self.authorization.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Metadata {
    /// The metadata of `target`, with `token` as `authorization: Bearer <token>`. A token
    /// that is not visible ASCII cannot be sent (HTTP/2 header values): an error that does
    /// not repeat it.
    pub fn new(target: &ShardTarget, token: Option<&str>) -> Result<Metadata, GrpcError> {
        let value = |text: String| {
            AsciiMetadataValue::try_from(text).map_err(|_| GrpcError::Invalid {
                server: target.url.to_string(),
                detail: "an id cannot be sent as gRPC metadata".to_string(),
            })
        };
        let authorization = match token {
            None => None,
            Some(token) => {
                let visible = !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic());
                if !visible {
                    return Err(GrpcError::Invalid {
                        server: target.url.to_string(),
                        detail: "storage_auth_token cannot be sent as gRPC metadata (it must be \
                                 visible ASCII, without spaces); check the spec's token"
                            .to_string(),
                    });
                }
                Some(value(format!("Bearer {token}"))?)
            }
        };
        Ok(Metadata {
            tenant_id: value(target.tenant_id.to_string())?,
            timeline_id: value(target.timeline_id.to_string())?,
            shard_id: value(target.shard.to_string())?,
            authorization,
        })
    }

    /// Sets the headers on a request's metadata.
    pub fn apply(&self, metadata: &mut MetadataMap) {
        metadata.insert("neon-tenant-id", self.tenant_id.clone());
        metadata.insert("neon-timeline-id", self.timeline_id.clone());
        metadata.insert("neon-shard-id", self.shard_id.clone());
        if let Some(authorization) = &self.authorization {
            metadata.insert("authorization", authorization.clone());
        }
    }

    /// `message` as a request carrying this metadata.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        self.apply(request.metadata_mut());
        request
    }
}

/// A connected client of one shard.
#[derive(Debug)]
pub struct PageClient {
    /// The generated client on the connection (messages up to [`MAX_MESSAGE`]).
    pub inner: PageServiceClient<Channel>,
    /// What every request carries.
    pub metadata: Metadata,
    /// `host:port`, as errors name the pageserver.
    pub server: String,
}

impl PageClient {
    /// Connects (TCP and the HTTP/2 handshake) to `target` within `timeout`. Must run on a
    /// tokio runtime with I/O and time enabled.
    pub async fn connect(
        target: &ShardTarget,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<PageClient, GrpcError> {
        let server = target.url.to_string();
        let metadata = Metadata::new(target, token)?;
        let endpoint = Endpoint::from_shared(target.url.http_uri())
            .map_err(|error| GrpcError::Invalid {
                server: server.clone(),
                detail: format!("not an endpoint the HTTP/2 client accepts: {error}"),
            })?
            .connect_timeout(timeout)
            .tcp_nodelay(true);
        let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
            Err(_) => {
                return Err(GrpcError::Timeout {
                    server,
                    what: "connecting",
                    timeout,
                })
            }
            Ok(Err(error)) => {
                let mut detail = error.to_string();
                let mut cause = std::error::Error::source(&error);
                while let Some(inner) = cause {
                    detail.push_str(": ");
                    detail.push_str(&inner.to_string());
                    cause = inner.source();
                }
                return Err(GrpcError::Connect { server, detail });
            }
            Ok(Ok(channel)) => channel,
        };
        let inner = PageServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
        Ok(PageClient {
            inner,
            metadata,
            server,
        })
    }
}
