//! `ultracloud plasmavmc` (the controller) and `ultracloud plasmavmc-agent` (one per worker).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use ultracloud_runtime::config::{ConfigError, Validate};

use crate::agent::qemu::probe_accel;
use crate::agent::volumes::LocalQcow2;
use crate::agent::{self, Worker};
use crate::image_fetch::ImagePolicy;
use crate::network::Prismnet;
use ultracloud_resource::setup::{default_key_file, read_key, split};

use crate::server::{self, Controller};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn urls_ok(field: &'static str, list: &str) -> Result<(), ConfigError> {
    let urls = split(list);
    if urls.is_empty() || urls.iter().any(|e| !e.starts_with("http://") && !e.starts_with("https://")) {
        return Err(ConfigError::invalid(field, list, "http://host:port,…"));
    }
    Ok(())
}

/// The controller's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlasmavmcConfig {
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
    /// prismnet controller replicas, `http://host:port,…`.
    pub prismnet_endpoints: String,
    /// The platform service account's API key file.
    pub api_key_file: PathBuf,
    /// Where tenants' images may come from (`file://` directories, internal addresses, size).
    pub image_policy: ImagePolicy,
    /// TLS directory (`ca.pem`, `cert.pem`, `key.pem` from `ultracloud ca issue`): the API
    /// speaks TLS, and flaredb, iam and prismnet are reached over TLS with this node's certificate.
    pub tls_dir: Option<PathBuf>,
    /// Days the project audit trail (`…/events`) keeps an event; `0` keeps them for ever.
    pub event_retention_days: u32,
}

impl Default for PlasmavmcConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8680)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9106)),
            data_dir: ultracloud_runtime::data_dir::default_root().join("plasmavmc"),
            flaredb_endpoints: "127.0.0.1:2479".into(),
            iam_endpoints: "http://127.0.0.1:8480".into(),
            prismnet_endpoints: "http://127.0.0.1:8580".into(),
            api_key_file: default_key_file(),
            image_policy: ImagePolicy::default(),
            tls_dir: None,
            event_retention_days: ultracloud_resource::audit::DEFAULT_RETENTION_DAYS,
        }
    }
}

impl Validate for PlasmavmcConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if split(&self.flaredb_endpoints).is_empty() {
            return Err(ConfigError::invalid("flaredb_endpoints", &self.flaredb_endpoints, "host:port,…"));
        }
        urls_ok("iam_endpoints", &self.iam_endpoints)?;
        urls_ok("prismnet_endpoints", &self.prismnet_endpoints)
    }
}

/// Runs the controller until SIGTERM/SIGINT.
pub fn run(config: PlasmavmcConfig) -> ultracloud_runtime::Entry<'static, Result<(), BoxError>> {
    Box::pin(serve(config))
}

async fn serve(config: PlasmavmcConfig) -> Result<(), BoxError> {
    let ctx = ultracloud_runtime::ServiceContext::start("plasmavmc", &config.data_dir)?;
    let tls = ultracloud_tls::setup(config.tls_dir.as_deref(), ultracloud_tls::ClientAuth::None)?;
    let listener = ultracloud_runtime::admin::bind(config.listen, "plasmavmc API").await?;
    let guard = ultracloud_iam::guard::Guard::connect(ultracloud_iam::guard::GuardConfig {
        endpoints: split(&config.iam_endpoints),
        api_key: read_key(&config.api_key_file)?,
    })?;
    let net = Prismnet::new(&config.prismnet_endpoints, guard.tokens().clone())?;
    let store = crate::records::store(ultracloud_flaredb::Client::new(split(&config.flaredb_endpoints))?);
    let ctl = Controller::new(store, net, config.image_policy.clone());
    tokio::spawn(ctl.clone().watch_versions(ctx.shutdown.clone()));
    ultracloud_resource::audit::spawn_expiry(ctl.store.clone(), config.event_retention_days, ctx.shutdown.clone());
    let probe = ctl.clone();
    ctx.readiness.add("flaredb", move || {
        let store = probe.store.clone();
        async move { store.version().await.map(|_| ()).map_err(|e| format!("flaredb: {e}")) }
    });
    let admin = ctx.start_admin(config.admin_listen, axum::Router::new()).await?;
    tracing::info!(api = %config.listen, admin = %admin.local_addr, "plasmavmc ready");
    ultracloud_tls::serve::serve_api(&ctx, listener, server::router(ctl, &guard), tls.as_ref()).await?;
    let _ = admin.task.await;
    Ok(())
}

