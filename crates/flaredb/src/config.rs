//! flaredb's configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use ultracloud_runtime::config::{ConfigError, Validate};

use crate::region::NodeId;

/// flaredb's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlaredbConfig {
    /// Node name; the node ID is derived from it, so it must be unique in the cluster.
    pub name: String,
    /// Where the Raft logs and the data live.
    pub data_dir: PathBuf,
    /// Where the HTTP API (clients and peers) listens.
    pub listen: SocketAddr,
    /// `host:port` announced to other nodes and clients (default: `listen`).
    pub advertise: Option<String>,
    /// `name=host:port,…` of the nodes that form a new cluster (default: this node alone). The
    /// first three hold the placement component (the meta group).
    pub initial_cluster: String,
    /// Addresses of running nodes to join instead of forming a cluster (`host:port,…`).
    pub join: String,
    /// Admin listener (`/healthz`, `/readyz`, `/metrics`, `/version`).
    pub admin_listen: SocketAddr,
    /// Replicas per region (fewer while the cluster has fewer nodes).
    pub replication_factor: usize,
    /// Split a region when it holds more keys than this.
    pub region_split_keys: u64,
    /// Split a region when its versions take more bytes than this.
    pub region_split_bytes: u64,
    /// A node silent for this long is considered down and its replicas are re-created elsewhere.
    pub node_down_after_ms: u64,
    /// Interval of node heartbeats (and of the placement and split checks).
    pub heartbeat_ms: u64,
    /// Raft heartbeat interval in milliseconds.
    pub raft_heartbeat_ms: u64,
    /// Raft election timeout in milliseconds.
    pub raft_election_timeout_ms: u64,
    /// Versions older than this (milliseconds) may be garbage-collected.
    pub gc_life_ms: u64,
    /// Interval between garbage collections of each region (milliseconds).
    pub gc_interval_ms: u64,
    /// Largest HTTP request body.
    pub max_request_bytes: usize,
    /// TLS directory (`ca.pem`, `cert.pem`, `key.pem`, from `ultracloud ca issue`): the API
    /// speaks TLS only, every client must present a certificate of the cluster CA (role
    /// control-plane, or admin for operators; peers' internal routes control-plane only), and
    /// peers are reached over TLS. Required to listen beyond loopback.
    pub tls_dir: Option<PathBuf>,
}

impl Default for FlaredbConfig {
    fn default() -> Self {
        Self {
            name: "default".into(),
            data_dir: ultracloud_runtime::data_dir::default_root().join("flaredb"),
            listen: SocketAddr::from(([127, 0, 0, 1], 2479)),
            advertise: None,
            initial_cluster: String::new(),
            join: String::new(),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9102)),
            replication_factor: 3,
            region_split_keys: 100_000,
            region_split_bytes: 64 * 1024 * 1024,
            node_down_after_ms: 30_000,
            heartbeat_ms: 1_000,
            raft_heartbeat_ms: 150,
            raft_election_timeout_ms: 1_500,
            gc_life_ms: 10 * 60 * 1000,
            gc_interval_ms: 60 * 1000,
            max_request_bytes: 8 * 1024 * 1024,
            tls_dir: None,
        }
    }
}

/// A member of `initial_cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialNode {
    /// Its name.
    pub name: String,
    /// Its `host:port`.
    pub addr: String,
}

