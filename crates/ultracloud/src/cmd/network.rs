//! `ultracloud network|subnet|router|secgroup|port`: prismnet's resources on the command line,
//! and `network apply -f FILE` for a whole tenant network.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use ultracloud_prismnet::apply::{self, Current, Spec};

use super::project::Ctx;

/// Where resources live and how to print them (every resource command takes these).
#[derive(Debug, Args)]
pub struct Target {
    /// The prismnet controller (a bare host:port is https:// when a cluster CA is trusted).
    #[arg(long, global = true, env = "ULTRACLOUD_PRISMNET", default_value = "127.0.0.1:8580")]
    prismnet: String,
    /// Tenant (default: your home tenant).
    #[arg(long, short, global = true, env = "ULTRACLOUD_TENANT")]
    tenant: Option<String>,
    /// Project.
    #[arg(long, short, global = true, env = "ULTRACLOUD_PROJECT")]
    project: Option<String>,
    /// iam's URL (default: the one logged in to).
    #[arg(long, global = true, env = "ULTRACLOUD_IAM")]
    iam: Option<String>,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
}

impl Target {
    async fn open(&self) -> anyhow::Result<Ctx> {
        Ctx::open(&self.prismnet, self.tenant.as_deref(), self.project.as_deref(), self.iam.as_deref(), self.json).await
    }
}

/// Tenant networks (VPCs).
#[derive(Debug, Args)]
pub struct NetworkArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: NetworkCommand,
}

