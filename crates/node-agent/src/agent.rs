//! `ultracloud node`: lock the node's data dir, start the admin listener, hand the assignment to
//! the supervisor and run until SIGTERM/SIGINT, then stop every service before exiting.

use std::path::Path;

use ultracloud_runtime::ServiceContext;
use ultracloud_runtime::config::ConfigError;
use ultracloud_runtime::service::StartError;

use crate::backoff::Backoff;
use crate::config::NodeConfig;
use crate::status::ServiceState;
use crate::supervisor::{SupervisorGone, SupervisorHandle};

/// Why the node agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration does not resolve to services.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data dir or admin listener could not be taken.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The supervisor died (a bug).
    #[error(transparent)]
    Supervisor(#[from] SupervisorGone),
}

/// Runs the node agent until shutdown. `available` lists the service subcommands of `self_exe`.
pub fn run<'a>(
    config: NodeConfig,
    self_exe: &'a Path,
    available: &'a [&'a str],
) -> ultracloud_runtime::Entry<'a, Result<(), NodeError>> {
    Box::pin(supervise(config, self_exe, available))
}

async fn supervise(config: NodeConfig, self_exe: &Path, available: &[&str]) -> Result<(), NodeError> {
    let specs = config.assignment(self_exe, available)?;
    let ctx = ServiceContext::start("node", &config.data_dir)?;
    let supervisor = SupervisorHandle::spawn(config.logs_dir(), Backoff::default());

    let ready = supervisor.clone();
    ctx.readiness.add("services-running", move || {
        let supervisor = ready.clone();
        async move {
            let services = supervisor.status().await.map_err(|e| e.to_string())?;
            let down: Vec<String> = services
                .iter()
                .filter(|s| s.state != ServiceState::Running)
                .map(|s| format!("{} is {}", s.name, s.state))
                .collect();
            if down.is_empty() { Ok(()) } else { Err(down.join(", ")) }
        }
    });
    let admin = ctx
        .start_admin(config.admin_listen, crate::server::routes(&config.name, supervisor.clone()))
        .await
        .map_err(StartError::from)?;

    tracing::info!(
        node = %config.name,
        data_dir = %config.data_dir.display(),
        admin = %admin.local_addr,
        services = ?specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        "node agent started"
    );
    supervisor.apply(specs).await?;
    ctx.shutdown.cancelled().await;
    tracing::info!("stopping all services");
    supervisor.shutdown().await?;
    let _ = admin.task.await;
    tracing::info!("node agent stopped");
    Ok(())
}