/// The node ID of a node name (stable, never 0).
pub fn node_id(name: &str) -> NodeId {
    // FNV-1a: stable across builds and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

fn check_addr(field: &str, addr: &str) -> Result<(), ConfigError> {
    let ok = addr.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if ok { Ok(()) } else { Err(ConfigError::invalid(field, addr, "host:port")) }
}

impl FlaredbConfig {
    /// The address announced to others.
    pub fn advertise_addr(&self) -> String {
        self.advertise.clone().unwrap_or_else(|| self.listen.to_string())
    }

    /// The nodes that form a new cluster; this node alone when `initial_cluster` is empty.
    pub fn initial_nodes(&self) -> Result<Vec<InitialNode>, ConfigError> {
        if self.initial_cluster.trim().is_empty() {
            return Ok(vec![InitialNode { name: self.name.clone(), addr: self.advertise_addr() }]);
        }
        let mut out: Vec<InitialNode> = Vec::new();
        for part in self.initial_cluster.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, addr) = part
                .split_once('=')
                .ok_or_else(|| ConfigError::invalid("initial_cluster", part, "entries of the form name=host:port"))?;
            check_addr("initial_cluster", addr)?;
            if out.iter().any(|n| n.name == name) {
                return Err(ConfigError::invalid("initial_cluster", part, "each name once"));
            }
            out.push(InitialNode { name: name.to_owned(), addr: addr.to_owned() });
        }
        Ok(out)
    }

    /// Addresses to join (empty: form or restart a cluster).
    pub fn join_addrs(&self) -> Vec<String> {
        self.join.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }

    /// The Raft configuration of every group.
    pub fn raft_config(&self) -> openraft::Config {
        openraft::Config {
            cluster_name: "flaredb".into(),
            heartbeat_interval: self.raft_heartbeat_ms,
            election_timeout_min: self.raft_election_timeout_ms,
            election_timeout_max: self.raft_election_timeout_ms * 2,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5_000),
            max_in_snapshot_log_to_keep: 1_000,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        }
    }
}

impl Validate for FlaredbConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::invalid("name", "", "a non-empty node name"));
        }
        ultracloud_tls::refuse_cleartext_beyond_loopback("flaredb", self.listen, self.tls_dir.is_some())
            .map_err(|why| ConfigError::invalid("listen", self.listen, &why))?;
        if let Some(a) = &self.advertise {
            check_addr("advertise", a)?;
        }
        for a in self.join_addrs() {
            check_addr("join", &a)?;
        }
        let nodes = self.initial_nodes()?;
        if self.join_addrs().is_empty() && !nodes.iter().any(|n| n.name == self.name) {
            return Err(ConfigError::invalid(
                "initial_cluster",
                &self.initial_cluster,
                &format!("must contain this node's name `{}` (or use --join)", self.name),
            ));
        }
        if !(1..=7).contains(&self.replication_factor) {
            return Err(ConfigError::invalid("replication_factor", self.replication_factor, "1 to 7"));
        }
        if self.region_split_keys < 2 {
            return Err(ConfigError::invalid("region_split_keys", self.region_split_keys, "at least 2"));
        }
        if self.raft_heartbeat_ms == 0 || self.raft_election_timeout_ms < 3 * self.raft_heartbeat_ms {
            return Err(ConfigError::invalid(
                "raft_election_timeout_ms",
                self.raft_election_timeout_ms,
                "at least 3 × raft_heartbeat_ms (and raft_heartbeat_ms > 0)",
            ));
        }
        if self.heartbeat_ms == 0 || self.node_down_after_ms < 2 * self.heartbeat_ms {
            return Err(ConfigError::invalid(
                "node_down_after_ms",
                self.node_down_after_ms,
                "at least 2 × heartbeat_ms",
            ));
        }
        if self.max_request_bytes < 64 * 1024 {
            return Err(ConfigError::invalid("max_request_bytes", self.max_request_bytes, "at least 65536"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_form_a_one_node_cluster() {
        let c = FlaredbConfig::default();
        c.validate().unwrap();
        assert_eq!(c.initial_nodes().unwrap(), [InitialNode { name: "default".into(), addr: "127.0.0.1:2479".into() }]);
    }

    #[test]
    fn bad_values_are_named() {
        let c = FlaredbConfig { initial_cluster: "a=127.0.0.1:1,b".into(), name: "a".into(), ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("initial_cluster"));
        let c = FlaredbConfig { initial_cluster: "x=127.0.0.1:1".into(), ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("must contain"));
        let c = FlaredbConfig { join: "nope".into(), ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("join"));
        assert_ne!(node_id("a"), node_id("b"));
    }
}
