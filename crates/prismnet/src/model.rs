//! prismnet's resources, as stored and as the API shows them. Every resource belongs to a
//! tenant's project; IDs are random and unique platform-wide.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;
use crate::ipam::Pool;

/// Where a resource lives (the kit's).
pub use ultracloud_resource::Owner;

/// A tenant's private network: an address space its subnets are carved from. CIDRs may
/// overlap other VPCs (also of other tenants): isolation is by VNI, not by address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    /// ID.
    pub id: String,
    /// Owner.
    #[serde(flatten)]
    pub owner: Owner,
    /// Labels, annotations, revision, who made and changed it, when.
    #[serde(default)]
    pub meta: ultracloud_resource::Meta,
    /// Name (unique in the project).
    pub name: String,
    /// Address space.
    pub cidr: Cidr,
}

/// A subnet of a VPC: one L2 segment spanning every worker with a port in it (one VXLAN VNI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    /// ID.
    pub id: String,
    /// Owner.
    #[serde(flatten)]
    pub owner: Owner,
    /// Labels, annotations, revision, who made and changed it, when.
    #[serde(default)]
    pub meta: ultracloud_resource::Meta,
    /// Its VPC.
    pub vpc: String,
    /// Name (unique in the project).
    pub name: String,
    /// Addresses (inside the VPC's).
    pub cidr: Cidr,
    /// The gateway address handed out by DHCP (none: no default route).
    pub gateway: Option<Ipv4Addr>,
    /// Whether DHCP serves the ports.
    pub dhcp: bool,
    /// DNS servers handed out by DHCP.
    #[serde(default)]
    pub dns_servers: Vec<Ipv4Addr>,
    /// Where port addresses come from.
    pub pools: Vec<Pool>,
    /// The VXLAN network identifier (allocated).
    pub vni: u32,
}

/// A router: attaches subnets of one VPC, with static routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Router {
    /// ID.
    pub id: String,
    /// Owner.
    #[serde(flatten)]
    pub owner: Owner,
    /// Labels, annotations, revision, who made and changed it, when.
    #[serde(default)]
    pub meta: ultracloud_resource::Meta,
    /// Its VPC.
    pub vpc: String,
    /// Name.
    pub name: String,
    /// Attached subnets (IDs).
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Static routes.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination.
    pub destination: Cidr,
    /// Next hop (inside an attached subnet).
    pub nexthop: Ipv4Addr,
}

/// Traffic direction of a rule, seen from the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic to the port.
    Ingress,
    /// Traffic from the port.
    Egress,
}

/// IP protocol of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Any protocol.
    Any,
    /// TCP (ports apply).
    Tcp,
    /// UDP (ports apply).
    Udp,
    /// ICMP.
    Icmp,
}

/// One stateful rule: replies to allowed traffic are always allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Direction.
    pub direction: Direction,
    /// Protocol.
    pub protocol: Protocol,
    /// First port (TCP/UDP; none: all).
    #[serde(default)]
    pub port_min: Option<u16>,
    /// Last port (default: `port_min`).
    #[serde(default)]
    pub port_max: Option<u16>,
    /// The other side's addresses (default: anywhere, unless `remote_group` is set).
    #[serde(default)]
    pub remote_cidr: Option<Cidr>,
    /// The other side: every port of this security group.
    #[serde(default)]
    pub remote_group: Option<String>,
}

impl std::str::FromStr for Rule {
    type Err = String;

    /// The short form the CLI takes: `DIRECTION,PROTOCOL[,PORTS][,REMOTE]` — `ingress,tcp,80`,
    /// `ingress,tcp,8000-8080,10.0.0.0/8`, `ingress,any,,group=web`, `egress,any`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let (Some(dir), Some(proto), None) = (parts.first(), parts.get(1), parts.get(4)) else {
            return Err(format!("rule {s:?}: use DIRECTION,PROTOCOL[,PORTS][,REMOTE], e.g. ingress,tcp,80,10.0.0.0/8"));
        };
        fn word<T: serde::de::DeserializeOwned>(s: &str, w: &str, what: &str, choices: &str) -> Result<T, String> {
            serde_json::from_value(serde_json::Value::String(w.to_lowercase()))
                .map_err(|_| format!("rule {s:?}: {what} {w:?} is not one of {choices}"))
        }
        let mut rule = Rule {
            direction: word(s, dir, "direction", "ingress, egress")?,
            protocol: word(s, proto, "protocol", "any, tcp, udp, icmp")?,
            port_min: None,
            port_max: None,
            remote_cidr: None,
            remote_group: None,
        };
        if let Some(ports) = parts.get(2).filter(|p| !p.is_empty()) {
            let port = |p: &str| p.parse::<u16>().map_err(|e| format!("rule {s:?}: port {p:?}: {e}"));
            let (a, b) = ports.split_once('-').unwrap_or((ports, ports));
            rule.port_min = Some(port(a)?);
            rule.port_max = Some(port(b)?);
        }
        if let Some(remote) = parts.get(3).filter(|p| !p.is_empty()) {
            match remote.strip_prefix("group=") {
                Some(g) => rule.remote_group = Some(g.to_owned()),
                None => rule.remote_cidr = Some(remote.parse().map_err(|e| format!("rule {s:?}: {remote:?}: {e}"))?),
            }
        }
        Ok(rule)
    }
}

