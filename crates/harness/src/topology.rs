//! What the test cluster is: its nodes, their roles and addresses, the lab network, the ports.

use std::net::{Ipv4Addr, SocketAddr};

/// Prefix of every name the harness creates (namespaces, links): how leftovers are found.
pub const PREFIX: &str = "uclab";

/// The namespace holding the lab bridge.
pub const NET_NS: &str = "uclab-net";

/// The bridge inside [`NET_NS`].
pub const BRIDGE: &str = "br0";

/// The host's end of the host ↔ lab veth.
pub const HOST_LINK: &str = "uclab0";

/// Ports every node's services listen on (on the node's own address).
pub mod ports {
    /// Node agent admin.
    pub const AGENT: u16 = 9100;
    /// chainfire clients (etcd v3).
    pub const CHAINFIRE: u16 = 2379;
    /// chainfire peers.
    pub const CHAINFIRE_PEER: u16 = 2380;
    /// chainfire admin.
    pub const CHAINFIRE_ADMIN: u16 = 9101;
    /// flaredb API and peers.
    pub const FLAREDB: u16 = 2479;
    /// flaredb admin.
    pub const FLAREDB_ADMIN: u16 = 9102;
    /// iam API.
    pub const IAM: u16 = 8480;
    /// iam admin.
    pub const IAM_ADMIN: u16 = 9103;
    /// prismnet controller API.
    pub const PRISMNET: u16 = 8580;
    /// prismnet controller admin.
    pub const PRISMNET_ADMIN: u16 = 9104;
    /// prismnet agent admin.
    pub const PRISMNET_AGENT_ADMIN: u16 = 9105;
    /// plasmavmc controller API.
    pub const PLASMAVMC: u16 = 8680;
    /// plasmavmc controller admin.
    pub const PLASMAVMC_ADMIN: u16 = 9106;
    /// plasmavmc agent disk-transfer API.
    pub const PLASMAVMC_AGENT: u16 = 8681;
    /// plasmavmc agent admin.
    pub const PLASMAVMC_AGENT_ADMIN: u16 = 9107;
    /// lightningstor storage node block API.
    pub const LIGHTNINGSTOR_NODE: u16 = 8780;
    /// lightningstor storage node admin.
    pub const LIGHTNINGSTOR_NODE_ADMIN: u16 = 9108;
    /// lightningstor S3 gateway.
    pub const LIGHTNINGSTOR: u16 = 8790;
    /// lightningstor S3 gateway admin.
    pub const LIGHTNINGSTOR_ADMIN: u16 = 9109;
}

/// A node's job in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// chainfire, flaredb, iam, the prismnet and plasmavmc controllers (and more as they land).
    ControlPlane,
    /// Agents that run tenant workloads (the prismnet and plasmavmc agents, more as they land).
    Worker,
    /// The public entry (apigateway, nightlight, creditservice as they land).
    Gateway,
}

impl Role {
    /// The node agent's name for it.
    pub fn agent_role(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
            Role::Gateway => "gateway",
        }
    }
}

/// One node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `node01` … `node06`.
    pub name: String,
    /// Its address on the lab network.
    pub ip: Ipv4Addr,
    /// Its role.
    pub role: Role,
}

impl Node {
    /// Its network namespace.
    pub fn ns(&self) -> String {
        format!("{PREFIX}-{}", self.name)
    }

    /// `ip:port` on this node.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.ip, port))
    }
}

/// The whole cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The lab network's first three octets (a /24).
    pub subnet: [u8; 3],
    /// Nodes, in boot order.
    pub nodes: Vec<Node>,
}

impl Default for Topology {
    /// node01–03 control plane, node04–05 workers, node06 gateway, on 10.231.0.0/24.
    fn default() -> Self {
        let subnet = [10, 231, 0];
        let role = |i: u8| match i {
            1..=3 => Role::ControlPlane,
            4 | 5 => Role::Worker,
            _ => Role::Gateway,
        };
        let nodes = (1..=6u8)
            .map(|i| Node {
                name: format!("node{i:02}"),
                ip: Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 10 + i),
                role: role(i),
            })
            .collect();
        Self { subnet, nodes }
    }
}

impl Topology {
    /// The host's address on the lab network.
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], 1)
    }

    /// The lab network, `a.b.c.0/24`.
    pub fn cidr(&self) -> String {
        format!("{}.{}.{}.0/24", self.subnet[0], self.subnet[1], self.subnet[2])
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The control-plane nodes.
    pub fn control_plane(&self) -> Vec<&Node> {
        self.nodes.iter().filter(|n| n.role == Role::ControlPlane).collect()
    }

    /// `host:port` of a service on every control-plane node, comma-separated.
    pub fn control_plane_endpoints(&self, port: u16) -> String {
        self.control_plane().iter().map(|n| n.addr(port).to_string()).collect::<Vec<_>>().join(",")
    }

    /// Checks the definition: unique names and addresses inside the lab network, three
    /// control-plane nodes, names that fit interface-name limits.
    pub fn validate(&self) -> Result<(), String> {
        if self.control_plane().len() != 3 {
            return Err(format!("need exactly 3 control-plane nodes, have {}", self.control_plane().len()));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.ns().len() > 15 || !n.name.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("node name {:?}: up to 9 letters and digits", n.name));
            }
            let o = n.ip.octets();
            if o[..3] != self.subnet || o[3] < 2 || o[3] == 255 {
                return Err(format!("{}: address {} is not a host address of {}", n.name, n.ip, self.cidr()));
            }
            if self.nodes[..i].iter().any(|m| m.name == n.name || m.ip == n.ip) {
                return Err(format!("{}: name or address {} used twice", n.name, n.ip));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cluster_is_valid() {
        let t = Topology::default();
        t.validate().unwrap();
        assert_eq!(t.nodes.len(), 6);
        assert_eq!(t.node("node04").unwrap().role, Role::Worker);
        assert_eq!(t.node("node01").unwrap().ns(), "uclab-node01");
        assert_eq!(t.control_plane_endpoints(2479), "10.231.0.11:2479,10.231.0.12:2479,10.231.0.13:2479");
        assert_eq!(t.host_ip().to_string(), "10.231.0.1");
    }

    #[test]
    fn bad_definitions_are_named() {
        let mut t = Topology::default();
        t.nodes[1].ip = t.nodes[0].ip;
        assert!(t.validate().unwrap_err().contains("used twice"));
        let mut t = Topology::default();
        t.nodes[3].role = Role::ControlPlane;
        assert!(t.validate().unwrap_err().contains("3 control-plane"));
        let mut t = Topology::default();
        t.nodes[0].ip = Ipv4Addr::new(192, 168, 1, 1);
        assert!(t.validate().unwrap_err().contains("not a host address"));
    }
}
