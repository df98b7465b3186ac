//! Starting the HTTP servers, once, with the authentication of the start-time
//! `compute_ctl_config`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use compute_spec::error::{ErrorKind, StageError};

use compute_http::auth::Auth;
use compute_http::{Port, ServeError};

use super::Controller;
use crate::api::Api;

impl Controller {
    /// Starts the HTTP servers with the authentication of the start-time
    /// `compute_ctl_config` — loaded here once; nothing later can change it.
    pub(super) fn ensure_http(&mut self) -> Result<(), StageError> {
        if self.http_started {
            return Ok(());
        }
        self.http_started = true;
        let served = self.bind_http();
        self.http_unbound = served.is_err();
        served
    }

    /// Loads the authentication and binds the servers.
    fn bind_http(&mut self) -> Result<(), StageError> {
        let jwks = self.shared.lock().compute_ctl_config.jwks.clone();
        let auth = Auth::load(jwks.as_ref().map(|jwks| jwks.keys.as_slice())).map_err(|error| {
            StageError::new(crate::stages::STAGE, ErrorKind::InvalidSpec, error)
        })?;
        let address = match (self.params.http_listen, &auth) {
            (Some(address), Auth::Open) if !address.is_loopback() => {
                return Err(StageError::new(
                    crate::stages::STAGE,
                    ErrorKind::Usage,
                    format!(
                        "refusing to serve the HTTP API on {address} without authentication: \
                         give compute_ctl_config.jwks keys, or listen on a loopback address"
                    ),
                ));
            }
            (Some(address), _) => address,
            // `[::]` (as upstream) takes IPv4 too; 0.0.0.0 where IPv6 is off.
            (None, Auth::Keys(_)) if ipv6_available() => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            (None, Auth::Keys(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            (None, Auth::Open) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        match &auth {
            Auth::Open => tracing::warn!(
                %address,
                "no compute_ctl_config.jwks given: the HTTP API runs WITHOUT authentication \
                 (development mode) and listens on loopback only"
            ),
            Auth::Keys(keys) if keys.is_empty() => tracing::warn!(
                "compute_ctl_config.jwks has no keys: every authenticated route answers 401"
            ),
            Auth::Keys(keys) => tracing::info!(keys = keys.len(), "JWT keys loaded"),
        }
        let api = Api {
            shared: self.shared.clone(),
            wake: self.sender.clone(),
            compute_id: self.params.compute_id.clone(),
            auth: Arc::new(auth),
            deadlines: self.params.http_deadlines,
            lfc: self.lfc.clone(),
            ext_stats: self.ext_stats.clone(),
            promotion: Arc::default(),
            remote_ext: Arc::new(pg_extensions_fetch::on_demand::OnDemand::new(
                self.params.deferred.remote_ext_base_url.clone(),
            )),
            ready: Arc::default(),
        };
        let serve = |which, listen| {
            let router = (self.router)(&api, which);
            let in_flight = api.shared.inflight.clone();
            compute_http::serve(router, in_flight, api.deadlines, listen, which).map_err(|error| {
                let kind = match error {
                    ServeError::Bind { .. } => ErrorKind::Io,
                    ServeError::Start { .. } => ErrorKind::Internal,
                };
                StageError::new(crate::stages::STAGE, kind, error.to_string())
            })
        };
        serve(Port::External, (address, self.params.external_port))?;
        if let Some(port) = self.params.internal_port {
            serve(Port::Internal, (self.params.internal_http_listen, port))?;
        }
        Ok(())
    }
}

/// Whether this host can bind an IPv6 socket (IPv6 may be disabled in a container).
fn ipv6_available() -> bool {
    std::net::TcpListener::bind((Ipv6Addr::UNSPECIFIED, 0)).is_ok()
}
