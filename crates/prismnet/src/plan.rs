//! A host's desired dataplane, as the controller computes it for the host's agent: the subnets
//! with ports bound to the host, their VXLAN peers, DHCP leases, and each local port's
//! expanded security rules.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;
use crate::model::{Direction, Plug, Port, Protocol, SecurityGroup, Subnet};
use crate::ops::{self, DHCP_OWNER};
use crate::store::{Host, Store, StoreError};

/// The MTU of tenant networks: 1500 minus VXLAN's 50 bytes.
pub const MTU: u16 = 1450;

/// Everything one host must have.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPlan {
    /// The host.
    pub host: String,
    /// The version it was computed at.
    pub version: u64,
    /// Subnets present on the host.
    pub subnets: Vec<SubnetPlan>,
}

/// One subnet on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetPlan {
    /// Subnet ID.
    pub id: String,
    /// VXLAN network identifier (names the bridge and VXLAN device).
    pub vni: u32,
    /// Addresses.
    pub cidr: Cidr,
    /// Gateway for DHCP's router option.
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers for DHCP.
    pub dns_servers: Vec<Ipv4Addr>,
    /// MTU (DHCP option 26).
    pub mtu: u16,
    /// The other hosts with ports in the subnet (VXLAN FDB entries).
    pub peers: Vec<Ipv4Addr>,
    /// The local DHCP server, when the subnet has DHCP.
    pub dhcp: Option<DhcpPlan>,
    /// Ports plugged in on this host.
    pub ports: Vec<PortPlan>,
}

/// The DHCP server of a subnet on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpPlan {
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its MAC.
    pub mac: String,
    /// Static leases: the subnet's ports on this host (MAC → address).
    pub leases: Vec<(String, Ipv4Addr)>,
}

/// A local port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortPlan {
    /// Port ID.
    pub id: String,
    /// MAC.
    pub mac: String,
    /// Addresses.
    pub ips: Vec<Ipv4Addr>,
    /// How it is plugged in.
    pub plug: Plug,
    /// Standing by for a live migration: the device exists but stays detached and down.
    #[serde(default)]
    pub standby: bool,
    /// Allowed traffic to the port.
    pub ingress: Vec<RulePlan>,
    /// Allowed traffic from the port.
    pub egress: Vec<RulePlan>,
}

/// One allowed flow, with groups expanded to addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulePlan {
    /// Protocol.
    pub protocol: Protocol,
    /// Port range (TCP/UDP).
    pub ports: Option<(u16, u16)>,
    /// The other side (`None`: anywhere).
    pub remotes: Option<Vec<Cidr>>,
}

fn host_net(ip: Ipv4Addr) -> Cidr {
    Cidr::new(ip, 32).unwrap_or_else(|_| unreachable!("a /32 has no host bits"))
}

/// Expands a port's security groups into rules.
pub fn rules_of(
    port: &Port,
    groups: &BTreeMap<String, SecurityGroup>,
    members: &BTreeMap<String, Vec<Ipv4Addr>>,
) -> (Vec<RulePlan>, Vec<RulePlan>) {
    let (mut ingress, mut egress) = (Vec::new(), Vec::new());
    for g in port.security_groups.iter().filter_map(|id| groups.get(id)) {
        for r in &g.rules {
            let remotes = match (&r.remote_cidr, &r.remote_group) {
                (Some(c), _) => Some(vec![*c]),
                (None, Some(group)) => {
                    Some(members.get(group).map(|ips| ips.iter().copied().map(host_net).collect()).unwrap_or_default())
                }
                (None, None) => None,
            };
            let ports = r.port_min.map(|a| (a, r.port_max.unwrap_or(a)));
            let plan = RulePlan { protocol: r.protocol, ports, remotes };
            match r.direction {
                Direction::Ingress => ingress.push(plan),
                Direction::Egress => egress.push(plan),
            }
        }
    }
    (ingress, egress)
}

