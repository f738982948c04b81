//! The data path across storage nodes.
//!
//! A block goes to the nodes the [`Layout`] ranks first for it; when one of them fails, the
//! next-ranked node takes its copy (so a write keeps `copies` copies while a node is down, and
//! rebalancing later moves the copy home). The write is acknowledged once every copy it could
//! place is durable and at least a majority of `copies` is. A read tries the nodes in the same
//! ranking — the usual holders first, then the ones that took copies for them — and accepts the
//! first copy whose bytes match the name.
//!
//! Objects are streams of blocks ([`Cluster::write_stream`], [`Cluster::read_range`]) with a
//! fixed number of blocks in flight, so memory stays at `(IN_FLIGHT + 1) × block_bytes` per
//! stream whatever the object's size.

use std::collections::HashMap;
use std::fmt::Display;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::api::BlockId;
use crate::client::NodeClient;
use crate::layout::{Layout, LayoutError, Member};

/// Blocks written or read ahead at once by one stream.
pub const IN_FLIGHT: usize = 4;

/// A storage node: where it sits in the layout and where its API is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageNode {
    /// Its place in the layout.
    #[serde(flatten)]
    pub member: Member,
    /// Its block API (`https://host:port`).
    pub url: String,
}

/// One block of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRef {
    /// Its name.
    pub id: BlockId,
    /// Its length in bytes.
    pub len: u64,
}

/// Why the data path failed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The member list is not a layout.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A node's URL is unusable.
    #[error("storage node {node}: {detail}")]
    Node {
        /// The node.
        node: String,
        /// What is wrong.
        detail: String,
    },
    /// There are no storage nodes.
    #[error("no storage nodes are known")]
    NoNodes,
    /// Too few copies of a block could be written.
    #[error("block {id}: {written} of the {needed} copies needed were written ({})", errors.join("; "))]
    TooFewCopies {
        /// The block.
        id: BlockId,
        /// Copies written.
        written: usize,
        /// Copies needed for an acknowledgement.
        needed: usize,
        /// What the other nodes answered.
        errors: Vec<String>,
    },
    /// No node could give a good copy of a block.
    #[error("block {id}: no storage node has a good copy ({})", tried.join("; "))]
    Unreadable {
        /// The block.
        id: BlockId,
        /// What each node answered.
        tried: Vec<String>,
    },
    /// The source of a stream failed.
    #[error("reading the object's body: {0}")]
    Source(String),
}

/// The storage nodes as one store of blocks.
#[derive(Debug, Clone)]
pub struct Cluster {
    layout: Layout,
    clients: HashMap<String, NodeClient>,
    copies: usize,
    block_bytes: usize,
}

/// What a block write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The block.
    pub id: BlockId,
    /// The nodes that hold it now.
    pub on: Vec<String>,
}

impl Cluster {
    /// The cluster of `nodes`, keeping `copies` copies of each block (fewer when there are
    /// fewer nodes), cutting streams into blocks of `block_bytes`.
    pub fn new(nodes: Vec<StorageNode>, copies: usize, block_bytes: usize) -> Result<Self, DataError> {
        let mut clients = HashMap::new();
        for n in &nodes {
            let client = NodeClient::new(&n.url)
                .map_err(|e| DataError::Node { node: n.member.id.clone(), detail: e.to_string() })?;
            clients.insert(n.member.id.clone(), client);
        }
        let layout = Layout::new(nodes.into_iter().map(|n| n.member).collect())?;
        Ok(Self { layout, clients, copies: copies.max(1), block_bytes: block_bytes.max(1) })
    }

    /// Copies a write needs before it is acknowledged: a majority of the copies the cluster
    /// can hold.
    pub fn quorum(&self) -> usize {
        self.copies.min(self.layout.len()) / 2 + 1
    }

    /// The nodes that should hold `id`'s copies (the layout's first `copies`).
    pub fn holders(&self, id: &BlockId) -> Vec<&str> {
        self.layout.place(id, self.copies).into_iter().map(|m| m.id.as_str()).collect()
    }

    /// The client of node `name`.
    pub fn node(&self, name: &str) -> Option<&NodeClient> {
        self.clients.get(name)
    }

    /// Every node with its client.
    pub fn members(&self) -> impl Iterator<Item = (&str, &NodeClient)> {
        self.clients.iter().map(|(name, client)| (name.as_str(), client))
    }

    /// Whether `name` is a member.
    pub fn has_member(&self, name: &str) -> bool {
        self.clients.contains_key(name)
    }

    /// Every node, in the order a block's copies are sought.
    fn ranking(&self, id: &BlockId) -> Vec<&str> {
        self.layout.place(id, self.layout.len()).into_iter().map(|m| m.id.as_str()).collect()
    }

