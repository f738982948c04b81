//! `ultracloud lightningstor-node`: a storage node of the object store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use ultracloud_lightningstor::NodeConfig;
use ultracloud_runtime::service::ConfigFileArg;

/// Run a lightningstor storage node: a durable, checksummed home for content-addressed blocks
/// (PUT/GET/HEAD/DELETE /v1/blocks/{sha256}, listing, status, scrub). Gateways place each
/// block on several nodes; every route is platform-only.
#[derive(Debug, Args, Serialize)]
pub struct NodeArgs {
    #[command(flatten)]
    #[serde(skip)]
    file: ConfigFileArg,

    #[command(flatten)]
    #[serde(flatten)]
    tls: super::ca::TlsDirArg,
    /// The node's name in the layout (stable; a new disk is a new name) [default: default].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Where the blocks live [default: /var/lib/ultracloud/lightningstor-node as root].
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Where the block API listens [default: 127.0.0.1:8780].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    /// Admin listener [default: 127.0.0.1:9108].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<SocketAddr>,
    /// fsync each block before acknowledging it [default: true; false only for benchmarks].
    #[arg(long, value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    fsync: Option<bool>,
    /// The largest block accepted, in bytes [default: 8388608].
    #[arg(long, value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_block_bytes: Option<usize>,
    /// Every storage node, this one included: name=URL,… (enables the repair worker).
    #[arg(long, value_name = "NODES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    peers: Option<String>,
    /// Copies of each block the repair worker keeps [default: 3].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    replication: Option<usize>,
    /// Seconds between repair passes [default: 60].
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    repair_interval_s: Option<u64>,
}

/// Runs `lightningstor-node`.
pub async fn run_node(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let config: NodeConfig = ultracloud_runtime::config::load(args.file.config.as_deref(), &args)?;
    ultracloud_lightningstor::service::run(config).await?;
    Ok(ExitCode::SUCCESS)
}
