//! `ultracloud node` and `ultracloud node status`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use ultracloud_node_agent::config::NodeConfig;
use ultracloud_node_agent::roles::Role;
use ultracloud_runtime::service::ConfigFileArg;

/// `ultracloud node`: run the node agent, or query one.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct NodeArgs {
    #[command(subcommand)]
    command: Option<NodeCommand>,

    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Show the state of every service of a running node agent.
    Status(StatusArgs),
}

/// Flags of the node agent; each overrides the config file and ULTRACLOUD_* environment.
#[derive(Debug, Args, Serialize)]
struct RunArgs {
    #[command(flatten)]
    #[serde(skip)]
    file: ConfigFileArg,

    /// Node name [default: the host name].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,

    /// Root of the node's state [default: /var/lib/ultracloud as root].
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,

    /// Admin listener (/healthz, /readyz, /metrics, /version, /status) [default: 127.0.0.1:9100].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<SocketAddr>,

    /// A role of this node (repeatable); replaces the roles of the config file.
    #[arg(long = "role", value_enum, value_name = "ROLE")]
    #[serde(rename = "roles", skip_serializing_if = "Vec::is_empty")]
    roles: Vec<Role>,
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// Admin address of the node agent [default: admin_listen of --config, else 127.0.0.1:9100].
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,

    /// Read the admin address from this node config.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub async fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(NodeCommand::Status(status)) => show_status(status).await,
        None => run_agent(args.run).await,
    }
}

async fn run_agent(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config: NodeConfig = ultracloud_runtime::config::load(args.file.config.as_deref(), &args)?;
    let self_exe = std::env::current_exe().context("cannot locate the ultracloud binary to run services")?;
    ultracloud_node_agent::agent::run(config, &self_exe, crate::SERVICES).await?;
    Ok(ExitCode::SUCCESS)
}

async fn show_status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let addr = match (args.admin, &args.config) {
        (Some(addr), _) => addr,
        (None, Some(path)) => {
            #[derive(Serialize)]
            struct NoFlags {}
            let config: NodeConfig = ultracloud_runtime::config::load(Some(path), &NoFlags {})?;
            config.admin_listen
        }
        (None, None) => ultracloud_node_agent::config::DEFAULT_ADMIN_LISTEN.parse()?,
    };
    let status = ultracloud_node_agent::client::fetch_status(addr).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status.render_table());
    }
    Ok(ExitCode::SUCCESS)
}