/// The agent's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// This worker's name (the same as its prismnet agent's; default: the machine's host name).
    pub host: String,
    /// The controller replicas, `http://host:port,…`.
    pub controller: String,
    /// iam replicas, `http://host:port,…`.
    pub iam_endpoints: String,
    /// The platform service account's API key file.
    pub api_key_file: PathBuf,
    /// The network namespace the worker's taps live in (QEMU runs there); default: the agent's.
    pub netns: Option<String>,
    /// The disk-transfer listener other agents pull migrating disks from.
    pub listen: SocketAddr,
    /// The URL other agents reach that listener at (default: `http://<listen>`).
    pub advertise_url: Option<String>,
    /// The worker's underlay address.
    pub address: Ipv4Addr,
    /// Admin listener.
    pub admin_listen: SocketAddr,
    /// Data dir (VM disks and consoles, the image cache, volumes).
    pub data_dir: PathBuf,
    /// `qemu-system-x86_64` (default: found on PATH).
    pub qemu: Option<PathBuf>,
    /// `qemu-img` (default: found on PATH).
    pub qemu_img: Option<PathBuf>,
    /// `auto` (KVM when a guest boots under it, else TCG), `kvm` or `tcg`.
    pub accel: String,
    /// vCPUs offered to VMs (default: 4 per host CPU).
    pub vcpus: Option<u32>,
    /// Memory offered to VMs in MiB (default: 80 % of the host's).
    pub memory_mib: Option<u32>,
    /// Where images may be fetched from (the same rules as the controller's).
    pub image_policy: ImagePolicy,
    /// TLS directory (`ca.pem`, `cert.pem`, `key.pem` from `ultracloud ca issue`): the disk
    /// listener speaks TLS, and the controller and iam are reached over TLS.
    pub tls_dir: Option<PathBuf>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            host: std::fs::read_to_string("/etc/hostname")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into()),
            controller: "http://127.0.0.1:8680".into(),
            iam_endpoints: "http://127.0.0.1:8480".into(),
            api_key_file: default_key_file(),
            netns: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8681)),
            advertise_url: None,
            address: Ipv4Addr::LOCALHOST,
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9107)),
            data_dir: ultracloud_runtime::data_dir::default_root().join("plasmavmc-agent"),
            qemu: None,
            qemu_img: None,
            accel: "auto".into(),
            vcpus: None,
            memory_mib: None,
            image_policy: ImagePolicy::default(),
            tls_dir: None,
        }
    }
}

impl Validate for AgentConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.host.is_empty() || !self.host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err(ConfigError::invalid("host", &self.host, "letters, digits, dashes, dots"));
        }
        urls_ok("controller", &self.controller)?;
        urls_ok("iam_endpoints", &self.iam_endpoints)?;
        if !["auto", "kvm", "tcg"].contains(&self.accel.as_str()) {
            return Err(ConfigError::invalid("accel", &self.accel, "auto, kvm or tcg"));
        }
        if self.vcpus == Some(0) || self.memory_mib == Some(0) {
            return Err(ConfigError::invalid("vcpus/memory_mib", "0", "a positive number"));
        }
        Ok(())
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|c| c.is_file()))
        .unwrap_or(None)
        .or_else(|| {
            ["/usr/bin", "/usr/sbin", "/usr/local/bin"].iter().map(|d| Path::new(d).join(name)).find(|c| c.is_file())
        })
}

fn host_memory_mib() -> u32 {
    let total_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(1 << 20);
    u32::try_from(total_kib / 1024 * 8 / 10).unwrap_or(u32::MAX)
}

