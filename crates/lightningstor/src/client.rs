//! A typed client of one storage node (the gateway and the repair address nodes one by one:
//! placement, not failover, decides which node a block goes to).

pub mod s3;

use ultracloud_tls::replicas::{Client, ClientError};

pub use crate::data::{BlockRef, Cluster, DataError, StorageNode, Written};

pub use crate::blocks::Collected;

use crate::api::{BlockId, BlockPage, NodeStatus, ScrubReport, Stored};
use crate::repair::{RepairReport, RepairStatus};

/// One storage node's block API.
#[derive(Debug, Clone)]
pub struct NodeClient {
    client: Client,
}

impl NodeClient {
    /// The service name in errors.
    pub const SERVICE: &'static str = "lightningstor-node";

    /// A client of the node at `url` (`http(s)://host:port`), with the process's TLS identity.
    /// One attempt per call: a caller with a failed node tries another copy rather than wait
    /// for this one.
    pub fn new(url: &str) -> Result<Self, ClientError> {
        Ok(Self { client: Client::new(Self::SERVICE, &[url])?.with_rounds(1) })
    }

    /// Stores `data` under its name; the answer says whether the node already had it.
    pub async fn put(&self, data: Vec<u8>) -> Result<Stored, ClientError> {
        let id = BlockId::of(&data);
        self.client.put(&["v1", "blocks", &id.to_string()]).bytes(data).fetch().await
    }

    /// Block `id`'s bytes; `Ok(None)` when the node does not hold it. The bytes are checked
    /// against the name here too (a node or the network could have damaged them).
    pub async fn get(&self, id: BlockId) -> Result<Option<Vec<u8>>, ClientError> {
        match self.client.get(&["v1", "blocks", &id.to_string()]).send().await {
            Ok(answer) if BlockId::of(&answer.body) == id => Ok(Some(answer.body.to_vec())),
            Ok(_) => Err(ClientError::Invalid(format!("block {id} arrived damaged"))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Block `id`'s bytes as the node checked them before answering (every node read is
    /// checked against the name, and rot is set aside there); `Ok(None)` when the node does
    /// not hold it. The data path's read: TCP (and TLS between machines) protects the hop, so
    /// the bytes are not hashed a second time here — [`NodeClient::get`] does, for callers
    /// that want to.
    pub async fn read(&self, id: BlockId) -> Result<Option<bytes::Bytes>, ClientError> {
        match self.client.get(&["v1", "blocks", &id.to_string()]).send().await {
            Ok(answer) => Ok(Some(answer.body)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the node holds block `id`.
    pub async fn has(&self, id: BlockId) -> Result<bool, ClientError> {
        match self.client.request(http::Method::HEAD, &["v1", "blocks", &id.to_string()]).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes block `id`; `Ok(false)` when the node did not hold it.
    pub async fn delete(&self, id: BlockId) -> Result<bool, ClientError> {
        match self.client.delete(&["v1", "blocks", &id.to_string()]).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Garbage collection's delete: removes block `id` only if the node last wrote it before
    /// `cutoff_ms` (ms since the epoch).
    pub async fn collect(&self, id: BlockId, cutoff_ms: u64) -> Result<Collected, ClientError> {
        match self.client.delete(&["v1", "blocks", &id.to_string()]).query("older_than_ms", cutoff_ms).send().await {
            Ok(_) => Ok(Collected::Deleted),
            Err(e) if e.is_not_found() => Ok(Collected::Missing),
            Err(e) if e.status() == Some(409) => Ok(Collected::Recent),
            Err(e) => Err(e),
        }
    }

    /// One page of the node's block names after `after`.
    pub async fn list(&self, after: Option<BlockId>, limit: usize) -> Result<BlockPage, ClientError> {
        let mut call = self.client.get(&["v1", "blocks"]).query("limit", limit);
        if let Some(a) = after {
            call = call.query("after", a);
        }
        call.fetch().await
    }

    /// What the node holds.
    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        self.client.get(&["v1", "status"]).fetch().await
    }

    /// Checks every block on the node.
    pub async fn scrub(&self) -> Result<ScrubReport, ClientError> {
        self.client.post(&["v1", "scrub"]).timeout(std::time::Duration::from_secs(3600)).fetch().await
    }

    /// The node's repair worker.
    pub async fn repair_status(&self) -> Result<RepairStatus, ClientError> {
        self.client.get(&["v1", "repair"]).fetch().await
    }

    /// Runs a repair pass on the node now and returns what it did.
    pub async fn repair(&self) -> Result<RepairReport, ClientError> {
        self.client.post(&["v1", "repair"]).timeout(std::time::Duration::from_secs(3600)).fetch().await
    }
}
