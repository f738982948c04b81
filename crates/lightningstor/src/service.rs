//! `ultracloud lightningstor-node`: a storage node as a foreground service with the runtime's
//! admin surface.

use ultracloud_runtime::ServiceContext;
use ultracloud_runtime::admin::{ListenError, bind};
use ultracloud_runtime::service::StartError as RuntimeStartError;

use std::sync::Arc;

use crate::blocks::{BlockError, BlockStore};
use crate::config::NodeConfig;
use crate::data::Cluster;
use crate::repair::Repairer;

/// Why the node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The runtime (data dir, admin listener) could not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeStartError),
    /// The block store could not open.
    #[error(transparent)]
    Blocks(#[from] BlockError),
    /// The API listener could not bind.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The TLS directory is unusable.
    #[error(transparent)]
    Tls(#[from] ultracloud_tls::TlsError),
    /// `--peers` is unusable.
    #[error("--peers: {0}")]
    Peers(String),
    /// Serving failed.
    #[error("serving the block API failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// Runs a storage node until SIGTERM/SIGINT.
pub fn run(config: NodeConfig) -> ultracloud_runtime::Entry<'static, Result<(), ServiceError>> {
    Box::pin(serve(config))
}

async fn serve(config: NodeConfig) -> Result<(), ServiceError> {
    let ctx = ServiceContext::start("lightningstor-node", &config.data_dir)?;
    let tls = ultracloud_tls::setup(config.tls_dir.as_deref(), ultracloud_tls::ClientAuth::Required)?;
    let listener = bind(config.listen, "lightningstor-node block API").await?;
    let store = BlockStore::open(ctx.data_dir().path(), config.fsync)?;
    register_metrics(&ctx, &store);
    let admin = ctx.start_admin(config.admin_listen, axum::Router::new()).await.map_err(RuntimeStartError::from)?;
    let (blocks, bytes, _) = store.counts();
    tracing::info!(api = %config.listen, admin = %admin.local_addr, name = %config.name, blocks, bytes,
        fsync = config.fsync, "lightningstor-node ready");
    let repair = repairer(&config, &store)?;
    if let Some(r) = &repair {
        r.spawn(std::time::Duration::from_secs(config.repair_interval_s), ctx.shutdown.clone());
    }
    if config.scrub_interval_s > 0 {
        spawn_scrubs(&store, std::time::Duration::from_secs(config.scrub_interval_s), ctx.shutdown.clone());
    }
    let router = crate::node::router(store, repair, config.max_block_bytes, tls.is_some());
    ultracloud_tls::serve::serve_api(&ctx, listener, router, tls.as_ref()).await?;
    let _ = admin.task.await;
    Ok(())
}

/// Scrubs the store every `interval` (the first one an interval after the start).
fn spawn_scrubs(store: &Arc<BlockStore>, interval: std::time::Duration, shutdown: tokio_util::sync::CancellationToken) {
    let store = store.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            match store.scrub().await {
                Ok(r) if r.corrupt.is_empty() => tracing::info!(checked = r.checked, "scrub found no rot"),
                Ok(r) => {
                    tracing::error!(checked = r.checked, corrupt = r.corrupt.len(), "scrub set rotten blocks aside")
                }
                Err(e) => tracing::warn!(error = %e, "scrub failed; next time"),
            }
        }
    });
}

fn repairer(config: &NodeConfig, store: &Arc<BlockStore>) -> Result<Option<Arc<Repairer>>, ServiceError> {
    let peers = config.peer_nodes().map_err(|e| ServiceError::Peers(e.to_string()))?;
    if peers.is_empty() {
        return Ok(None);
    }
    let cluster = Cluster::new(peers, config.replication, config.max_block_bytes)
        .map_err(|e| ServiceError::Peers(e.to_string()))?;
    Ok(Some(Repairer::new(&config.name, cluster, store.clone())))
}

fn register_metrics(ctx: &ServiceContext, store: &Arc<BlockStore>) {
    use prometheus_client::metrics::gauge::Gauge;
    let (blocks, bytes, corrupt) = (Gauge::<i64>::default(), Gauge::<i64>::default(), Gauge::<i64>::default());
    ctx.metrics.register("lightningstor_node_blocks", "Blocks held", blocks.clone());
    ctx.metrics.register("lightningstor_node_bytes", "Bytes of the blocks held", bytes.clone());
    ctx.metrics.register("lightningstor_node_corrupt_found", "Blocks found corrupt since start", corrupt.clone());
    let (store, shutdown) = (store.clone(), ctx.shutdown.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let (b, n, c) = store.counts();
            blocks.set(i64::try_from(b).unwrap_or(i64::MAX));
            bytes.set(i64::try_from(n).unwrap_or(i64::MAX));
            corrupt.set(i64::try_from(c).unwrap_or(i64::MAX));
        }
    });
}