    /// Writes one block; see the module docs for where its copies go.
    pub async fn write_block(&self, data: Bytes) -> Result<Written, DataError> {
        let id = BlockId::of(&data);
        let ranking = self.ranking(&id);
        if ranking.is_empty() {
            return Err(DataError::NoNodes);
        }
        let want = self.copies.min(ranking.len());
        let mut next = 0usize;
        let mut on = Vec::new();
        let mut errors = Vec::new();
        // Rounds: the next `want - written` nodes in rank order, until enough copies exist or
        // the ranking runs out.
        while on.len() < want && next < ranking.len() {
            let take = (want - on.len()).min(ranking.len() - next);
            let round: Vec<&str> = ranking[next..next + take].to_vec();
            next += take;
            let results = futures::future::join_all(round.iter().map(|node| {
                let (client, data) = (&self.clients[*node], data.to_vec());
                async move { client.put(data).await }
            }))
            .await;
            for (node, result) in round.into_iter().zip(results) {
                match result {
                    Ok(_) => on.push(node.to_owned()),
                    Err(e) => errors.push(format!("{node}: {e}")),
                }
            }
        }
        if on.len() < self.quorum() {
            return Err(DataError::TooFewCopies { id, written: on.len(), needed: self.quorum(), errors });
        }
        if !errors.is_empty() {
            tracing::debug!(block = %id, copies = on.len(), errors = %errors.join("; "), "block written around failed nodes");
        }
        Ok(Written { id, on })
    }

    /// Reads one block from the first node with a good copy (a node checks a block against
    /// its name before it answers; a rotten copy is an error, and the next node is asked).
    pub async fn read_block(&self, id: BlockId) -> Result<Bytes, DataError> {
        let mut tried = Vec::new();
        for node in self.ranking(&id) {
            match self.clients[node].read(id).await {
                Ok(Some(data)) => return Ok(data),
                Ok(None) => tried.push(format!("{node}: absent")),
                Err(e) => tried.push(format!("{node}: {e}")),
            }
        }
        Err(DataError::Unreadable { id, tried })
    }

    /// Cuts `body` into blocks and writes them while more arrives, about [`IN_FLIGHT`] at a
    /// time (a chunk spanning several blocks may add a few more); returns the blocks in order. On an error the blocks already written stay (unreferenced; collected later).
    pub async fn write_stream<S, E>(&self, mut body: S) -> Result<Vec<BlockRef>, DataError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Display,
    {
        let mut blocks = Vec::new();
        let mut pending = FuturesOrdered::new();
        let mut buf = BytesMut::with_capacity(self.block_bytes);
        let mut ended = false;
        while !ended || !pending.is_empty() {
            tokio::select! {
                // Blocks are taken as they land (in order), so their writes overlap the body's
                // arrival; a slow client never holds cut blocks back.
                Some(r) = pending.next(), if !pending.is_empty() => blocks.push(r?),
                // Bounded: no more is read while IN_FLIGHT blocks are on their way.
                item = body.next(), if !ended && pending.len() < IN_FLIGHT => match item {
                    Some(Ok(mut chunk)) => {
                        while !chunk.is_empty() {
                            let n = chunk.len().min(self.block_bytes - buf.len());
                            buf.extend_from_slice(&chunk.split_to(n));
                            if buf.len() == self.block_bytes {
                                pending.push_back(self.write_ref(buf.split().freeze()));
                            }
                        }
                    }
                    Some(Err(e)) => return Err(DataError::Source(e.to_string())),
                    None => {
                        ended = true;
                        // An empty object has no blocks.
                        if !buf.is_empty() {
                            pending.push_back(self.write_ref(buf.split().freeze()));
                        }
                    }
                },
            }
        }
        Ok(blocks)
    }

    async fn write_ref(&self, data: Bytes) -> Result<BlockRef, DataError> {
        let len = data.len() as u64;
        Ok(BlockRef { id: self.write_block(data).await?.id, len })
    }

    /// The bytes `start..end` of the object made of `blocks`, as a stream that reads
    /// [`IN_FLIGHT`] blocks ahead.
    pub fn read_range(
        &self,
        blocks: Vec<BlockRef>,
        start: u64,
        end: u64,
    ) -> impl Stream<Item = Result<Bytes, DataError>> + Send + '_ {
        // Each block's slice of the range: (block, from, to) within the block.
        let mut slices = Vec::new();
        let mut offset = 0u64;
        for b in blocks {
            let (lo, hi) = (offset, offset + b.len);
            if hi > start && lo < end {
                slices.push((b.id, start.max(lo) - lo, end.min(hi) - lo));
            }
            offset = hi;
        }
        futures::stream::iter(slices)
            .map(move |(id, from, to)| async move {
                let data = self.read_block(id).await?;
                let (from, to) =
                    (usize::try_from(from).unwrap_or(usize::MAX), usize::try_from(to).unwrap_or(usize::MAX));
                if to > data.len() || from > to {
                    return Err(DataError::Unreadable {
                        id,
                        tried: vec![format!("block is {} bytes, shorter than its record", data.len())],
                    });
                }
                Ok(data.slice(from..to))
            })
            .buffered(IN_FLIGHT)
    }
}