/// A security group: the rules of its ports. No rule: deny ingress, deny egress — a new
/// group gets the defaults (allow all egress, allow ingress from the group itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// ID.
    pub id: String,
    /// Owner.
    #[serde(flatten)]
    pub owner: Owner,
    /// Labels, annotations, revision, who made and changed it, when.
    #[serde(default)]
    pub meta: ultracloud_resource::Meta,
    /// Name.
    pub name: String,
    /// Rules.
    pub rules: Vec<Rule>,
}

impl SecurityGroup {
    /// The rules of a new group: egress anywhere; ingress from members of the group.
    pub fn default_rules(id: &str) -> Vec<Rule> {
        vec![
            Rule {
                direction: Direction::Egress,
                protocol: Protocol::Any,
                port_min: None,
                port_max: None,
                remote_cidr: None,
                remote_group: None,
            },
            Rule {
                direction: Direction::Ingress,
                protocol: Protocol::Any,
                port_min: None,
                port_max: None,
                remote_cidr: None,
                remote_group: Some(id.to_owned()),
            },
        ]
    }
}

/// How a port is plugged in on its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Plug {
    /// A tap device for a VM (QEMU opens it by name).
    Tap,
    /// A veth whose far end is moved into a network namespace as `eth0` (containers, pods,
    /// test "VMs").
    Netns {
        /// The namespace (it must exist on the host).
        netns: String,
    },
}

/// A port binding: which host plugs the port in, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The host (its prismnet agent's name).
    pub host: String,
    /// The plug.
    pub plug: Plug,
    /// A second host where the port's device also exists, detached and down: a live
    /// migration's target, whose incoming VM opens the tap before the port moves there (the
    /// next binding, to that host, attaches it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<String>,
}

impl Binding {
    /// Whether the port has a device on `host` (bound there, or standing by there).
    pub fn on(&self, host: &str) -> bool {
        self.host == host || self.standby.as_deref() == Some(host)
    }
}

/// A port: a MAC and fixed addresses on a subnet, with security groups, maybe bound to a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// ID.
    pub id: String,
    /// Owner.
    #[serde(flatten)]
    pub owner: Owner,
    /// Labels, annotations, revision, who made and changed it, when.
    #[serde(default)]
    pub meta: ultracloud_resource::Meta,
    /// Its subnet.
    pub subnet: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// MAC address (`52:54:00:…` when generated).
    pub mac: String,
    /// Fixed addresses (from IPAM, or requested).
    pub fixed_ips: Vec<Ipv4Addr>,
    /// Security groups (IDs).
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Where it is plugged in.
    #[serde(default)]
    pub binding: Option<Binding>,
    /// What uses it (`compute:vm/<id>`, `network:dhcp`, …).
    #[serde(default)]
    pub device_owner: String,
}

/// A service IP: a virtual address from a subnet, for load balancers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceIp {
    /// ID.
    pub id: String,
    /// Owner.
    #[serde(flatten)]
    pub owner: Owner,
    /// Labels, annotations, revision, who made and changed it, when.
    #[serde(default)]
    pub meta: ultracloud_resource::Meta,
    /// The subnet it is allocated in.
    pub subnet: String,
    /// The address.
    pub address: Ipv4Addr,
    /// Name.
    #[serde(default)]
    pub name: String,
}

/// Whether `mac` is a unicast MAC address `aa:bb:cc:dd:ee:ff`.
pub fn valid_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0)
}

/// A locally administered MAC derived from random bytes (`52:54:00` is QEMU's prefix).
pub fn generate_mac() -> String {
    // Six base-36 characters of a random ID carry more than 24 bits.
    let id = ultracloud_iam::credential::new_id();
    let n = id.chars().take(6).filter_map(|c| c.to_digit(36)).fold(0u64, |acc, d| acc * 36 + u64::from(d));
    format!("52:54:00:{:02x}:{:02x}:{:02x}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_from_their_short_form() {
        let r: Rule = "ingress,tcp,8000-8080,10.0.0.0/8".parse().unwrap();
        assert_eq!((r.port_min, r.port_max), (Some(8000), Some(8080)));
        assert_eq!((r.direction, r.protocol), (Direction::Ingress, Protocol::Tcp));
        assert_eq!(r.remote_cidr.unwrap().to_string(), "10.0.0.0/8");
        let g: Rule = "ingress,any,,group=web".parse().unwrap();
        assert_eq!(g.remote_group.as_deref(), Some("web"));
        assert_eq!("egress,ANY".parse::<Rule>().unwrap().protocol, Protocol::Any);
        for bad in ["ingress", "ingress,tcp,eighty", "ingress,tcp,80,10.0.0.0/33", "ingress,tcp,80,,x"] {
            assert!(bad.parse::<Rule>().is_err(), "{bad}");
        }
        let e = "inbound,tcp".parse::<Rule>().unwrap_err();
        assert!(e.contains("direction \"inbound\""), "{e}");
    }

    #[test]
    fn macs() {
        assert!(valid_mac("52:54:00:ab:cd:ef"));
        assert!(!valid_mac("53:54:00:ab:cd:ef"), "multicast");
        assert!(!valid_mac("52:54:00:ab:cd"));
        assert!(!valid_mac("52:54:00:ab:cd:eg"));
        let m = generate_mac();
        assert!(valid_mac(&m), "{m}");
    }

    #[test]
    fn default_group_rules() {
        let r = SecurityGroup::default_rules("sg1");
        assert!(r.iter().any(|r| r.direction == Direction::Egress && r.remote_group.is_none()));
        assert!(r.iter().any(|r| r.direction == Direction::Ingress && r.remote_group.as_deref() == Some("sg1")));
    }
}