/// Computes `host`'s plan, creating the DHCP ports it needs.
pub async fn for_host(store: &Store, host: &str) -> Result<HostPlan, StoreError> {
    let version = store.version().await?;
    let mut ports: Vec<Port> = store.list_all().await?;
    let subnets: BTreeMap<String, Subnet> =
        store.list_all::<Subnet>().await?.into_iter().map(|s| (s.id.clone(), s)).collect();
    let local_subnets: BTreeSet<String> = ports
        .iter()
        .filter(|p| p.device_owner != DHCP_OWNER && p.binding.as_ref().is_some_and(|b| b.on(host)))
        .map(|p| p.subnet.clone())
        .collect();
    // DHCP ports for local subnets with DHCP (created on demand, once per subnet and host).
    for id in &local_subnets {
        if let Some(s) = subnets.get(id).filter(|s| s.dhcp)
            && !ports.iter().any(|p| {
                p.subnet == *id && p.device_owner == DHCP_OWNER && p.binding.as_ref().is_some_and(|b| b.host == host)
            })
        {
            ports.push(ops::ensure_dhcp_port(store, s, host).await?);
        }
    }
    let hosts: BTreeMap<String, Ipv4Addr> =
        crate::store::hosts(store).await?.into_iter().map(|h: Host| (h.name, h.underlay_ip)).collect();
    let groups: BTreeMap<String, SecurityGroup> =
        store.list_all::<SecurityGroup>().await?.into_iter().map(|g| (g.id.clone(), g)).collect();
    let mut members: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    for p in &ports {
        for g in &p.security_groups {
            members.entry(g.clone()).or_default().extend(p.fixed_ips.iter().copied());
        }
    }
    let mut plans = Vec::new();
    for id in &local_subnets {
        let Some(s) = subnets.get(id) else { continue };
        let in_subnet: Vec<&Port> = ports.iter().filter(|p| p.subnet == *id).collect();
        // A standby host is a peer already, so the subnet's traffic reaches it the moment its
        // port is attached there.
        let peers: BTreeSet<Ipv4Addr> = in_subnet
            .iter()
            .filter_map(|p| p.binding.as_ref())
            .flat_map(|b| std::iter::once(&b.host).chain(b.standby.as_ref()))
            .filter(|h| *h != host)
            .filter_map(|h| hosts.get(h).copied())
            .collect();
        let local: Vec<&Port> =
            in_subnet.iter().copied().filter(|p| p.binding.as_ref().is_some_and(|b| b.on(host))).collect();
        let dhcp = local.iter().find(|p| p.device_owner == DHCP_OWNER).filter(|_| s.dhcp).map(|d| DhcpPlan {
            ip: d.fixed_ips.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED),
            mac: d.mac.clone(),
            leases: local
                .iter()
                .filter(|p| p.device_owner != DHCP_OWNER)
                .filter_map(|p| p.fixed_ips.first().map(|ip| (p.mac.clone(), *ip)))
                .collect(),
        });
        let port_plans = local
            .iter()
            .filter(|p| p.device_owner != DHCP_OWNER)
            .filter_map(|p| {
                let (ingress, egress) = rules_of(p, &groups, &members);
                let binding = p.binding.as_ref()?;
                Some(PortPlan {
                    id: p.id.clone(),
                    mac: p.mac.clone(),
                    ips: p.fixed_ips.clone(),
                    plug: binding.plug.clone(),
                    standby: binding.host != host,
                    ingress,
                    egress,
                })
            })
            .collect();
        plans.push(SubnetPlan {
            id: s.id.clone(),
            vni: s.vni,
            cidr: s.cidr,
            gateway: s.gateway,
            dns_servers: s.dns_servers.clone(),
            mtu: MTU,
            peers: peers.into_iter().collect(),
            dhcp,
            ports: port_plans,
        });
    }
    Ok(HostPlan { host: host.to_owned(), version, subnets: plans })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Owner, Rule};

    #[test]
    fn groups_expand_to_member_addresses_and_cidrs() {
        let owner = Owner { tenant: "t".into(), project: "p".into() };
        let web = SecurityGroup {
            id: "sg-web".into(),
            owner: owner.clone(),
            meta: Default::default(),
            name: "web".into(),
            rules: vec![
                Rule {
                    direction: Direction::Ingress,
                    protocol: Protocol::Tcp,
                    port_min: Some(80),
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
                    remote_group: Some("sg-web".into()),
                },
                Rule {
                    direction: Direction::Egress,
                    protocol: Protocol::Udp,
                    port_min: Some(53),
                    port_max: Some(53),
                    remote_cidr: Some("10.9.0.0/16".parse().unwrap()),
                    remote_group: None,
                },
            ],
        };
        let port = Port {
            id: "p1".into(),
            owner,
            meta: Default::default(),
            subnet: "s".into(),
            name: String::new(),
            mac: "52:54:00:00:00:01".into(),
            fixed_ips: vec!["10.0.0.5".parse().unwrap()],
            security_groups: vec!["sg-web".into()],
            binding: None,
            device_owner: String::new(),
        };
        let groups = BTreeMap::from([("sg-web".to_owned(), web)]);
        let members =
            BTreeMap::from([("sg-web".to_owned(), vec!["10.0.0.5".parse().unwrap(), "10.0.0.6".parse().unwrap()])]);
        let (ingress, egress) = rules_of(&port, &groups, &members);
        assert_eq!(ingress[0], RulePlan { protocol: Protocol::Tcp, ports: Some((80, 80)), remotes: None });
        assert_eq!(ingress[1].remotes.as_ref().unwrap().len(), 2);
        assert_eq!(egress[0].ports, Some((53, 53)));
    }
}
