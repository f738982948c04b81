//! `ultracloud lightningstor`: the S3 gateway as a foreground service with the runtime's admin
//! surface.

use std::sync::Arc;
use std::time::Duration;

use ultracloud_resource::setup::{read_key, split};
use ultracloud_runtime::ServiceContext;
use ultracloud_runtime::admin::{ListenError, bind};
use ultracloud_runtime::service::StartError as RuntimeStartError;

use super::Gateway;
use super::auth::IamKeys;
use super::config::GatewayConfig;
use super::gc::Collector;
use super::meta::Meta;
use crate::data::Cluster;

/// Why the gateway stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The runtime (data dir, admin listener) could not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeStartError),
    /// The S3 listener could not bind.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The TLS directory is unusable.
    #[error(transparent)]
    Tls(#[from] ultracloud_tls::TlsError),
    /// A setting, the key file or a client could not be used.
    #[error("{0}")]
    Setup(String),
    /// Serving failed.
    #[error("serving S3 failed: {0}")]
    Serve(#[from] std::io::Error),
}

fn setup(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Setup(e.to_string())
}

/// Runs the gateway until SIGTERM/SIGINT.
pub fn run(config: GatewayConfig) -> ultracloud_runtime::Entry<'static, Result<(), GatewayError>> {
    Box::pin(serve(config))
}

async fn serve(config: GatewayConfig) -> Result<(), GatewayError> {
    let ctx = ServiceContext::start("lightningstor", &config.data_dir)?;
    let tls = ultracloud_tls::setup(config.tls_dir.as_deref(), ultracloud_tls::ClientAuth::None)?;
    let listener = bind(config.listen, "lightningstor S3 API").await?;
    let iam_endpoints = split(&config.iam_endpoints);
    let tokens =
        ultracloud_iam::guard::TokenSource::new(iam_endpoints.clone(), read_key(&config.api_key_file).map_err(setup)?)
            .map_err(setup)?;
    let keys = Arc::new(IamKeys::new(tokens.client("iam", &iam_endpoints).map_err(setup)?));
    let nodes = config.storage_nodes().map_err(setup)?;
    let copies = config.copies().map_err(setup)?;
    let cluster = Arc::new(Cluster::new(nodes, copies, config.block_bytes).map_err(setup)?);
    let db = ultracloud_flaredb::Client::new(split(&config.flaredb_endpoints)).map_err(setup)?;
    if config.gc_interval_secs > 0 {
        Collector::new(db.clone(), cluster.clone(), Duration::from_secs(config.gc_grace_secs))
            .spawn(Duration::from_secs(config.gc_interval_secs), ctx.shutdown.clone());
    }
    let router = Gateway::new(Meta::new(db), cluster, keys).into_router(config.domain.as_deref()).map_err(setup)?;
    let admin = ctx.start_admin(config.admin_listen, axum::Router::new()).await.map_err(RuntimeStartError::from)?;
    tracing::info!(s3 = %config.listen, admin = %admin.local_addr, copies, block_bytes = config.block_bytes,
        tls = tls.is_some(), "lightningstor gateway ready");
    ultracloud_tls::serve::serve_maybe_tls(listener, router, tls.map(|t| t.config), ctx.shutdown.clone()).await?;
    let _ = admin.task.await;
    Ok(())
}
