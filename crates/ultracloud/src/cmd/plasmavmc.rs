//! `ultracloud plasmavmc` (the VM controller) and `ultracloud plasmavmc-agent`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use ultracloud_plasmavmc::service::{AgentConfig, PlasmavmcConfig};
use ultracloud_runtime::service::ConfigFileArg;

/// Run the plasmavmc controller: tenants' VMs, images and volumes (HTTP/JSON under
/// /v1/tenants/{tenant}/projects/{project}/…, guarded by iam), placement on workers, NICs from
/// prismnet, state in flaredb. Agents on the workers run the VMs.
#[derive(Debug, Args, Serialize)]
pub struct PlasmavmcArgs {
    #[command(flatten)]
    #[serde(skip)]
    file: ConfigFileArg,

    #[command(flatten)]
    #[serde(flatten)]
    tls: super::ca::TlsDirArg,
    /// Where the API listens [default: 127.0.0.1:8680].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    /// Admin listener [default: 127.0.0.1:9106].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<SocketAddr>,
    /// Data dir [default: /var/lib/ultracloud/plasmavmc as root].
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// flaredb nodes, host:port,… [default: 127.0.0.1:2479].
    #[arg(long, value_name = "ADDRS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    flaredb_endpoints: Option<String>,
    /// iam replicas, http://host:port,… [default: http://127.0.0.1:8480].
    #[arg(long, value_name = "URLS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    iam_endpoints: Option<String>,
    /// prismnet controller replicas, http://host:port,… [default: http://127.0.0.1:8580].
    #[arg(long, value_name = "URLS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    prismnet_endpoints: Option<String>,
    /// The platform service account's API key file [default: <data root>/iam/platform-api-key].
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key_file: Option<PathBuf>,

    #[command(flatten)]
    #[serde(skip)]
    images: ImageArgs,
}

/// Where tenants' images may come from (flags over `[image_policy]` of the config file).
#[derive(Debug, Args, Default)]
struct ImageArgs {
    /// A directory whose files `file://` image URLs may name (repeat for several); replaces
    /// the default, the guest image directory `ultracloud image build-guest` writes.
    #[arg(long, value_name = "DIR")]
    image_dir: Vec<PathBuf>,
    /// Let http(s) image URLs reach internal addresses (loopback, private, link-local);
    /// off by default, so a tenant's URL cannot reach into the platform's networks.
    #[arg(long)]
    allow_internal_image_urls: bool,
}

impl ImageArgs {
    fn apply(&self, policy: &mut ultracloud_plasmavmc::image_fetch::ImagePolicy) {
        if !self.image_dir.is_empty() {
            policy.file_dirs.clone_from(&self.image_dir);
        }
        policy.allow_internal_http |= self.allow_internal_image_urls;
    }
}

/// Runs `plasmavmc`.
pub async fn run(args: PlasmavmcArgs) -> anyhow::Result<ExitCode> {
    let mut config: PlasmavmcConfig = ultracloud_runtime::config::load(args.file.config.as_deref(), &args)?;
    args.images.apply(&mut config.image_policy);
    ultracloud_plasmavmc::service::run(config).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Run the plasmavmc agent of this worker: one QEMU per VM (KVM when it works, TCG otherwise),
/// driven to the controller's plan; VMs keep running across agent restarts.
#[derive(Debug, Args, Serialize)]
pub struct AgentArgs {
    #[command(flatten)]
    #[serde(skip)]
    file: ConfigFileArg,

    #[command(flatten)]
    #[serde(flatten)]
    tls: super::ca::TlsDirArg,
    /// This worker's name, the same as its prismnet agent's [default: the machine's host name].
    #[arg(long, value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    /// The controller replicas [default: http://127.0.0.1:8680].
    #[arg(long, value_name = "URLS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    controller: Option<String>,
    /// iam replicas, http://host:port,… [default: http://127.0.0.1:8480].
    #[arg(long, value_name = "URLS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    iam_endpoints: Option<String>,
    /// The platform service account's API key file.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key_file: Option<PathBuf>,
    /// The network namespace the worker's taps are in (QEMU runs there) [default: the agent's].
    #[arg(long, value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<String>,
    /// Disk-transfer listener for migrations [default: 127.0.0.1:8681].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    /// The URL other agents reach the transfer listener at [default: http://<listen>].
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    advertise_url: Option<String>,
    /// This worker's underlay address [default: 127.0.0.1].
    #[arg(long, value_name = "IP")]
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<Ipv4Addr>,
    /// Admin listener [default: 127.0.0.1:9107].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<SocketAddr>,
    /// Data dir [default: /var/lib/ultracloud/plasmavmc-agent as root].
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// auto (KVM when a guest really boots under it), kvm or tcg [default: auto].
    #[arg(long, value_name = "ACCEL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    accel: Option<String>,
    /// vCPUs offered to VMs [default: 4 per host CPU].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    vcpus: Option<u32>,
    /// Memory offered to VMs, MiB [default: 80% of the host's].
    #[arg(long, value_name = "MIB")]
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_mib: Option<u32>,

    #[command(flatten)]
    #[serde(skip)]
    images: ImageArgs,
}

/// Runs `plasmavmc-agent`.
pub async fn run_agent(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let mut config: AgentConfig = ultracloud_runtime::config::load(args.file.config.as_deref(), &args)?;
    args.images.apply(&mut config.image_policy);
    ultracloud_plasmavmc::service::run_agent(config).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(ExitCode::SUCCESS)
}
