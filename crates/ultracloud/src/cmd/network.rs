//! `ultracloud network|subnet|router|secgroup|port`: prismnet's resources on the command line,
//! and `network apply -f FILE` for a whole tenant network.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use ultracloud_prismnet::api::*;
use ultracloud_prismnet::apply::{self, Current, Spec};
use ultracloud_prismnet::cidr::Cidr;
use ultracloud_prismnet::client::Prismnet;

use super::project::{Ctx, LabelArgs, ListArgs, MetaArgs, ProjectArgs};

/// Where resources live and how to print them (every resource command takes these).
#[derive(Debug, Args)]
pub struct Target {
    /// The prismnet controller's replicas, comma-separated (a bare host:port is https://
    /// when a cluster CA is trusted).
    #[arg(long, global = true, env = "ULTRACLOUD_PRISMNET", default_value = "127.0.0.1:8580")]
    prismnet: String,
    #[command(flatten)]
    project: ProjectArgs,
}

impl Target {
    async fn open(&self) -> anyhow::Result<(Ctx, Prismnet)> {
        let c = Ctx::open(Prismnet::SERVICE, &self.prismnet, &self.project).await?;
        let net = Prismnet::new(c.client.clone());
        Ok((c, net))
    }
}

fn cidr(flag: &str, s: &str) -> anyhow::Result<Cidr> {
    s.parse().map_err(|e| anyhow::anyhow!("--{flag} {s:?}: {e}"))
}

fn ip(flag: &str, s: &str) -> anyhow::Result<std::net::Ipv4Addr> {
    s.parse().with_context(|| format!("--{flag} {s:?}: an IPv4 address"))
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
        #[command(flatten)]
        meta: MetaArgs,
    },
    /// List VPCs.
    List(ListArgs),
    /// Show a VPC.
    Show {
        /// Name or ID.
        name: String,
    },
    /// Set or remove labels (`KEY=VALUE`, `KEY-`) and annotations of a VPC.
    Label(LabelArgs),
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
    let (c, net) = args.target.open().await?;
    let vpcs = net.vpcs(&c.owner);
    match args.command {
        NetworkCommand::Create { name, cidr: range, meta } => {
            let (labels, annotations) = meta.split();
            c.show(&vpcs.create(&NewVpc { name, cidr: cidr("cidr", &range)?, labels, annotations }).await?);
        }
        NetworkCommand::List(l) => c.list(vpcs, &l, &["name", "cidr", "id"]).await?,
        NetworkCommand::Show { name } => c.show(&vpcs.get(&name).await?),
        NetworkCommand::Label(l) => c.label(vpcs, &l).await?,
        NetworkCommand::Delete { name } => c.delete(vpcs, &name, "VPC").await?,
        NetworkCommand::Apply { .. } => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn apply_file(target: &Target, file: &PathBuf, dry_run: bool) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let spec: Spec = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let t = Target {
        prismnet: target.prismnet.clone(),
        project: ProjectArgs {
            tenant: Some(spec.tenant.clone()),
            project: Some(spec.project.clone()),
            iam: target.project.iam.clone(),
            output: target.project.output,
            json: target.project.json,
        },
    };
    let (c, net) = t.open().await?;
    let all = ListQuery::default();
    let o = &c.owner;
    let current = Current {
        vpcs: net.vpcs(o).list_all(&all).await?,
        subnets: net.subnets(o).list_all(&all).await?,
        routers: net.routers(o).list_all(&all).await?,
        groups: net.security_groups(o).list_all(&all).await?,
        ports: net.ports(o).list_all(&all).await?,
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
        // An action's path is relative to the project (`/subnets/{id}`), its segments the
        // plan's own names and the IDs the service gave out.
        let method = Method::from_bytes(a.method.as_bytes())?;
        let mut path = vec!["v1", "tenants", &o.tenant, "projects", &o.project];
        path.extend(a.path.split('/').filter(|s| !s.is_empty()));
        let mut call = c.client.request(method.clone(), &path);
        if method == Method::POST {
            call = call.idempotency_key(&ultracloud_resource::client::idempotency_key());
        }
        if let Some(body) = &a.body {
            call = call.json(body);
        }
        call.done().await.with_context(|| format!("{} {}", a.op, a.describe))?;
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
        #[command(flatten)]
        meta: MetaArgs,
    },
    /// List subnets.
    List(ListArgs),
    /// Show a subnet.
    Show {
        /// Name or ID.
        name: String,
    },
    /// Set or remove labels (`KEY=VALUE`, `KEY-`) and annotations of a subnet.
    Label(LabelArgs),
    /// Delete a subnet (refused while ports use it).
    Delete {
        /// Name or ID.
        name: String,
    },
}

/// Runs `subnet`.
pub async fn subnet(args: SubnetArgs) -> anyhow::Result<ExitCode> {
    let (c, net) = args.target.open().await?;
    let subnets = net.subnets(&c.owner);
    match args.command {
        SubnetCommand::Create { name, vpc, cidr: range, gateway, no_gateway, no_dhcp, dns, meta } => {
            let (labels, annotations) = meta.split();
            let new = NewSubnet {
                name,
                vpc,
                cidr: cidr("cidr", &range)?,
                gateway: gateway.as_deref().map(|g| ip("gateway", g)).transpose()?,
                no_gateway,
                dhcp: Some(!no_dhcp),
                dns_servers: dns.iter().map(|d| ip("dns", d)).collect::<anyhow::Result<_>>()?,
                pools: Vec::new(),
                labels,
                annotations,
            };
            c.show(&subnets.create(&new).await?);
        }
        SubnetCommand::List(l) => c.list(subnets, &l, &["name", "cidr", "gateway", "vni", "dhcp", "id"]).await?,
        SubnetCommand::Show { name } => c.show(&subnets.get(&name).await?),
        SubnetCommand::Label(l) => c.label(subnets, &l).await?,
        SubnetCommand::Delete { name } => c.delete(subnets, &name, "subnet").await?,
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
        #[command(flatten)]
        meta: MetaArgs,
    },
    /// List routers.
    List(ListArgs),
    /// Show a router.
    Show {
        /// Name or ID.
        name: String,
    },
    /// Set or remove labels (`KEY=VALUE`, `KEY-`) and annotations of a router.
    Label(LabelArgs),
    /// Delete a router.
    Delete {
        /// Name or ID.
        name: String,
    },
}

