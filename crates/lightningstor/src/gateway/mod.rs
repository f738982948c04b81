//! The S3 gateway: S3's REST API (through the `s3s` crate) over metadata in flaredb
//! ([`meta`]) and blocks on the storage nodes ([`crate::data`]); access keys resolved through
//! iam ([`auth`]). Stateless: run any number behind any address.

pub mod access;
pub mod auth;
pub mod checksums;
pub mod conditions;
pub mod config;
mod copy;
pub mod cors;
pub mod expiry;
pub mod gc;
pub mod lifecycle;
mod listing;
pub mod meta;
mod multipart;
pub mod request_id;
pub mod s3;
pub mod service;
pub mod tagging;
pub mod uploads;
mod versioning;
pub mod versions;

use std::sync::Arc;

use s3s::host::SingleDomain;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::GatewayConfig;
pub use s3::Gateway;

use crate::data::Cluster;
use auth::{IamKeys, KeyAuth};
use meta::Meta;

/// A new random ID for a bucket's objects to live under.
pub fn new_id() -> String {
    ultracloud_resource::ids::new_id("b")
}

impl Gateway {
    /// A gateway over `meta` (flaredb) and `cluster` (the storage nodes), checking access keys
    /// with `keys`.
    pub fn new(meta: Meta, cluster: Arc<Cluster>, keys: Arc<IamKeys>) -> Self {
        Self { meta, cluster, keys }
    }

    /// The gateway's HTTP router: the S3 service behind the CORS and request-ID layers. With `domain`,
    /// `BUCKET.domain` addresses a bucket (virtual-host style); path style works always.
    pub fn into_router(self, domain: Option<&str>) -> Result<axum::Router, String> {
        let cors = cors::CorsState { meta: self.meta.clone(), domain: domain.map(str::to_owned) };
        let service = self.into_service(domain)?;
        // Every path is S3's: the service is the router's fallback (no route of ours shadows a
        // bucket name). A connection-level failure inside s3s becomes a 500.
        let s3 = axum::error_handling::HandleError::new(service, async |e: s3s::HttpError| {
            tracing::warn!(error = ?e, "S3 request failed below the S3 layer");
            (http::StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        });
        // Request IDs outermost: the CORS layer's refusals get one too.
        Ok(axum::Router::new()
            .fallback_service(s3)
            .layer(axum::middleware::from_fn_with_state(cors, cors::layer))
            .layer(axum::middleware::from_fn(request_id::layer)))
    }

    /// The S3 service alone (see [`Gateway::into_router`]).
    fn into_service(self, domain: Option<&str>) -> Result<S3Service, String> {
        let auth = KeyAuth(self.keys.clone());
        let keys = self.keys.clone();
        let mut b = S3ServiceBuilder::new(self);
        b.set_auth(auth);
        b.set_access(access::RequestAccess(keys));
        if let Some(d) = domain {
            b.set_host(SingleDomain::new(d).map_err(|e| format!("domain {d:?}: {e}"))?);
        }
        Ok(b.build())
    }
}

/// Serves `router` (from [`Gateway::into_router`]) on `listener` without TLS (HTTP/1.1 and
/// HTTP/2) until `shutdown`.
pub async fn serve(listener: TcpListener, router: axum::Router, shutdown: CancellationToken) {
    let service = hyper_util::service::TowerToHyperService::new(router);
    let http = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    loop {
        let (socket, _) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone()).into_owned();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "S3 connection ended with an error");
            }
        });
    }
}
