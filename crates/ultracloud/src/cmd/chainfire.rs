//! `ultracloud chainfire`: the coordination store, with etcd's flag names.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use ultracloud_chainfire::ChainfireConfig;
use ultracloud_chainfire::config::ClusterState;
use ultracloud_runtime::service::ConfigFileArg;

/// Run a chainfire member: a replicated key-value store speaking the etcd v3 API (etcdctl and
/// every etcd client work with it). With no flags: a one-member cluster on 127.0.0.1:2379.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ChainfireArgs {
    #[command(subcommand)]
    command: Option<ChainfireCommand>,

    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Subcommand)]
enum ChainfireCommand {
    /// Restore a backup (`etcdctl snapshot save`) into an empty data dir; then start the member
    /// with `--initial-cluster-state new` (every member of the new cluster restores the same file).
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The new member's data dir (must not hold chainfire state).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
}

/// Flags of a running member.
#[derive(Debug, Args, Serialize)]
struct RunArgs {
    #[command(flatten)]
    #[serde(skip)]
    file: ConfigFileArg,

    #[command(flatten)]
    #[serde(flatten)]
    tls: super::ca::TlsDirArg,

    /// Human-readable name of this member [default: default].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,

    /// Directory of the store [default: /var/lib/ultracloud/chainfire as root].
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,

    /// URLs to serve clients on, comma-separated [default: http://127.0.0.1:2379].
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    listen_client_urls: Vec<String>,

    /// Client URLs to announce to the cluster [default: the listen URLs].
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    advertise_client_urls: Vec<String>,

    /// URLs to serve peers on [default: http://127.0.0.1:2380].
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    listen_peer_urls: Vec<String>,

    /// Peer URLs to announce to the cluster [default: the listen peer URLs].
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    initial_advertise_peer_urls: Vec<String>,

    /// Initial members: name=http://host:port,… [default: this member alone].
    #[arg(long, value_name = "MEMBERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    initial_cluster: Option<String>,

    /// `new` to form a cluster; `existing` to join one after `etcdctl member add`.
    #[arg(long, value_enum, value_name = "STATE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    initial_cluster_state: Option<ClusterState>,

    /// Token distinguishing clusters formed from the same member list.
    #[arg(long, value_name = "TOKEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    initial_cluster_token: Option<String>,

    /// A separate admin listener (/healthz, /readyz, /metrics, /version), like etcd's
    /// --listen-metrics-urls [default: none; those routes and etcd's /health are served on the
    /// client URLs].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<SocketAddr>,

    /// Largest accepted request in bytes [default: 1572864].
    #[arg(long, value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_request_bytes: Option<usize>,

    /// Raft heartbeat interval in ms [default: 100].
    #[arg(long = "heartbeat-interval", value_name = "MS")]
    #[serde(rename = "heartbeat_interval_ms", skip_serializing_if = "Option::is_none")]
    heartbeat_interval: Option<u64>,

    /// Raft election timeout in ms [default: 1000].
    #[arg(long = "election-timeout", value_name = "MS")]
    #[serde(rename = "election_timeout_ms", skip_serializing_if = "Option::is_none")]
    election_timeout: Option<u64>,

    /// Applied entries between snapshots [default: 10000].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot_count: Option<u64>,
}

/// Runs the subcommand.
pub async fn run(args: ChainfireArgs) -> anyhow::Result<ExitCode> {
    if let Some(ChainfireCommand::Restore { file, data_dir }) = args.command {
        let revs = ultracloud_chainfire::backup::restore(&file, &data_dir)?;
        println!(
            "restored {} into {} (revision {}, compacted at {}); start the member with --initial-cluster-state new",
            file.display(),
            data_dir.display(),
            revs.current,
            revs.compacted
        );
        return Ok(ExitCode::SUCCESS);
    }
    let args = args.run;
    let config: ChainfireConfig = ultracloud_runtime::config::load(args.file.config.as_deref(), &args)?;
    ultracloud_chainfire::service::run(config).await?;
    Ok(ExitCode::SUCCESS)
}
