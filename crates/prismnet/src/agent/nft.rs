//! The nftables ruleset of a host, rendered from its plan.
//!
//! - `table bridge prismnet`: anti-spoofing on every port device (no conntrack needed): a port
//!   may only send from its own MAC and addresses (and DHCP discovery from 0.0.0.0); no IPv6.
//! - `table inet prismnet`: stateful security groups in the forward hook. Bridged traffic
//!   reaches it through br_netfilter (`bridge-nf-call-iptables=1`), where `iifname`/`oifname`
//!   name the *bridge* (one per subnet), so a port is matched by bridge + address — sound
//!   because anti-spoofing makes addresses trustworthy and IPAM makes them unique per subnet.
//!   Established flows pass; a port's egress chain *returns* when allowed (so the receiving
//!   port's ingress chain still runs on the same host) and drops otherwise; ingress chains
//!   accept DHCP replies and what the rules allow, and drop the rest.
//!
//! The whole ruleset is replaced atomically (`nft -f` of add+delete+define), so a re-apply
//! with the same plan never interrupts traffic and conntrack state survives.

use std::fmt::Write;

use crate::model::Protocol;
use crate::plan::{HostPlan, PortPlan, RulePlan};

/// The device name of a port on its host (`pt` + 12 characters of its ID).
pub fn port_dev(port_id: &str) -> String {
    let tail: String = port_id.rsplit('-').next().unwrap_or(port_id).chars().take(12).collect();
    format!("pt{tail}")
}

/// The bridge of a subnet.
pub fn bridge_dev(vni: u32) -> String {
    format!("pnb{vni:x}")
}

/// The VXLAN device of a subnet.
pub fn vxlan_dev(vni: u32) -> String {
    format!("pnv{vni:x}")
}

/// The DHCP server's veth (bridge side) of a subnet.
pub fn dhcp_dev(vni: u32) -> String {
    format!("pnd{vni:x}")
}

fn chain_name(prefix: &str, port_id: &str) -> String {
    format!("{prefix}_{}", port_id.replace('-', "_"))
}

fn set(items: impl IntoIterator<Item = String>) -> String {
    let v: Vec<String> = items.into_iter().collect();
    if v.len() == 1 { v[0].clone() } else { format!("{{ {} }}", v.join(", ")) }
}

/// One rule as an nft match (without verdict); `None` when it can match nothing (a group
/// without members).
fn rule_match(r: &RulePlan, remote_field: &str) -> Option<String> {
    let mut m = String::new();
    match r.protocol {
        Protocol::Any => {}
        Protocol::Tcp => m.push_str("meta l4proto tcp "),
        Protocol::Udp => m.push_str("meta l4proto udp "),
        Protocol::Icmp => m.push_str("meta l4proto icmp "),
    }
    if let Some((a, b)) = r.ports
        && matches!(r.protocol, Protocol::Tcp | Protocol::Udp)
    {
        if a == b {
            let _ = write!(m, "th dport {a} ");
        } else {
            let _ = write!(m, "th dport {a}-{b} ");
        }
    }
    if let Some(remotes) = &r.remotes {
        if remotes.is_empty() {
            return None;
        }
        let _ = write!(m, "ip {remote_field} {} ", set(remotes.iter().map(ToString::to_string)));
    }
    Some(m.trim_end().to_owned())
}

fn port_chains(out: &mut String, p: &PortPlan) {
    let _ = writeln!(out, "  chain {} {{", chain_name("eg", &p.id));
    for r in &p.egress {
        if let Some(m) = rule_match(r, "daddr") {
            let _ = writeln!(out, "    {m} return");
        }
    }
    let _ = writeln!(out, "    drop\n  }}");
    let _ = writeln!(out, "  chain {} {{", chain_name("in", &p.id));
    let _ = writeln!(out, "    udp sport 67 udp dport 68 accept");
    for r in &p.ingress {
        if let Some(m) = rule_match(r, "saddr") {
            let _ = writeln!(out, "    {m} accept");
        }
    }
    let _ = writeln!(out, "    drop\n  }}");
}

