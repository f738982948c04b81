//! The prismnet agent: reconciles one host to the controller's plan for it.
//!
//! Per subnet with local ports: a bridge (`pnb<vni>`), a VXLAN device (`pnv<vni>`, no
//! learning, static FDB entries for the peers), a DHCP server in its own namespace behind a
//! veth (`pnd<vni>`), and a device per port (`pt<id>`: a tap, or a veth whose far end is
//! `eth0` in the workload's namespace); then the nftables ruleset ([`nft`]). Reconciling is
//! idempotent: it adds what is missing, removes what is stale, and leaves the rest alone, so an
//! agent restart does not disturb traffic.

pub mod dnsmasq;
pub mod host;
pub mod nft;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use host::{CommandError, HostNs, Link};
use nft::{bridge_dev, dhcp_dev, port_dev, vxlan_dev};

use crate::model::Plug;
use crate::plan::{HostPlan, PortPlan, SubnetPlan};

/// What the agent needs to know about its host.
#[derive(Debug, Clone)]
pub struct AgentHost {
    /// The host's name (ports are bound to it).
    pub name: String,
    /// Its underlay address (VXLAN source, and what peers send to).
    pub underlay_ip: Ipv4Addr,
    /// Its underlay device.
    pub underlay_dev: String,
    /// The namespace it manages (`None`: its own).
    pub netns: Option<String>,
    /// Where DHCP files live.
    pub state_dir: PathBuf,
}

/// One reconcile pass's outcome: what it changed, and the problems it skipped past.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Changes made (human-readable).
    pub changes: Vec<String>,
    /// Problems (a port whose namespace is missing, …); the rest was still reconciled.
    pub problems: Vec<String>,
}

fn has(links: &[Link], name: &str) -> bool {
    links.iter().any(|l| l.ifname == name)
}

/// Reconciles the host to `plan`.
pub async fn reconcile(h: &AgentHost, plan: &HostPlan) -> Outcome {
    let mut out = Outcome::default();
    let ns = HostNs { netns: h.netns.clone() };
    let links = match ns.links().await {
        Ok(l) => l,
        Err(e) => {
            out.problems.push(e.to_string());
            return out;
        }
    };
    // Bridged IPv4 must pass the inet forward hook for security groups (br_netfilter).
    if !std::path::Path::new("/proc/sys/net/bridge").exists() {
        let _ = HostNs { netns: None }.run("modprobe", &["br_netfilter"]).await;
    }
    if let Err(e) = ns.run("sysctl", &["-qw", "net.bridge.bridge-nf-call-iptables=1"]).await {
        out.problems.push(format!("{e} (is br_netfilter loaded?)"));
    }
    for s in &plan.subnets {
        if let Err(e) = subnet(h, &ns, &links, s, &mut out).await {
            out.problems.push(e.to_string());
        }
        for p in &s.ports {
            if let Err(e) = port(&ns, &links, s, p, &mut out).await {
                out.problems.push(format!("port {}: {e}", p.id));
            }
        }
    }
    let ruleset = nft::render(plan);
    let file = h.state_dir.join("prismnet.nft");
    let applied = match std::fs::create_dir_all(&h.state_dir).and_then(|()| std::fs::write(&file, &ruleset)) {
        Ok(()) => ns.run("nft", &["-f", &file.display().to_string()]).await.map(|_| ()),
        Err(e) => Err(CommandError { command: format!("writing {}", file.display()), detail: e.to_string() }),
    };
    if let Err(e) = applied {
        out.problems.push(e.to_string());
    }
    remove_stale(h, &ns, &links, plan, &mut out).await;
    out
}

