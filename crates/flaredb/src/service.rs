//! `ultracloud flaredb`: one node as a foreground service with the runtime's admin surface.

use std::sync::Arc;

use ultracloud_runtime::ServiceContext;
use ultracloud_runtime::admin::{ListenError, bind};
use ultracloud_runtime::service::StartError as RuntimeStartError;

use crate::config::FlaredbConfig;
use crate::node::{Node, StartError};

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The runtime (data dir, admin listener) could not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeStartError),
    /// The node could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The API listener could not bind.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The TLS directory is unusable.
    #[error(transparent)]
    Tls(#[from] ultracloud_tls::TlsError),
    /// Serving failed.
    #[error("serving the API failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// Runs a node until SIGTERM/SIGINT.
pub fn run(config: FlaredbConfig) -> ultracloud_runtime::Entry<'static, Result<(), ServiceError>> {
    Box::pin(serve(config))
}

async fn serve(config: FlaredbConfig) -> Result<(), ServiceError> {
    let ctx = ServiceContext::start("flaredb", &config.data_dir)?;
    // Before the node starts: its peer and client calls use the identity installed here.
    let tls = ultracloud_tls::setup(config.tls_dir.as_deref(), ultracloud_tls::ClientAuth::Required)?;
    let listener = bind(config.listen, "flaredb API").await?;
    let node = Node::start(config.clone(), ctx.data_dir().path(), ctx.shutdown.clone()).await?;
    let ready = node.clone();
    ctx.readiness.add("regions-led-or-followed", move || {
        let ok = ready.replicas().iter().any(|r| r.leader().is_some()) || ready.replicas().is_empty();
        async move { if ok { Ok(()) } else { Err("no replica knows its leader yet".to_owned()) } }
    });
    register_metrics(&ctx, node.clone());
    let admin = ctx.start_admin(config.admin_listen, axum::Router::new()).await.map_err(RuntimeStartError::from)?;
    tracing::info!(api = %config.listen, admin = %admin.local_addr, node = node.id, "flaredb ready");
    let router = crate::server::router(node.clone(), tls.is_some())
        .layer(axum::extract::DefaultBodyLimit::max(config.max_request_bytes));
    ultracloud_tls::serve::serve_api(&ctx, listener, router, tls.as_ref()).await?;
    node.shutdown.cancel();
    for r in node.replicas() {
        let _ = r.raft.shutdown().await;
    }
    let _ = admin.task.await;
    Ok(())
}

fn register_metrics(ctx: &ServiceContext, node: Arc<Node>) {
    use prometheus_client::metrics::gauge::Gauge;
    let replicas = Gauge::<i64>::default();
    let leaders = Gauge::<i64>::default();
    ctx.metrics.register("flaredb_replicas", "Replicas on this node", replicas.clone());
    ctx.metrics.register("flaredb_leaders", "Replicas this node leads", leaders.clone());
    let shutdown = ctx.shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let all = node.replicas();
            replicas.set(all.len() as i64);
            leaders.set(all.iter().filter(|r| r.is_leader()).count() as i64);
        }
    });
}
