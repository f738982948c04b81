//! `ultracloud cluster`: the six-node test cluster on this machine (network namespaces).

use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ultracloud_harness::lab::{Lab, Progress};

/// The multi-node test cluster: six hardware-like nodes made of network namespaces on this
/// machine (node01–03 control plane, node04–05 workers, node06 gateway) on a private lab
/// network 10.231.0.0/24, state under ${ULTRACLOUD_LAB_DIR:-~/.ultracloud-test-cluster}. Needs
/// root. Nothing is routed off the machine. See docs/test-cluster.md.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Check the cluster definition and the host's prerequisites; changes nothing.
    Validate {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build the release binary on the host (once) and install it as the nodes' binary.
    Build {
        #[command(flatten)]
        source: SourceArg,
    },
    /// Create the lab network and start every node, in dependency order, waiting for readiness.
    Start,
    /// Nodes, services, state, pid, restarts and health.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a node's log: its node agent (default) or one service's.
    Logs {
        /// node01 … node06.
        node: String,
        /// agent, chainfire, flaredb, iam, …
        #[arg(default_value = "agent")]
        service: String,
        /// Keep printing what is appended (Ctrl-C to stop).
        #[arg(long, short)]
        follow: bool,
    },
    /// Open a shell inside a node's namespace, or run a command there.
    Ssh {
        /// node01 … node06.
        node: String,
        /// The command (default: $SHELL).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Run the checks against the running cluster (PASS/FAIL per check; non-zero on failure).
    Smoke {
        /// Print a JSON report instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// clean, build, start, smoke.
    FreshSmoke {
        /// Print a JSON report instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        source: SourceArg,
    },
    /// Stop every process of the cluster; keep its state and network.
    Stop,
    /// Stop everything and remove namespaces, links and state (also after a harness crash).
    Clean,
    /// GET URLs and print their status (the harness runs this inside nodes).
    #[command(hide = true)]
    Probe {
        /// A TLS directory whose certificate the probes present (the lab's admin certificate).
        #[arg(long, value_name = "DIR")]
        tls_dir: Option<PathBuf>,
        /// URLs (http://…, https://… or etcd://host:port).
        urls: Vec<String>,
    },
}

#[derive(Debug, Args)]
struct SourceArg {
    /// The source tree to build (default: the tree this binary was built from).
    #[arg(long, env = "ULTRACLOUD_SOURCE_DIR", value_name = "DIR")]
    source: Option<PathBuf>,
}

impl SourceArg {
    fn dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.source {
            return Ok(d.clone());
        }
        let built_from = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        if built_from.join("Cargo.toml").exists() {
            return Ok(built_from.canonicalize()?);
        }
        bail!("cannot find the source tree; pass --source DIR")
    }
}

/// One test cluster per machine (namespace and address names are fixed): refuses to clean
/// up a cluster that runs from another lab directory.
fn refuse_foreign_cluster(lab: &Lab) -> anyhow::Result<()> {
    use ultracloud_harness::{network, state::LabState, sys};
    if LabState::load(&lab.dir)?.is_some_and(|s| !s.agents.is_empty()) {
        return Ok(()); // ours
    }
    let busy: Vec<String> =
        sys::namespaces()?.into_iter().filter(|n| network::is_ours(n) && !sys::pids_in(n).is_empty()).collect();
    if !busy.is_empty() {
        bail!(
            "another test cluster runs on this machine (processes in {}), not from {}; stop it with \
             `ULTRACLOUD_LAB_DIR=<its dir> ultracloud cluster clean` (or `clean` here to take it down)",
            busy.join(", "),
            lab.dir.display()
        );
    }
    Ok(())
}

/// Refuses clearly when not root.
fn require_root(what: &str) -> anyhow::Result<()> {
    if ultracloud_harness::sys::is_root() {
        Ok(())
    } else {
        bail!("`ultracloud cluster {what}` must run as root: the test cluster is made of network namespaces")
    }
}

/// Runs the subcommand.
pub async fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    let lab = Lab::open()?;
    let needs_root = match &args.command {
        ClusterCommand::Start => Some("start"),
        ClusterCommand::Stop => Some("stop"),
        ClusterCommand::Clean => Some("clean"),
        ClusterCommand::Smoke { .. } => Some("smoke"),
        ClusterCommand::FreshSmoke { .. } => Some("fresh-smoke"),
        ClusterCommand::Ssh { .. } => Some("ssh"),
        _ => None,
    };
    if let Some(what) = needs_root {
        require_root(what)?;
    }
    let progress = Progress::default();
    match args.command {
        ClusterCommand::Validate { json } => return validate(&lab, json),
        ClusterCommand::Build { source } => {
            lab.build(&source.dir()?, &progress)?;
        }
        ClusterCommand::Start => start(&lab, &progress).await?,
        ClusterCommand::Status { json } => status(&lab, json).await?,
        ClusterCommand::Logs { node, service, follow } => logs(&lab, &node, &service, follow).await?,
        ClusterCommand::Ssh { node, command } => return ssh(&lab, &node, &command),
        ClusterCommand::Smoke { json } => return smoke(&lab, json).await,
        ClusterCommand::FreshSmoke { json, source } => {
            refuse_foreign_cluster(&lab)?;
            lab.clean(&progress)?;
            lab.build(&source.dir()?, &progress)?;
            start(&lab, &progress).await?;
            return smoke(&lab, json).await;
        }
        ClusterCommand::Stop => {
            let n = lab.stop(&progress)?;
            println!("{n} nodes stopped; state kept in {} (`start` resumes, `clean` removes)", lab.dir.display());
        }
        ClusterCommand::Clean => {
            lab.clean(&progress)?;
            println!("clean: no namespace, link, process or state of the test cluster is left");
        }
        ClusterCommand::Probe { tls_dir, urls } => {
            if let Some(dir) = &tls_dir {
                ultracloud_tls::client::install_dir(dir)?;
            }
            let outcomes = ultracloud_harness::probe::probe(&urls).await;
            print!("{}", ultracloud_harness::probe::render(&outcomes));
            let ok = outcomes.iter().all(|(_, r)| r.as_ref().is_ok_and(|s| (200..300).contains(s)));
            return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn validate(lab: &Lab, json: bool) -> anyhow::Result<ExitCode> {
    let checks = lab.validate();
    let ok = checks.iter().all(|c| c.outcome.is_ok());
    if json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        for c in &checks {
            match &c.outcome {
                Ok(d) => println!("ok    {:<32} {d}", c.what),
                Err(e) => println!("FAIL  {:<32} {e}", c.what),
            }
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn start(lab: &Lab, progress: &Progress) -> anyhow::Result<()> {
    let running = lab.running_agents()?;
    if !running.is_empty() {
        let list: Vec<String> = running.iter().map(|(n, p)| format!("{n} (pid {p})")).collect();
        bail!("a cluster is already running: {}; `ultracloud cluster stop` or `clean` first", list.join(", "));
    }
    if let Err(e) = lab.start(progress).await {
        let saved = ultracloud_harness::smoke::save_logs(lab).ok();
        let hint = saved.map(|p| format!("; every node's log is saved under {}", p.display())).unwrap_or_default();
        bail!("{e:#}{hint}");
    }
    eprintln!("cluster running; `ultracloud cluster status`, `smoke`, `ssh node01`, `stop`, `clean`");
    Ok(())
}

async fn status(lab: &Lab, json: bool) -> anyhow::Result<()> {
    let rows = lab.status().await;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.node.clone(),
                r.role.clone(),
                r.service.clone(),
                r.state.clone(),
                r.pid.map_or("-".into(), |p| p.to_string()),
                r.restarts.to_string(),
                r.health.clone(),
            ]
        })
        .collect();
    super::table::print(&["NODE", "ROLE", "SERVICE", "STATE", "PID", "RESTARTS", "HEALTH"], &table);
    Ok(())
}

async fn logs(lab: &Lab, node: &str, service: &str, follow: bool) -> anyhow::Result<()> {
    let path = lab.log_path(lab.node(node)?, service);
    let mut f = std::fs::File::open(&path).with_context(|| format!("no log at {}", path.display()))?;
    let mut out = std::io::stdout();
    loop {
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        out.write_all(&buf)?;
        out.flush()?;
        if !follow {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        // A log that was truncated (clean + start) is read again from the start.
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len < f.stream_position()? {
            f.seek(std::io::SeekFrom::Start(0))?;
        }
    }
}

fn ssh(lab: &Lab, node: &str, command: &[String]) -> anyhow::Result<ExitCode> {
    let node = lab.node(node)?;
    let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into());
    let cmd: Vec<String> = if command.is_empty() { vec![shell] } else { command.to_vec() };
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &node.ns()])
        .args(&cmd)
        .status()
        .context("cannot run `ip netns exec`")?;
    Ok(ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1)))
}

async fn smoke(lab: &Lab, json: bool) -> anyhow::Result<ExitCode> {
    if lab.running_agents()?.is_empty() {
        bail!("no cluster is running; `ultracloud cluster start` (or `fresh-smoke`)");
    }
    let report = ultracloud_harness::smoke::run(lab, json).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if report.passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
