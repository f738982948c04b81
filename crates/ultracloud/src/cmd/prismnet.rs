//! `ultracloud prismnet` (the networking controller) and `ultracloud prismnet-agent`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use ultracloud_prismnet::service::{AgentConfig, PrismnetConfig};
use ultracloud_runtime::service::ConfigFileArg;

/// Run the prismnet controller: tenants' VPCs, subnets, routers, security groups, ports and
/// service IPs (HTTP/JSON under /v1/tenants/{tenant}/projects/{project}/…, guarded by iam),
/// with state in flaredb. Agents on the workers realise it.
#[derive(Debug, Args, Serialize)]
pub struct PrismnetArgs {
    #[command(flatten)]
    #[serde(skip)]
    file: ConfigFileArg,

    #[command(flatten)]
    #[serde(flatten)]
    tls: super::ca::TlsDirArg,
    /// Where the API listens [default: 127.0.0.1:8580].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    /// Admin listener [default: 127.0.0.1:9104].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<SocketAddr>,
    /// Data dir [default: /var/lib/ultracloud/prismnet as root].
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
    /// The platform service account's API key file [default: <data root>/iam/platform-api-key].
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key_file: Option<PathBuf>,
}

/// Runs `prismnet`.
pub async fn run(args: PrismnetArgs) -> anyhow::Result<ExitCode> {
    let config: PrismnetConfig = ultracloud_runtime::config::load(args.file.config.as_deref(), &args)?;
    ultracloud_prismnet::service::run(config).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Run the prismnet agent of this worker: reconcile bridges, VXLAN, DHCP servers, port
/// devices and nftables rules to the controller's plan for this host.
#[derive(Debug, Args, Serialize)]
pub struct AgentArgs {
    #[command(flatten)]
    #[serde(skip)]
    file: ConfigFileArg,

    #[command(flatten)]
    #[serde(flatten)]
    tls: super::ca::TlsDirArg,
    /// This host's name (ports are bound to it) [default: the machine's host name].
    #[arg(long, value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    /// The controller [default: http://127.0.0.1:8580].
    #[arg(long, value_name = "URL")]
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
    /// This host's underlay address (VXLAN) [default: 127.0.0.1].
    #[arg(long, value_name = "IP")]
    #[serde(skip_serializing_if = "Option::is_none")]
    underlay_ip: Option<Ipv4Addr>,
    /// Manage this network namespace instead of the agent's own [default: its own].
    #[arg(long, value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<String>,
    /// The underlay device [default: lo].
    #[arg(long, value_name = "DEV")]
    #[serde(skip_serializing_if = "Option::is_none")]
    underlay_dev: Option<String>,
    /// Admin listener [default: 127.0.0.1:9105].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<SocketAddr>,
    /// Data dir [default: /var/lib/ultracloud/prismnet-agent as root].
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
}

/// Runs `prismnet-agent`.
pub async fn run_agent(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let config: AgentConfig = ultracloud_runtime::config::load(args.file.config.as_deref(), &args)?;
    ultracloud_prismnet::service::run_agent(config).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(ExitCode::SUCCESS)
}