async fn subnet(
    h: &AgentHost,
    ns: &HostNs,
    links: &[Link],
    s: &SubnetPlan,
    out: &mut Outcome,
) -> Result<(), CommandError> {
    let (br, vx, mtu) = (bridge_dev(s.vni), vxlan_dev(s.vni), s.mtu.to_string());
    if !has(links, &br) {
        ns.ip(&["link", "add", &br, "mtu", &mtu, "type", "bridge"]).await?;
        out.changes.push(format!("bridge {br}"));
    }
    ns.ip(&["link", "set", &br, "up"]).await?;
    if !has(links, &vx) {
        let (vni, local) = (s.vni.to_string(), h.underlay_ip.to_string());
        ns.ip(&[
            "link",
            "add",
            &vx,
            "mtu",
            &mtu,
            "type",
            "vxlan",
            "id",
            &vni,
            "dstport",
            "4789",
            "local",
            &local,
            "dev",
            &h.underlay_dev,
            "nolearning",
        ])
        .await?;
        out.changes.push(format!("vxlan {vx} (vni {})", s.vni));
    }
    ns.ip(&["link", "set", &vx, "master", &br, "up"]).await?;
    // Static flooding entries: one per peer host, no multicast.
    let fdb = ns.run("bridge", &["fdb", "show", "dev", &vx]).await?;
    let have: BTreeSet<String> = fdb
        .lines()
        .filter(|l| l.starts_with("00:00:00:00:00:00"))
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "dst").nth(1).map(str::to_owned))
        .collect();
    let want: BTreeSet<String> = s.peers.iter().map(ToString::to_string).collect();
    for peer in want.difference(&have) {
        ns.run("bridge", &["fdb", "append", "00:00:00:00:00:00", "dev", &vx, "dst", peer]).await?;
        out.changes.push(format!("{vx} → {peer}"));
    }
    for gone in have.difference(&want) {
        ns.run("bridge", &["fdb", "del", "00:00:00:00:00:00", "dev", &vx, "dst", gone]).await?;
        out.changes.push(format!("{vx} ↛ {gone}"));
    }
    if let Some(d) = &s.dhcp {
        dhcp_server(h, ns, links, s, d, out).await?;
    }
    Ok(())
}

async fn dhcp_server(
    h: &AgentHost,
    ns: &HostNs,
    links: &[Link],
    s: &SubnetPlan,
    d: &crate::plan::DhcpPlan,
    out: &mut Outcome,
) -> Result<(), CommandError> {
    let dns = dnsmasq::namespace(&h.name, s.vni);
    let identity = dnsmasq::identity(s, d);
    let mut replaced = false;
    if dnsmasq::recorded_identity(&h.state_dir, s.vni).is_some_and(|old| old != identity) {
        // The VNI was reused by another subnet: this server belongs to the old one.
        dnsmasq::retire(&h.state_dir, &h.name, s.vni).await?;
        out.changes.push(format!("replaced the DHCP server of reused vni {}", s.vni));
        replaced = true;
    }
    if !HostNs::namespaces().await?.contains(&dns) {
        HostNs::add_namespace(&dns).await?;
        HostNs::ip_in(&dns, &["link", "set", "lo", "up"]).await?;
        out.changes.push(format!("namespace {dns}"));
    }
    let dev = dhcp_dev(s.vni);
    if replaced || !has(links, &dev) {
        ns.ip(&[
            "link",
            "add",
            &dev,
            "mtu",
            &s.mtu.to_string(),
            "type",
            "veth",
            "peer",
            "name",
            "dhcp0",
            "netns",
            &dns,
        ])
        .await?;
        let addr = format!("{}/{}", d.ip, s.cidr.prefix());
        HostNs::ip_in(&dns, &["link", "set", "dhcp0", "address", &d.mac, "mtu", &s.mtu.to_string(), "up"]).await?;
        HostNs::ip_in(&dns, &["addr", "replace", &addr, "dev", "dhcp0"]).await?;
        out.changes.push(format!("dhcp server {} on {dev}", d.ip));
    }
    if dnsmasq::recorded_identity(&h.state_dir, s.vni).as_deref() != Some(identity.as_str()) {
        dnsmasq::record_identity(&h.state_dir, s.vni, &identity)
            .map_err(|e| CommandError { command: "recording the DHCP server".into(), detail: e.to_string() })?;
    }
    ns.ip(&["link", "set", &dev, "master", &bridge_dev(s.vni), "up"]).await?;
    dnsmasq::ensure(&h.state_dir, &h.name, s, d).await
}

