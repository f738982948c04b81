//! The lab network: a namespace holding a bridge, one namespace per node with a veth on the
//! bridge, and one veth from the host so the harness reaches every node. No node has a default
//! route and nothing is NATed: traffic never leaves the machine.
//!
//! ```text
//!   host ── uclab0 10.231.0.1 ═══ host ─┐
//!                                       │ br0 (namespace uclab-net)
//!   uclab-node01: eth0 10.231.0.11 ═══ node01 ─┤
//!   …                                          │
//!   uclab-node06: eth0 10.231.0.16 ═══ node06 ─┘
//! ```

use std::net::Ipv4Addr;

use anyhow::{Context, bail};

use crate::sys::{self, ip};
use crate::topology::{BRIDGE, HOST_LINK, NET_NS, PREFIX, Topology};

/// Builds the lab network. Fails (naming the leftover) when parts of one already exist.
pub fn create(topo: &Topology) -> anyhow::Result<()> {
    let existing: Vec<String> = sys::namespaces()?.into_iter().filter(|n| is_ours(n)).collect();
    if !existing.is_empty() || sys::host_link_exists(HOST_LINK) {
        bail!("lab network leftovers exist ({}); run `ultracloud cluster clean`", existing.join(", "));
    }
    ip(&["netns", "add", NET_NS])?;
    ip(&["-n", NET_NS, "link", "set", "lo", "up"])?;
    ip(&["-n", NET_NS, "link", "add", BRIDGE, "type", "bridge"])?;
    ip(&["-n", NET_NS, "link", "set", BRIDGE, "up"])?;
    ip(&["link", "add", HOST_LINK, "type", "veth", "peer", "name", "host", "netns", NET_NS])?;
    ip(&["addr", "add", &format!("{}/24", topo.host_ip()), "dev", HOST_LINK])?;
    ip(&["link", "set", HOST_LINK, "up"])?;
    ip(&["-n", NET_NS, "link", "set", "host", "master", BRIDGE, "up"])?;
    for n in &topo.nodes {
        let ns = n.ns();
        ip(&["netns", "add", &ns])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&["-n", NET_NS, "link", "add", &n.name, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
        ip(&["-n", NET_NS, "link", "set", &n.name, "master", BRIDGE, "up"])?;
        ip(&["-n", &ns, "addr", "add", &format!("{}/24", n.ip), "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    }
    Ok(())
}

/// Whether a namespace name is one the harness makes.
pub fn is_ours(ns: &str) -> bool {
    ns == NET_NS || ns.starts_with(&format!("{PREFIX}-"))
}

/// Removes every namespace and link the harness made — and the DHCP namespaces the nodes'
/// prismnet agents made (`pndhcp-<node>-…`) — killing whatever still runs inside (only
/// processes the harness and its nodes started live there). Returns what it removed.
pub fn destroy(topo: &Topology) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    let agents_ns = |n: &str| topo.nodes.iter().any(|node| n.starts_with(&format!("pndhcp-{}-", node.name)));
    for ns in sys::namespaces()?.into_iter().filter(|n| is_ours(n) || agents_ns(n)) {
        for pid in sys::pids_in(&ns) {
            sys::kill(pid);
            removed.push(format!("process {pid} in {ns}"));
        }
        ip(&["netns", "del", &ns]).with_context(|| format!("removing namespace {ns}"))?;
        removed.push(format!("namespace {ns}"));
    }
    if sys::host_link_exists(HOST_LINK) {
        ip(&["link", "del", HOST_LINK])?;
        removed.push(format!("link {HOST_LINK}"));
    }
    Ok(removed)
}

/// The routes of the host that overlap the lab network (other than the harness's own link).
pub fn conflicting_routes(topo: &Topology) -> anyhow::Result<Vec<String>> {
    let ours = topo.subnet;
    let mut out = Vec::new();
    for line in ip(&["-4", "route", "show", "table", "all"])?.lines() {
        if line.contains(HOST_LINK) {
            continue;
        }
        let Some(dest) = line.split_whitespace().find(|w| w.contains('/') || w.parse::<Ipv4Addr>().is_ok()) else {
            continue;
        };
        let (addr, len) = dest.split_once('/').unwrap_or((dest, "32"));
        let (Ok(addr), Ok(len)) = (addr.parse::<Ipv4Addr>(), len.parse::<u32>()) else { continue };
        if len == 0 {
            continue; // a default route overlaps everything; it is not a conflict
        }
        let lab = u32::from(Ipv4Addr::new(ours[0], ours[1], ours[2], 0));
        let mask = |l: u32| if l >= 32 { u32::MAX } else { !(u32::MAX >> l) };
        let common = mask(len.min(24));
        if u32::from(addr) & common == lab & common {
            out.push(line.to_owned());
        }
    }
    Ok(out)
}

/// The nftables table a partition lives in (inside the node's namespace).
const PARTITION_TABLE: &str = "uclab_partition";

/// Drops all traffic on a node's lab link, both ways: a partition. nftables, in the node's
/// own namespace, so nothing of the host's firewall is touched.
pub fn partition(ns: &str) -> anyhow::Result<()> {
    let nft = |cmd: &str| sys::in_ns(ns, "nft", &[cmd]);
    nft(&format!("add table inet {PARTITION_TABLE}"))?;
    for (chain, dir) in [("input", "iifname"), ("output", "oifname")] {
        nft(&format!(
            "add chain inet {PARTITION_TABLE} {chain} {{ type filter hook {chain} priority -200; policy accept; }}"
        ))?;
        nft(&format!("add rule inet {PARTITION_TABLE} {chain} {dir} \"eth0\" drop"))?;
    }
    Ok(())
}

/// Removes the partition of [`partition`].
pub fn heal(ns: &str) -> anyhow::Result<()> {
    sys::in_ns(ns, "nft", &[&format!("delete table inet {PARTITION_TABLE}")]).map(|_| ())
}