/// Runs the agent until SIGTERM/SIGINT.
pub fn run_agent(config: AgentConfig) -> ultracloud_runtime::Entry<'static, Result<(), BoxError>> {
    Box::pin(serve_agent(config))
}

async fn serve_agent(config: AgentConfig) -> Result<(), BoxError> {
    let ctx = ultracloud_runtime::ServiceContext::start("plasmavmc-agent", &config.data_dir)?;
    let tls = ultracloud_tls::setup(config.tls_dir.as_deref(), ultracloud_tls::ClientAuth::None)?;
    let qemu = config.qemu.clone().or_else(|| find_on_path("qemu-system-x86_64")).ok_or(
        "qemu-system-x86_64 not found (install Debian's qemu-system-x86, or run `ultracloud doctor --install`)",
    )?;
    let qemu_img = config
        .qemu_img
        .clone()
        .or_else(|| find_on_path("qemu-img"))
        .ok_or("qemu-img not found (install Debian's qemu-utils)")?;
    let kernel = ultracloud_doctor::guest_kernel(&ultracloud_doctor::default_cache_dir()).map(|k| k.vmlinuz);
    let (q, accel_setting) = (qemu.clone(), config.accel.clone());
    let (accel, why) = tokio::task::spawn_blocking(move || probe_accel(&accel_setting, &q, kernel.as_deref())).await?;
    tracing::info!(accel = accel.as_str(), reason = %why, "accelerator chosen");
    let listener = ultracloud_runtime::admin::bind(config.listen, "plasmavmc agent transfer API").await?;
    let guard = ultracloud_iam::guard::Guard::connect(ultracloud_iam::guard::GuardConfig {
        endpoints: split(&config.iam_endpoints),
        api_key: read_key(&config.api_key_file)?,
    })?;
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let data_dir = ctx.data_dir().path().to_path_buf();
    let migration_tls = match ultracloud_tls::client::holder() {
        Some(tls) => Some(agent::migration_tls::MigrationTls::write(tls, &data_dir.join("qemu-tls"))?),
        None => None,
    };
    let worker = Arc::new(Worker {
        name: config.host.clone(),
        netns: config.netns.clone(),
        qemu,
        qemu_img: qemu_img.clone(),
        accel,
        vcpus: config.vcpus.unwrap_or_else(|| u32::try_from(cpus * 4).unwrap_or(4)),
        memory_mib: config.memory_mib.unwrap_or_else(host_memory_mib),
        address: config.address,
        agent_url: config.advertise_url.clone().unwrap_or_else(|| {
            let addr = listener.local_addr().map_or(config.listen, |a| a);
            format!("{}://{addr}", ultracloud_tls::client::scheme())
        }),
        volumes: LocalQcow2 { dir: data_dir.join("volumes"), qemu_img },
        data_dir,
        outgoing: Default::default(),
        images: config.image_policy.clone(),
        migration_tls,
    });
    let ctl = agent::Controller::new(&config.controller, guard.tokens().clone())?;
    let ready = Arc::new(AtomicBool::new(false));
    let probe = ready.clone();
    ctx.readiness.add("registered", move || {
        let ok = probe.load(Ordering::Relaxed);
        async move { if ok { Ok(()) } else { Err("not registered with the controller yet".to_owned()) } }
    });
    let admin = ctx.start_admin(config.admin_listen, axum::Router::new()).await?;
    tracing::info!(host = %worker.name, admin = %admin.local_addr, "plasmavmc agent running");
    let api = tokio::spawn({
        let router = agent::transfer::router(worker.clone(), &guard);
        let shutdown = ctx.shutdown.clone();
        let config = tls.map(|t| t.config);
        async move {
            let _ = ultracloud_tls::serve::serve_maybe_tls(listener, router, config, shutdown).await;
        }
    });
    agent::run(worker, ctl, ready, ctx.shutdown.clone()).await;
    let _ = api.await;
    let _ = admin.task.await;
    Ok(())
}