async fn port(
    ns: &HostNs,
    links: &[Link],
    s: &SubnetPlan,
    p: &PortPlan,
    out: &mut Outcome,
) -> Result<(), CommandError> {
    let (dev, br, mtu) = (port_dev(&p.id), bridge_dev(s.vni), s.mtu.to_string());
    if !has(links, &dev) {
        match &p.plug {
            Plug::Tap => {
                ns.ip(&["tuntap", "add", "dev", &dev, "mode", "tap"]).await?;
            }
            Plug::Netns { netns } => {
                if !HostNs::namespaces().await?.contains(netns) {
                    return Err(CommandError {
                        command: format!("plug into {netns}"),
                        detail: "namespace does not exist".into(),
                    });
                }
                ns.ip(&["link", "add", &dev, "type", "veth", "peer", "name", "eth0", "netns", netns]).await?;
                HostNs::ip_in(netns, &["link", "set", "eth0", "address", &p.mac, "mtu", &mtu, "up"]).await?;
            }
        }
        out.changes.push(format!("port {} as {dev}", p.id));
    }
    if p.standby {
        // Made for an incoming live migration; attached when the port moves here.
        return ns.ip(&["link", "set", &dev, "mtu", &mtu]).await.map(|_| ());
    }
    ns.ip(&["link", "set", &dev, "mtu", &mtu, "master", &br, "up"]).await?;
    Ok(())
}

async fn remove_stale(h: &AgentHost, ns: &HostNs, links: &[Link], plan: &HostPlan, out: &mut Outcome) {
    let mut want: BTreeSet<String> = BTreeSet::new();
    let mut vnis = BTreeSet::new();
    for s in &plan.subnets {
        vnis.insert(s.vni);
        want.extend([bridge_dev(s.vni), vxlan_dev(s.vni)]);
        if s.dhcp.is_some() {
            want.insert(dhcp_dev(s.vni));
        }
        want.extend(s.ports.iter().map(|p| port_dev(&p.id)));
    }
    // Ports first, then subnets' devices (a bridge goes with its last port).
    let ours = |n: &str, prefix: &str| n.starts_with(prefix) && n.len() > prefix.len();
    for prefix in ["pt", "pnd", "pnv", "pnb"] {
        for l in links.iter().filter(|l| ours(&l.ifname, prefix) && !want.contains(&l.ifname)) {
            match ns.ip(&["link", "del", &l.ifname]).await {
                Ok(_) => out.changes.push(format!("removed {}", l.ifname)),
                Err(e) => out.problems.push(e.to_string()),
            }
        }
    }
    // DHCP servers of subnets no longer here.
    let dir = h.state_dir.join("dhcp");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let Some(vni) = e.file_name().to_str().and_then(|n| u32::from_str_radix(n, 16).ok()) else { continue };
            if !vnis.contains(&vni) {
                match dnsmasq::retire(&h.state_dir, &h.name, vni).await {
                    Ok(()) => out.changes.push(format!("removed dhcp server of vni {vni}")),
                    Err(e) => out.problems.push(e.to_string()),
                }
            }
        }
    }
}

/// Runs the agent until `shutdown`: register, then plan → reconcile → wait for a change (or
/// 30 s) forever. `ready` is set after the first clean pass.
pub async fn run(
    host: AgentHost,
    controller: crate::client::Prismnet,
    ready: Arc<std::sync::atomic::AtomicBool>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut registered = false;
    loop {
        let pass = async {
            if !registered {
                controller.register_host(&host.name, host.underlay_ip).await?;
                registered = true;
            }
            let plan = controller.host_plan(&host.name).await?;
            let outcome = reconcile(&host, &plan).await;
            for c in &outcome.changes {
                tracing::info!(change = %c, "reconciled");
            }
            for p in &outcome.problems {
                tracing::warn!(problem = %p, "reconcile problem");
            }
            ready.store(outcome.problems.is_empty(), std::sync::atomic::Ordering::Relaxed);
            Ok::<u64, ultracloud_resource::client::ClientError>(plan.version)
        };
        let wait_after = match pass.await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the controller; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tokio::time::timeout(Duration::from_secs(30), controller.wait(wait_after)) => {}
        }
    }
}
