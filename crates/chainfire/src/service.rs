//! `ultracloud chainfire`: one member as a foreground service with the runtime's admin surface.

use ultracloud_runtime::ServiceContext;
use ultracloud_runtime::service::StartError as RuntimeStartError;

use crate::config::ChainfireConfig;
use crate::server::{self, StartError};

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The runtime (data dir, admin listener) could not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeStartError),
    /// The member could not start.
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Runs a member until SIGTERM/SIGINT.
pub fn run(config: ChainfireConfig) -> ultracloud_runtime::Entry<'static, Result<(), ServiceError>> {
    Box::pin(serve(config))
}

async fn serve(config: ChainfireConfig) -> Result<(), ServiceError> {
    let ctx = ServiceContext::start("chainfire", &config.data_dir)?;
    // etcd serves health and metrics on its client URLs; so does chainfire.
    let http = ultracloud_runtime::admin::routes("chainfire", &ctx.metrics, &ctx.readiness);
    let running = server::start(config.clone(), ctx.data_dir().path(), ctx.shutdown.clone(), http).await?;
    let node = running.node.clone();
    ctx.readiness.add("raft-leader", move || {
        let leader = node.leader();
        async move { leader.map(|_| ()).ok_or_else(|| "no raft leader known".to_owned()) }
    });
    register_metrics(&ctx, running.node.clone());
    // A separate admin listener only when asked for (etcd's --listen-metrics-urls).
    let admin = match config.admin_listen {
        Some(addr) => Some(ctx.start_admin(addr, axum::Router::new()).await.map_err(RuntimeStartError::from)?),
        None => None,
    };
    tracing::info!(client = ?running.client_addrs, admin = ?admin.as_ref().map(|a| a.local_addr), "chainfire ready for clients");
    ctx.shutdown.cancelled().await;
    running.wait().await;
    if let Some(admin) = admin {
        let _ = admin.task.await;
    }
    Ok(())
}

fn register_metrics(ctx: &ServiceContext, node: std::sync::Arc<crate::node::Node>) {
    use prometheus_client::metrics::gauge::Gauge;
    // Gauges refreshed from Raft metrics by a small task: cheaper than a custom collector.
    let term = Gauge::<i64>::default();
    let applied = Gauge::<i64>::default();
    let leader = Gauge::<i64>::default();
    let revision = Gauge::<i64>::default();
    ctx.metrics.register("chainfire_raft_term", "Current Raft term", term.clone());
    ctx.metrics.register("chainfire_raft_applied_index", "Last applied Raft log index", applied.clone());
    ctx.metrics.register("chainfire_is_leader", "1 when this member leads", leader.clone());
    ctx.metrics.register("chainfire_revision", "Current store revision", revision.clone());
    let shutdown = ctx.shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let m = node.raft.metrics().borrow().clone();
            term.set(m.current_term as i64);
            applied.set(m.last_applied.map_or(0, |l| l.index as i64));
            leader.set(i64::from(node.is_leader()));
            revision.set(node.mvcc.revisions().map(|r| r.current).unwrap_or(0));
        }
    });
}
