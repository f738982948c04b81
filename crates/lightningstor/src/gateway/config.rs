//! The gateway's configuration (`ultracloud lightningstor`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use ultracloud_resource::setup::split;
use ultracloud_runtime::config::{ConfigError, Validate};

use crate::config::parse_nodes;
use crate::data::StorageNode;

/// Defaults, then `--config` TOML, then `ULTRACLOUD_*` environment, then flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// The runtime's directory (a lock; the gateway keeps no state).
    pub data_dir: PathBuf,
    /// The S3 listener.
    pub listen: SocketAddr,
    /// The admin listener (health, readiness, metrics).
    pub admin_listen: SocketAddr,
    /// flaredb nodes, `host:port,…` (the metadata).
    pub flaredb_endpoints: String,
    /// iam replicas, `http(s)://host:port,…` (access keys).
    pub iam_endpoints: String,
    /// The API key of the gateway's service account, which must hold the `object-gateway`
    /// role platform-wide (it reads access keys' secrets).
    pub api_key_file: PathBuf,
    /// The storage nodes, `name=url,…`.
    pub nodes: String,
    /// Copies of each block (fewer when fewer nodes exist).
    pub replication: usize,
    /// Block size objects are cut into (at most the nodes' `max_block_bytes`).
    pub block_bytes: usize,
    /// With a domain, `BUCKET.domain` addresses a bucket (virtual-host style) besides paths.
    pub domain: Option<String>,
    /// Seconds between garbage-collection passes (one gateway at a time runs one); 0: never.
    pub gc_interval_secs: u64,
    /// Unreferenced blocks younger than this are kept by garbage collection: longer than the
    /// longest PUT (whose blocks are written before its record).
    pub gc_grace_secs: u64,
    /// The TLS directory (`ultracloud ca issue`): the S3 listener speaks TLS (clients show no
    /// certificate; they sign requests), and outbound calls use the cluster identity. Without
    /// it the gateway listens on loopback only.
    pub tls_dir: Option<PathBuf>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            data_dir: ultracloud_runtime::data_dir::default_root().join("lightningstor"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8790)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9109)),
            flaredb_endpoints: "127.0.0.1:2479".into(),
            iam_endpoints: "http://127.0.0.1:8480".into(),
            api_key_file: ultracloud_runtime::data_dir::default_root().join("iam").join("s3-gateway-api-key"),
            nodes: "default=http://127.0.0.1:8780".into(),
            replication: 3,
            block_bytes: 4 * 1024 * 1024,
            domain: None,
            gc_interval_secs: 3600,
            gc_grace_secs: 3600,
            tls_dir: None,
        }
    }
}

impl GatewayConfig {
    /// `nodes` as storage nodes (the same syntax as a storage node's `peers`).
    pub fn storage_nodes(&self) -> Result<Vec<StorageNode>, ConfigError> {
        parse_nodes("nodes", &self.nodes)
    }

    /// Copies per block: `replication`, or every node when there are fewer.
    pub fn copies(&self) -> Result<usize, ConfigError> {
        Ok(self.replication.min(self.storage_nodes()?.len()))
    }
}

impl Validate for GatewayConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ultracloud_tls::refuse_cleartext_beyond_loopback("lightningstor", self.listen, self.tls_dir.is_some())
            .map_err(|why| ConfigError::invalid("listen", self.listen, &why))?;
        if split(&self.flaredb_endpoints).is_empty() {
            return Err(ConfigError::invalid("flaredb_endpoints", &self.flaredb_endpoints, "host:port,…"));
        }
        let iam = split(&self.iam_endpoints);
        if iam.is_empty() || iam.iter().any(|e| !e.starts_with("http://") && !e.starts_with("https://")) {
            return Err(ConfigError::invalid("iam_endpoints", &self.iam_endpoints, "http(s)://host:port,…"));
        }
        if self.storage_nodes()?.is_empty() {
            return Err(ConfigError::invalid("nodes", &self.nodes, "at least one storage node, name=url,…"));
        }
        if self.replication == 0 {
            return Err(ConfigError::invalid("replication", 0, "at least 1"));
        }
        if self.block_bytes < 4096 || self.block_bytes > 64 * 1024 * 1024 {
            return Err(ConfigError::invalid("block_bytes", self.block_bytes, "between 4096 and 67108864"));
        }
        if self.gc_grace_secs < 60 {
            return Err(ConfigError::invalid(
                "gc_grace_secs",
                self.gc_grace_secs,
                "at least 60 (a PUT in flight needs it)",
            ));
        }
        if let Some(d) = &self.domain
            && s3s::host::SingleDomain::new(d).is_err()
        {
            return Err(ConfigError::invalid("domain", d, "a DNS name (s3.example.com)"));
        }
        Ok(())
    }
}