/// The full ruleset for `plan`, as an `nft -f` script that replaces prismnet's tables.
pub fn render(plan: &HostPlan) -> String {
    let mut out = String::new();
    // Declare, then delete, then define: atomic replacement that also works the first time.
    out.push_str(
        "table inet prismnet\ndelete table inet prismnet\ntable bridge prismnet\ndelete table bridge prismnet\n",
    );
    out.push_str("table inet prismnet {\n");
    out.push_str("  chain forward {\n    type filter hook forward priority 0; policy accept;\n");
    out.push_str("    ct state established,related accept\n    ct state invalid drop\n");
    for s in &plan.subnets {
        let br = bridge_dev(s.vni);
        for p in &s.ports {
            let ips = set(p.ips.iter().map(ToString::to_string));
            let _ = writeln!(out, "    iifname \"{br}\" ip saddr {ips} jump {}", chain_name("eg", &p.id));
        }
        for p in &s.ports {
            let ips = set(p.ips.iter().map(ToString::to_string));
            let _ = writeln!(out, "    oifname \"{br}\" ip daddr {ips} jump {}", chain_name("in", &p.id));
        }
    }
    out.push_str("  }\n");
    for s in &plan.subnets {
        for p in &s.ports {
            port_chains(&mut out, p);
        }
    }
    out.push_str("}\n");
    out.push_str("table bridge prismnet {\n");
    out.push_str("  chain prerouting {\n    type filter hook prerouting priority 0; policy accept;\n");
    for s in &plan.subnets {
        for p in &s.ports {
            let _ = writeln!(out, "    iifname \"{}\" jump {}", port_dev(&p.id), chain_name("sp", &p.id));
        }
    }
    out.push_str("  }\n");
    for s in &plan.subnets {
        for p in &s.ports {
            let ips = set(p.ips.iter().map(ToString::to_string));
            let _ = writeln!(out, "  chain {} {{", chain_name("sp", &p.id));
            let _ = writeln!(out, "    ether saddr != {} drop", p.mac);
            let _ = writeln!(out, "    ether type arp arp saddr ether != {} drop", p.mac);
            let _ = writeln!(out, "    ether type arp arp saddr ip != {ips} drop");
            out.push_str("    ether type ip ip saddr 0.0.0.0 udp dport 67 return\n");
            let _ = writeln!(out, "    ether type ip ip saddr != {ips} drop");
            out.push_str("    ether type ip6 drop\n  }\n");
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Plug;
    use crate::plan::SubnetPlan;

    fn plan() -> HostPlan {
        let port = PortPlan {
            id: "port-abcdefghijkl".into(),
            mac: "52:54:00:00:00:01".into(),
            ips: vec!["10.0.0.5".parse().unwrap()],
            plug: Plug::Tap,
            standby: false,
            ingress: vec![
                RulePlan { protocol: Protocol::Tcp, ports: Some((80, 80)), remotes: None },
                RulePlan { protocol: Protocol::Any, ports: None, remotes: Some(vec![]) },
                RulePlan { protocol: Protocol::Icmp, ports: None, remotes: Some(vec!["10.0.0.0/24".parse().unwrap()]) },
            ],
            egress: vec![RulePlan { protocol: Protocol::Any, ports: None, remotes: None }],
        };
        HostPlan {
            host: "h".into(),
            version: 1,
            subnets: vec![SubnetPlan {
                id: "s".into(),
                vni: 1000,
                cidr: "10.0.0.0/24".parse().unwrap(),
                gateway: None,
                dns_servers: vec![],
                mtu: 1450,
                peers: vec![],
                dhcp: None,
                ports: vec![port],
            }],
        }
    }

    #[test]
    fn the_ruleset_names_bridges_ports_and_rules() {
        let r = render(&plan());
        assert!(r.contains("iifname \"pnb3e8\" ip saddr 10.0.0.5 jump eg_port_abcdefghijkl"), "{r}");
        assert!(r.contains("oifname \"pnb3e8\" ip daddr 10.0.0.5 jump in_port_abcdefghijkl"), "{r}");
        assert!(r.contains("meta l4proto tcp th dport 80 accept"), "{r}");
        assert!(r.contains("meta l4proto icmp ip saddr 10.0.0.0/24 accept"), "{r}");
        assert!(!r.contains("ip saddr {  }"), "an empty group renders no rule: {r}");
        assert!(r.contains("iifname \"ptabcdefghijkl\" jump sp_port_abcdefghijkl"), "{r}");
        assert!(r.contains("ether saddr != 52:54:00:00:00:01 drop"), "{r}");
        assert_eq!(port_dev("port-abcdefghijkl").len(), 14);
    }
}