#[derive(Debug, Subcommand)]
enum NetworkCommand {
    /// Create a VPC.
    Create {
        /// Name.
        name: String,
        /// Address space, e.g. 10.0.0.0/16 (may overlap other tenants').
        #[arg(long)]
        cidr: String,
    },
    /// List VPCs.
    List,
    /// Show a VPC.
    Show {
        /// Name or ID.
        name: String,
    },
    /// Delete a VPC (it must have no subnets or routers).
    Delete {
        /// Name or ID.
        name: String,
    },
    /// Make the project's networks match a file (creates, updates, deletes).
    Apply {
        /// The tenant network file (TOML; see docs/prismnet.md).
        #[arg(long, short = 'f', value_name = "FILE")]
        file: PathBuf,
        /// Print the changes without making them.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs `network`.
pub async fn network(args: NetworkArgs) -> anyhow::Result<ExitCode> {
    if let NetworkCommand::Apply { file, dry_run } = &args.command {
        return apply_file(&args.target, file, *dry_run).await;
    }
    let c = args.target.open().await?;
    match args.command {
        NetworkCommand::Create { name, cidr } => {
            c.show(&c.call(Method::POST, "/vpcs", Some(&json!({"name": name, "cidr": cidr}))).await?)
        }
        NetworkCommand::List => c.list("/vpcs", &["name", "cidr", "id"]).await?,
        NetworkCommand::Show { name } => c.show(&c.call(Method::GET, &format!("/vpcs/{name}"), None).await?),
        NetworkCommand::Delete { name } => c.delete(&format!("/vpcs/{name}"), &format!("VPC {name}")).await?,
        NetworkCommand::Apply { .. } => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn apply_file(target: &Target, file: &PathBuf, dry_run: bool) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let spec: Spec = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let t = Target {
        prismnet: target.prismnet.clone(),
        tenant: Some(spec.tenant.clone()),
        project: Some(spec.project.clone()),
        iam: target.iam.clone(),
        json: target.json,
    };
    let c = t.open().await?;
    let current = Current {
        vpcs: c.items("/vpcs").await?,
        subnets: c.items("/subnets").await?,
        routers: c.items("/routers").await?,
        groups: c.items("/security-groups").await?,
        ports: c.items("/ports").await?,
    };
    let plan = apply::plan(&spec, &current).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if plan.is_empty() {
        println!("{}/{}: up to date", spec.tenant, spec.project);
        return Ok(ExitCode::SUCCESS);
    }
    for a in &plan {
        if dry_run {
            println!("{} {}", a.op, a.describe);
            continue;
        }
        let method = Method::from_bytes(a.method.as_bytes())?;
        c.call(method, &a.path, a.body.as_ref()).await.with_context(|| format!("{} {}", a.op, a.describe))?;
        println!("{} {}", a.op, a.describe);
    }
    if dry_run {
        println!("({} changes; nothing done: --dry-run)", plan.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// Subnets.
#[derive(Debug, Args)]
pub struct SubnetArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: SubnetCommand,
}

#[derive(Debug, Subcommand)]
enum SubnetCommand {
    /// Create a subnet.
    Create {
        /// Name.
        name: String,
        /// Its VPC (name or ID).
        #[arg(long)]
        vpc: String,
        /// Addresses (inside the VPC's).
        #[arg(long)]
        cidr: String,
        /// Gateway (default: the first host address).
        #[arg(long)]
        gateway: Option<String>,
        /// No gateway.
        #[arg(long, conflicts_with = "gateway")]
        no_gateway: bool,
        /// No DHCP.
        #[arg(long)]
        no_dhcp: bool,
        /// DNS servers for DHCP (repeatable).
        #[arg(long = "dns")]
        dns: Vec<String>,
    },
    /// List subnets.
    List,
    /// Show a subnet.
    Show {
        /// Name or ID.
        name: String,
    },
    /// Delete a subnet (refused while ports use it).
    Delete {
        /// Name or ID.
        name: String,
    },
}

/// Runs `subnet`.
pub async fn subnet(args: SubnetArgs) -> anyhow::Result<ExitCode> {
    let c = args.target.open().await?;
    match args.command {
        SubnetCommand::Create { name, vpc, cidr, gateway, no_gateway, no_dhcp, dns } => {
            let body = json!({"name": name, "vpc": vpc, "cidr": cidr, "gateway": gateway, "no_gateway": no_gateway, "dhcp": !no_dhcp, "dns_servers": dns});
            c.show(&c.call(Method::POST, "/subnets", Some(&body)).await?);
        }
        SubnetCommand::List => c.list("/subnets", &["name", "cidr", "gateway", "vni", "dhcp", "id"]).await?,
        SubnetCommand::Show { name } => c.show(&c.call(Method::GET, &format!("/subnets/{name}"), None).await?),
        SubnetCommand::Delete { name } => c.delete(&format!("/subnets/{name}"), &format!("subnet {name}")).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Routers.
#[derive(Debug, Args)]
pub struct RouterArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: RouterCommand,
}

#[derive(Debug, Subcommand)]
enum RouterCommand {
    /// Create a router.
    Create {
        /// Name.
        name: String,
        /// Its VPC.
        #[arg(long)]
        vpc: String,
        /// Subnets to attach (repeatable).
        #[arg(long = "subnet")]
        subnets: Vec<String>,
    },
    /// List routers.
    List,
    /// Show a router.
    Show {
        /// Name or ID.
        name: String,
    },
    /// Delete a router.
    Delete {
        /// Name or ID.
        name: String,
    },
}

/// Runs `router`.
pub async fn router(args: RouterArgs) -> anyhow::Result<ExitCode> {
    let c = args.target.open().await?;
    match args.command {
        RouterCommand::Create { name, vpc, subnets } => c.show(
            &c.call(Method::POST, "/routers", Some(&json!({"name": name, "vpc": vpc, "subnets": subnets}))).await?,
        ),
        RouterCommand::List => c.list("/routers", &["name", "vpc", "subnets", "id"]).await?,
        RouterCommand::Show { name } => c.show(&c.call(Method::GET, &format!("/routers/{name}"), None).await?),
        RouterCommand::Delete { name } => c.delete(&format!("/routers/{name}"), &format!("router {name}")).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses `DIRECTION,PROTOCOL[,PORTS][,REMOTE]`: `ingress,tcp,80`, `ingress,tcp,8000-8080,10.0.0.0/8`,
/// `ingress,any,,group=web`, `egress,any`.
fn parse_rule(s: &str) -> anyhow::Result<Value> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let (Some(dir), Some(proto)) = (parts.first(), parts.get(1)) else {
        bail!("rule {s:?}: use DIRECTION,PROTOCOL[,PORTS][,REMOTE], e.g. ingress,tcp,80,10.0.0.0/8");
    };
    let mut rule = json!({"direction": dir, "protocol": proto});
    if let Some(ports) = parts.get(2).filter(|p| !p.is_empty()) {
        let (a, b) = ports.split_once('-').unwrap_or((ports, ports));
        rule["port_min"] = json!(a.parse::<u16>().with_context(|| format!("rule {s:?}: port {a:?}"))?);
        rule["port_max"] = json!(b.parse::<u16>().with_context(|| format!("rule {s:?}: port {b:?}"))?);
    }
    if let Some(remote) = parts.get(3).filter(|p| !p.is_empty()) {
        match remote.strip_prefix("group=") {
            Some(g) => rule["remote_group"] = json!(g),
            None => rule["remote_cidr"] = json!(remote),
        }
    }
    Ok(rule)
}

/// Security groups.
#[derive(Debug, Args)]
pub struct SecgroupArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: SecgroupCommand,
}

#[derive(Debug, Subcommand)]
enum SecgroupCommand {
    /// Create a group (no --rule: egress anywhere, ingress from the group itself).
    Create {
        /// Name.
        name: String,
        /// DIRECTION,PROTOCOL[,PORTS][,REMOTE] (repeatable), e.g. ingress,tcp,80,0.0.0.0/0.
        #[arg(long = "rule")]
        rules: Vec<String>,
    },
    /// Replace a group's rules.
    Rules {
        /// Name or ID.
        name: String,
        /// DIRECTION,PROTOCOL[,PORTS][,REMOTE] (repeatable).
        #[arg(long = "rule")]
        rules: Vec<String>,
    },
    /// List groups.
    List,
    /// Show a group.
    Show {
        /// Name or ID.
        name: String,
    },
    /// Delete an unused group.
    Delete {
        /// Name or ID.
        name: String,
    },
}

/// Runs `secgroup`.
pub async fn secgroup(args: SecgroupArgs) -> anyhow::Result<ExitCode> {
    let c = args.target.open().await?;
    match args.command {
        SecgroupCommand::Create { name, rules } => {
            let mut body = json!({"name": name});
            if !rules.is_empty() {
                body["rules"] = Value::Array(rules.iter().map(|r| parse_rule(r)).collect::<anyhow::Result<_>>()?);
            }
            c.show(&c.call(Method::POST, "/security-groups", Some(&body)).await?);
        }
        SecgroupCommand::Rules { name, rules } => {
            let rules: Vec<Value> = rules.iter().map(|r| parse_rule(r)).collect::<anyhow::Result<_>>()?;
            c.show(&c.call(Method::PUT, &format!("/security-groups/{name}"), Some(&json!({"rules": rules}))).await?);
        }
        SecgroupCommand::List => c.list("/security-groups", &["name", "rules", "id"]).await?,
        SecgroupCommand::Show { name } => {
            c.show(&c.call(Method::GET, &format!("/security-groups/{name}"), None).await?)
        }
        SecgroupCommand::Delete { name } => {
            c.delete(&format!("/security-groups/{name}"), &format!("security group {name}")).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Ports.
#[derive(Debug, Args)]
pub struct PortArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: PortCommand,
}

#[derive(Debug, Subcommand)]
enum PortCommand {
    /// Create a port.
    Create {
        /// Its subnet.
        #[arg(long)]
        subnet: String,
        /// Name.
        #[arg(long, default_value = "")]
        name: String,
        /// Fixed address (repeatable; default: one from IPAM).
        #[arg(long = "ip")]
        ips: Vec<String>,
        /// Security group (repeatable; default: the project's `default`).
        #[arg(long = "secgroup")]
        groups: Vec<String>,
        /// Bind to this host…
        #[arg(long, requires = "netns")]
        host: Option<String>,
        /// …plugging a veth into this network namespace.
        #[arg(long)]
        netns: Option<String>,
    },
    /// List ports.
    List,
    /// Show a port.
    Show {
        /// ID.
        id: String,
    },
    /// Delete a port (its addresses are released).
    Delete {
        /// ID.
        id: String,
    },
}

/// Runs `port`.
pub async fn port(args: PortArgs) -> anyhow::Result<ExitCode> {
    let c = args.target.open().await?;
    match args.command {
        PortCommand::Create { subnet, name, ips, groups, host, netns } => {
            let mut body = json!({"subnet": subnet, "name": name, "fixed_ips": ips});
            if !groups.is_empty() {
                body["security_groups"] = json!(groups);
            }
            if let (Some(h), Some(ns)) = (host, netns) {
                body["binding"] = json!({"host": h, "plug": {"kind": "netns", "netns": ns}});
            }
            c.show(&c.call(Method::POST, "/ports", Some(&body)).await?);
        }
        PortCommand::List => c.list("/ports", &["id", "name", "mac", "fixed_ips", "device_owner"]).await?,
        PortCommand::Show { id } => c.show(&c.call(Method::GET, &format!("/ports/{id}"), None).await?),
        PortCommand::Delete { id } => c.delete(&format!("/ports/{id}"), &format!("port {id}")).await?,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rules_parse() {
        let r = super::parse_rule("ingress,tcp,8000-8080,10.0.0.0/8").unwrap();
        assert_eq!((r["port_min"].as_u64(), r["port_max"].as_u64()), (Some(8000), Some(8080)));
        assert_eq!(r["remote_cidr"], "10.0.0.0/8");
        assert_eq!(super::parse_rule("ingress,any,,group=web").unwrap()["remote_group"], "web");
        assert!(super::parse_rule("ingress").is_err());
        assert!(super::parse_rule("ingress,tcp,eighty").is_err());
    }
}
