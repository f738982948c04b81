//! `ultracloud flaredb`: run a node of the transactional database.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use ultracloud_flaredb::FlaredbConfig;
use ultracloud_runtime::service::ConfigFileArg;

/// Run a flaredb node: a range-sharded, replicated key-value store with snapshot-isolation
/// transactions. With no flags: a one-node cluster on 127.0.0.1:2479. Three nodes form a cluster
/// with the same `--initial-cluster`; more nodes join with `--join`.
#[derive(Debug, Args, Serialize)]
pub struct FlaredbArgs {
    #[command(flatten)]
    #[serde(skip)]
    file: ConfigFileArg,

    #[command(flatten)]
    #[serde(flatten)]
    tls: super::ca::TlsDirArg,

    /// Node name, unique in the cluster (the node ID derives from it) [default: default].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,

    /// Directory of the logs and data [default: /var/lib/ultracloud/flaredb as root].
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,

    /// Where the HTTP API (clients and peers) listens [default: 127.0.0.1:2479].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,

    /// host:port announced to others [default: the listen address].
    #[arg(long, value_name = "HOST:PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    advertise: Option<String>,

    /// Nodes forming a new cluster: name=host:port,… (same on every one) [default: this node].
    #[arg(long, value_name = "NODES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    initial_cluster: Option<String>,

    /// Join a running cluster through these nodes (host:port,…) instead of forming one.
    #[arg(long, value_name = "ADDRS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    join: Option<String>,

    /// Admin listener (/healthz, /readyz, /metrics, /version) [default: 127.0.0.1:9102].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<SocketAddr>,

    /// Replicas per region [default: 3].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    replication_factor: Option<usize>,

    /// Split a region above this many keys [default: 100000].
    #[arg(long, value_name = "KEYS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    region_split_keys: Option<u64>,

    /// Split a region above this many bytes [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    region_split_bytes: Option<u64>,

    /// Re-create a silent node's replicas elsewhere after this many ms [default: 30000].
    #[arg(long, value_name = "MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    node_down_after_ms: Option<u64>,

    /// Node heartbeat (and placement/split check) interval in ms [default: 1000].
    #[arg(long, value_name = "MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    heartbeat_ms: Option<u64>,
}

/// Runs the subcommand.
pub async fn run(args: FlaredbArgs) -> anyhow::Result<ExitCode> {
    let config: FlaredbConfig = ultracloud_runtime::config::load(args.file.config.as_deref(), &args)?;
    ultracloud_flaredb::service::run(config).await?;
    Ok(ExitCode::SUCCESS)
}
