//! `ultracloud prismnet` (the controller) and `ultracloud prismnet-agent` (one per worker).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use ultracloud_runtime::config::{ConfigError, Validate};

use crate::agent::{self, AgentHost};
use crate::client::Prismnet;
use crate::server::{self, Controller};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub use ultracloud_resource::setup::{default_key_file, read_key, split};

/// The controller's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrismnetConfig {
    /// API listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin_listen: SocketAddr,
    /// Data dir (holds only the lock; state is in flaredb).
    pub data_dir: PathBuf,
    /// flaredb nodes, `host:port,…`.
    pub flaredb_endpoints: String,
    /// iam replicas, `http://host:port,…`.
    pub iam_endpoints: String,
    /// The platform service account's API key file.
    pub api_key_file: PathBuf,
    /// TLS directory (`ca.pem`, `cert.pem`, `key.pem` from `ultracloud ca issue`): the API
    /// speaks TLS, and flaredb and iam are reached over TLS with this node's certificate.
    pub tls_dir: Option<PathBuf>,
    /// Days the project audit trail (`…/events`) keeps an event; `0` keeps them for ever.
    pub event_retention_days: u32,
}

impl Default for PrismnetConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8580)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9104)),
            data_dir: ultracloud_runtime::data_dir::default_root().join("prismnet"),
            flaredb_endpoints: "127.0.0.1:2479".into(),
            iam_endpoints: "http://127.0.0.1:8480".into(),
            api_key_file: default_key_file(),
            tls_dir: None,
            event_retention_days: ultracloud_resource::audit::DEFAULT_RETENTION_DAYS,
        }
    }
}

impl Validate for PrismnetConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if split(&self.flaredb_endpoints).is_empty() {
            return Err(ConfigError::invalid("flaredb_endpoints", &self.flaredb_endpoints, "host:port,…"));
        }
        if split(&self.iam_endpoints).iter().any(|e| !e.starts_with("http://") && !e.starts_with("https://")) {
            return Err(ConfigError::invalid("iam_endpoints", &self.iam_endpoints, "http://host:port,…"));
        }
        Ok(())
    }
}

/// Runs the controller until SIGTERM/SIGINT.
pub fn run(config: PrismnetConfig) -> ultracloud_runtime::Entry<'static, Result<(), BoxError>> {
    Box::pin(serve(config))
}

async fn serve(config: PrismnetConfig) -> Result<(), BoxError> {
    let ctx = ultracloud_runtime::ServiceContext::start("prismnet", &config.data_dir)?;
    let tls = ultracloud_tls::setup(config.tls_dir.as_deref(), ultracloud_tls::ClientAuth::None)?;
    let listener = ultracloud_runtime::admin::bind(config.listen, "prismnet API").await?;
    let guard = ultracloud_iam::guard::Guard::connect(ultracloud_iam::guard::GuardConfig {
        endpoints: split(&config.iam_endpoints),
        api_key: read_key(&config.api_key_file)?,
    })?;
    let store = crate::store::open(ultracloud_flaredb::Client::new(split(&config.flaredb_endpoints))?);
    let ctl = Controller::new(store);
    tokio::spawn(ctl.clone().watch_versions(ctx.shutdown.clone()));
    ultracloud_resource::audit::spawn_expiry(ctl.store.clone(), config.event_retention_days, ctx.shutdown.clone());
    let probe = ctl.clone();
    ctx.readiness.add("flaredb", move || {
        let store = probe.store.clone();
        async move { store.version().await.map(|_| ()).map_err(|e| format!("flaredb: {e}")) }
    });
    let admin = ctx.start_admin(config.admin_listen, axum::Router::new()).await?;
    tracing::info!(api = %config.listen, admin = %admin.local_addr, "prismnet ready");
    ultracloud_tls::serve::serve_api(&ctx, listener, server::router(ctl, &guard), tls.as_ref()).await?;
    let _ = admin.task.await;
    Ok(())
}

