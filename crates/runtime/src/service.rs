//! [`ServiceContext`]: what a service's `main` gets from the runtime — its locked data dir,
//! metrics, readiness checks and shutdown token — and the flags every service shares.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, ListenError};
use crate::data_dir::{DataDir, DataDirError};
use crate::error::route_not_found;
use crate::metrics::{HttpTracking, Metrics, track_http};
use crate::readiness::Readiness;

/// A service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data dir is unusable or taken.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// A listener could not be bound.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
}

/// The running frame of one service process.
#[derive(Debug)]
pub struct ServiceContext {
    name: String,
    data_dir: DataDir,
    /// The process's metrics; register service metrics here.
    pub metrics: Metrics,
    /// Readiness checks answered on `/readyz`.
    pub readiness: Readiness,
    /// Cancelled on SIGTERM/SIGINT (or by the service itself to stop).
    pub shutdown: CancellationToken,
}

impl ServiceContext {
    /// Locks `data_dir` and installs the shutdown signal handlers. Call inside a tokio runtime.
    pub fn start(name: &str, data_dir: &Path) -> Result<Self, StartError> {
        let data_dir = DataDir::lock(data_dir)?;
        let shutdown = crate::shutdown::on_signals().map_err(StartError::Signals)?;
        Ok(Self::with_parts(name, data_dir, shutdown))
    }

    /// A context from parts, for tests that run several services in one process.
    pub fn with_parts(name: &str, data_dir: DataDir, shutdown: CancellationToken) -> Self {
        Self { name: name.to_owned(), data_dir, metrics: Metrics::new(name), readiness: Readiness::default(), shutdown }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The locked data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.data_dir
    }

    /// Binds the admin listener at `addr` and serves it (plus `extra` routes) in the background
    /// until shutdown. Binding happens before this returns, so a taken port fails the start.
    pub async fn start_admin(&self, addr: SocketAddr, extra: Router) -> Result<AdminHandle, ListenError> {
        let listener = admin::bind(addr, &format!("{} admin API", self.name)).await?;
        let local_addr = listener.local_addr().unwrap_or(addr);
        let router = admin::router(&self.name, &self.metrics, &self.readiness, extra);
        let task = tokio::spawn(admin::serve(listener, router, self.shutdown.clone()));
        tracing::info!(service = %self.name, addr = %local_addr, "admin listener ready");
        Ok(AdminHandle { local_addr, task })
    }

    /// Wraps a service's public API router with the JSON 404 fallback and request metrics.
    pub fn api_router(&self, router: Router) -> Router {
        router.fallback(route_not_found).layer(axum::middleware::from_fn_with_state(
            HttpTracking { metrics: self.metrics.clone(), listener: "api" },
            track_http,
        ))
    }

    /// Serves an API router on an already bound listener until shutdown.
    pub async fn serve_api(&self, listener: TcpListener, router: Router) -> std::io::Result<()> {
        admin::serve(listener, self.api_router(router), self.shutdown.clone()).await
    }
}

/// The admin listener running in the background.
#[derive(Debug)]
pub struct AdminHandle {
    /// Where it listens (useful when bound to port 0).
    pub local_addr: SocketAddr,
    /// The serving task; finishes after shutdown.
    pub task: JoinHandle<std::io::Result<()>>,
}

/// The `--config FILE` flag every service subcommand has.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigFileArg {
    /// TOML config file (keys as the long flags, with `_`). Precedence: defaults < file <
    /// ULTRACLOUD_* env < flags.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}