/// Runs `router`.
pub async fn router(args: RouterArgs) -> anyhow::Result<ExitCode> {
    let (c, net) = args.target.open().await?;
    let routers = net.routers(&c.owner);
    match args.command {
        RouterCommand::Create { name, vpc, subnets, meta } => {
            let (labels, annotations) = meta.split();
            c.show(&routers.create(&NewRouter { name, vpc, subnets, routes: Vec::new(), labels, annotations }).await?);
        }
        RouterCommand::List(l) => c.list(routers, &l, &["name", "vpc", "subnets", "id"]).await?,
        RouterCommand::Show { name } => c.show(&routers.get(&name).await?),
        RouterCommand::Label(l) => c.label(routers, &l).await?,
        RouterCommand::Delete { name } => c.delete(routers, &name, "router").await?,
    }
    Ok(ExitCode::SUCCESS)
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
        #[command(flatten)]
        meta: MetaArgs,
    },
    /// Replace a group's rules (refused if the group changed since it was read: no lost
    /// update between two operators).
    Rules {
        /// Name or ID.
        name: String,
        /// DIRECTION,PROTOCOL[,PORTS][,REMOTE] (repeatable).
        #[arg(long = "rule")]
        rules: Vec<String>,
    },
    /// List groups.
    List(ListArgs),
    /// Show a group.
    Show {
        /// Name or ID.
        name: String,
    },
    /// Set or remove labels (`KEY=VALUE`, `KEY-`) and annotations of a group.
    Label(LabelArgs),
    /// Delete an unused group.
    Delete {
        /// Name or ID.
        name: String,
    },
}

fn parse_rules(rules: &[String]) -> anyhow::Result<Vec<Rule>> {
    rules.iter().map(|r| r.parse::<Rule>()).collect::<Result<_, _>>().map_err(anyhow::Error::msg)
}

/// Runs `secgroup`.
pub async fn secgroup(args: SecgroupArgs) -> anyhow::Result<ExitCode> {
    let (c, net) = args.target.open().await?;
    let groups = net.security_groups(&c.owner);
    match args.command {
        SecgroupCommand::Create { name, rules, meta } => {
            let (labels, annotations) = meta.split();
            let rules = if rules.is_empty() { None } else { Some(parse_rules(&rules)?) };
            c.show(&groups.create(&NewSecurityGroup { name, rules, labels, annotations }).await?);
        }
        SecgroupCommand::Rules { name, rules } => {
            let rules = GroupRules { rules: parse_rules(&rules)? };
            let (group, revision) = groups.get_tagged(&name).await?;
            c.show(&net.set_rules(&c.owner, &group.id, &rules, revision).await?);
        }
        SecgroupCommand::List(l) => c.list(groups, &l, &["name", "rules", "id"]).await?,
        SecgroupCommand::Show { name } => c.show(&groups.get(&name).await?),
        SecgroupCommand::Label(l) => c.label(groups, &l).await?,
        SecgroupCommand::Delete { name } => c.delete(groups, &name, "security group").await?,
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
        #[command(flatten)]
        meta: MetaArgs,
    },
    /// List ports.
    List(ListArgs),
    /// Show a port.
    Show {
        /// ID.
        id: String,
    },
    /// Set or remove labels (`KEY=VALUE`, `KEY-`) and annotations of a port.
    Label(LabelArgs),
    /// Delete a port (its addresses are released).
    Delete {
        /// ID.
        id: String,
    },
}

/// Runs `port`.
pub async fn port(args: PortArgs) -> anyhow::Result<ExitCode> {
    let (c, net) = args.target.open().await?;
    let ports = net.ports(&c.owner);
    match args.command {
        PortCommand::Create { subnet, name, ips, groups, host, netns, meta } => {
            let (labels, annotations) = meta.split();
            let binding = match (host, netns) {
                (Some(host), Some(netns)) => Some(Binding { host, plug: Plug::Netns { netns }, standby: None }),
                _ => None,
            };
            let new = NewPort {
                subnet,
                name,
                fixed_ips: ips.iter().map(|i| ip("ip", i)).collect::<anyhow::Result<_>>()?,
                security_groups: if groups.is_empty() { None } else { Some(groups) },
                binding,
                labels,
                annotations,
                ..NewPort::default()
            };
            c.show(&ports.create(&new).await?);
        }
        PortCommand::List(l) => c.list(ports, &l, &["id", "name", "mac", "fixed_ips", "device_owner"]).await?,
        PortCommand::Show { id } => c.show(&ports.get(&id).await?),
        PortCommand::Label(l) => c.label(ports, &l).await?,
        PortCommand::Delete { id } => c.delete(ports, &id, "port").await?,
    }
    Ok(ExitCode::SUCCESS)
}