/// The agent's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// This host's name (ports are bound to it; default: the machine's host name).
    pub host: String,
    /// The controller replicas, `http://host:port,…`.
    pub controller: String,
    /// iam replicas, `http://host:port,…`.
    pub iam_endpoints: String,
    /// The platform service account's API key file.
    pub api_key_file: PathBuf,
    /// The underlay address VXLAN uses.
    pub underlay_ip: Ipv4Addr,
    /// The underlay device.
    pub underlay_dev: String,
    /// Manage this network namespace instead of the agent's own.
    pub netns: Option<String>,
    /// Admin listener.
    pub admin_listen: SocketAddr,
    /// Data dir (DHCP server files, the applied ruleset).
    pub data_dir: PathBuf,
    /// TLS directory (`ca.pem`, `cert.pem`, `key.pem` from `ultracloud ca issue`): the
    /// controller and iam are reached over TLS.
    pub tls_dir: Option<PathBuf>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            host: std::fs::read_to_string("/etc/hostname")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into()),
            controller: "http://127.0.0.1:8580".into(),
            iam_endpoints: "http://127.0.0.1:8480".into(),
            api_key_file: default_key_file(),
            underlay_ip: Ipv4Addr::LOCALHOST,
            underlay_dev: "lo".into(),
            netns: None,
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9105)),
            data_dir: ultracloud_runtime::data_dir::default_root().join("prismnet-agent"),
            tls_dir: None,
        }
    }
}

impl Validate for AgentConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.host.is_empty() || !self.host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err(ConfigError::invalid("host", &self.host, "letters, digits, dashes, dots"));
        }
        if split(&self.controller).is_empty()
            || split(&self.controller).iter().any(|c| !c.starts_with("http://") && !c.starts_with("https://"))
        {
            return Err(ConfigError::invalid("controller", &self.controller, "http://host:port,…"));
        }
        if self.underlay_dev.is_empty() || self.underlay_dev.len() > 15 {
            return Err(ConfigError::invalid("underlay_dev", &self.underlay_dev, "an interface name"));
        }
        Ok(())
    }
}

/// Runs the agent until SIGTERM/SIGINT.
pub fn run_agent(config: AgentConfig) -> ultracloud_runtime::Entry<'static, Result<(), BoxError>> {
    Box::pin(serve_agent(config))
}

async fn serve_agent(config: AgentConfig) -> Result<(), BoxError> {
    let ctx = ultracloud_runtime::ServiceContext::start("prismnet-agent", &config.data_dir)?;
    // The agent serves nothing but its admin listener; TLS is for its clients.
    ultracloud_tls::setup(config.tls_dir.as_deref(), ultracloud_tls::ClientAuth::None)?;
    let tokens =
        ultracloud_iam::guard::TokenSource::new(split(&config.iam_endpoints), read_key(&config.api_key_file)?)?;
    let host = AgentHost {
        name: config.host.clone(),
        underlay_ip: config.underlay_ip,
        underlay_dev: config.underlay_dev.clone(),
        netns: config.netns.clone(),
        state_dir: ctx.data_dir().path().to_path_buf(),
    };
    let ready = Arc::new(AtomicBool::new(false));
    let probe = ready.clone();
    ctx.readiness.add("reconciled", move || {
        let ok = probe.load(Ordering::Relaxed);
        async move { if ok { Ok(()) } else { Err("the host does not match its plan yet".to_owned()) } }
    });
    let admin = ctx.start_admin(config.admin_listen, axum::Router::new()).await?;
    tracing::info!(host = %host.name, admin = %admin.local_addr, "prismnet agent running");
    let controller = Prismnet::new(tokens.client(Prismnet::SERVICE, &split(&config.controller))?);
    agent::run(host, controller, ready, ctx.shutdown.clone()).await;
    let _ = admin.task.await;
    Ok(())
}
