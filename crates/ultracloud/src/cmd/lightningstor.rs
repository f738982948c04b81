//! `ultracloud lightningstor` (the S3 gateway) and `ultracloud lightningstor-node` (a storage
//! node of the object store).

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
    /// Seconds between scrubs, which read every block and set rotten ones aside for the
    /// repair to restore; 0: only on request (POST /v1/scrub) [default: 604800, a week].
    #[arg(long, value_name = "SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    scrub_interval_s: Option<u64>,
}

/// Runs `lightningstor-node`.
pub async fn run_node(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let config: NodeConfig = ultracloud_runtime::config::load(args.file.config.as_deref(), &args)?;
    ultracloud_lightningstor::service::run(config).await?;
    Ok(ExitCode::SUCCESS)
}

/// Run a lightningstor S3 gateway: the S3 REST API (SigV4, presigned URLs, aws-chunked uploads)
/// over metadata in flaredb and blocks on the storage nodes. Stateless: run any number behind
/// any address. Access keys come from iam (`ultracloud s3 credentials create`); the gateway's own
/// service account needs the `object-gateway` role platform-wide.
#[derive(Debug, Args, Serialize)]
pub struct GatewayArgs {
    #[command(flatten)]
    #[serde(skip)]
    file: ConfigFileArg,

    #[command(flatten)]
    #[serde(flatten)]
    tls: super::ca::TlsDirArg,
    /// The runtime's directory (a lock; no state) [default: /var/lib/ultracloud/lightningstor as root].
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Where S3 listens [default: 127.0.0.1:8790].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    /// Admin listener [default: 127.0.0.1:9109].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<SocketAddr>,
    /// flaredb nodes, host:port,… [default: 127.0.0.1:2479].
    #[arg(long, value_name = "ADDRS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    flaredb_endpoints: Option<String>,
    /// iam replicas, http(s)://host:port,… [default: http://127.0.0.1:8480].
    #[arg(long, value_name = "URLS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    iam_endpoints: Option<String>,
    /// The gateway service account's API key file (role object-gateway, platform-wide)
    /// [default: /var/lib/ultracloud/iam/s3-gateway-api-key as root].
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key_file: Option<PathBuf>,
    /// The storage nodes: name=URL,… [default: default=http://127.0.0.1:8780].
    #[arg(long, value_name = "NODES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<String>,
    /// Copies of each block, fewer when fewer nodes exist [default: 3].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    replication: Option<usize>,
    /// Block size in bytes, at most the nodes' --max-block-bytes [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    block_bytes: Option<usize>,
    /// Also address buckets as BUCKET.DOMAIN (virtual-host style).
    #[arg(long, value_name = "DOMAIN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
    /// Seconds between garbage-collection passes, which delete blocks no object references
    /// (one gateway at a time runs one); 0: never [default: 3600].
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    gc_interval_secs: Option<u64>,
    /// Garbage collection keeps unreferenced blocks younger than this: longer than the longest
    /// PUT, at least 60 [default: 3600].
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    gc_grace_secs: Option<u64>,
}

/// Runs `lightningstor` (the gateway).
pub async fn run_gateway(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let config: ultracloud_lightningstor::gateway::GatewayConfig =
        ultracloud_runtime::config::load(args.file.config.as_deref(), &args)?;
    ultracloud_lightningstor::gateway::service::run(config).await?;
    Ok(ExitCode::SUCCESS)
}
