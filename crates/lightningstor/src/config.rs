//! A storage node's configuration (`ultracloud lightningstor-node`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use ultracloud_runtime::config::{ConfigError, Validate};

use crate::data::StorageNode;
use crate::layout::Member;

/// Defaults, then `--config` TOML, then `ULTRACLOUD_*` environment, then flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// The node's name in the layout (stable: a new disk is a new name).
    pub name: String,
    /// Where the blocks live (locked while the node runs).
    pub data_dir: PathBuf,
    /// The block API listener.
    pub listen: SocketAddr,
    /// The admin listener (health, readiness, metrics).
    pub admin_listen: SocketAddr,
    /// fsync every block and its directory entry before acknowledging the write. Off only for a
    /// benchmark that says so.
    pub fsync: bool,
    /// The largest block accepted (the gateway cuts objects into blocks of at most this).
    pub max_block_bytes: usize,
    /// Every storage node, this one included, as `name=url,…` (`store1=https://10.0.0.1:8780`):
    /// the layout the repair worker restores copies to. Empty: no repair.
    pub peers: String,
    /// Copies of each block (the gateways' setting; the repair worker keeps this many).
    pub replication: usize,
    /// Seconds between repair passes.
    pub repair_interval_s: u64,
    /// Seconds between scrubs (every block read and checked against its name; rot is set
    /// aside and the repair restores it from another copy); 0: only on request.
    pub scrub_interval_s: u64,
    /// The TLS directory (`ultracloud ca issue`): the listener speaks TLS and admits only
    /// control-plane and admin certificates. Without it the node listens on loopback only.
    pub tls_dir: Option<PathBuf>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: "default".into(),
            data_dir: ultracloud_runtime::data_dir::default_root().join("lightningstor-node"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8780)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9108)),
            fsync: true,
            max_block_bytes: 8 * 1024 * 1024,
            peers: String::new(),
            replication: 3,
            repair_interval_s: 60,
            scrub_interval_s: 7 * 24 * 3600,
            tls_dir: None,
        }
    }
}

impl Validate for NodeConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !ultracloud_runtime::names::is_valid_name(&self.name) {
            return Err(ConfigError::invalid("name", &self.name, "lowercase letters, digits and dashes"));
        }
        ultracloud_tls::refuse_cleartext_beyond_loopback("lightningstor-node", self.listen, self.tls_dir.is_some())
            .map_err(|why| ConfigError::invalid("listen", self.listen, &why))?;
        if self.max_block_bytes < 4096 || self.max_block_bytes > 64 * 1024 * 1024 {
            return Err(ConfigError::invalid("max_block_bytes", self.max_block_bytes, "between 4096 and 67108864"));
        }
        if self.replication == 0 {
            return Err(ConfigError::invalid("replication", 0, "at least 1"));
        }
        if self.repair_interval_s == 0 {
            return Err(ConfigError::invalid("repair_interval_s", 0, "at least 1"));
        }
        let peers = self.peer_nodes()?;
        if !peers.is_empty() && !peers.iter().any(|p| p.member.id == self.name) {
            return Err(ConfigError::invalid(
                "peers",
                &self.peers,
                &format!("a list that includes this node ({})", self.name),
            ));
        }
        Ok(())
    }
}

impl NodeConfig {
    /// `peers` as storage nodes (one zone, weight 1 each).
    pub fn peer_nodes(&self) -> Result<Vec<StorageNode>, ConfigError> {
        parse_nodes("peers", &self.peers)
    }
}

/// A list of storage nodes, `name=url,…` (one zone, weight 1 each), the setting `field`.
pub fn parse_nodes(field: &str, list: &str) -> Result<Vec<StorageNode>, ConfigError> {
    let mut out: Vec<StorageNode> = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| ConfigError::invalid(field, part, "entries of the form name=http(s)://host:port"))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::invalid(field, part, "a URL starting with http:// or https://"));
        }
        if out.iter().any(|n| n.member.id == name) {
            return Err(ConfigError::invalid(field, part, "each name once"));
        }
        out.push(StorageNode {
            member: Member { id: name.to_owned(), zone: String::new(), weight: 1 },
            url: url.to_owned(),
        });
    }
    Ok(out)
}
