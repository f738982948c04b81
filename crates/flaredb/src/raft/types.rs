//! openraft type configuration for flaredb's groups (the meta group and every data region),
//! and the commands their logs carry.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::error::FlareError;
use crate::mvcc::{Mutation, OnePc, OnePcResult, TxnStatus};
use crate::region::{NodeId, RegionDescriptor, RegionId};
use crate::ts::Ts;

/// A node as Raft knows it: where its API (and peer endpoints) listen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `host:port` of the node's HTTP listener.
    pub addr: String,
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.addr)
    }
}

/// A command replicated through a data region's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Percolator phase one.
    Prewrite {
        /// Keys and what to do to them.
        mutations: Vec<Mutation>,
        /// The transaction's primary key.
        primary: Vec<u8>,
        /// The transaction's start timestamp.
        start_ts: Ts,
        /// Lock lifetime in milliseconds.
        ttl_ms: u64,
    },
    /// Percolator phase two.
    Commit {
        /// Keys to commit.
        keys: Vec<Vec<u8>>,
        /// The transaction's start timestamp.
        start_ts: Ts,
        /// The commit timestamp.
        commit_ts: Ts,
    },
    /// Abort a transaction's locks.
    Rollback {
        /// Keys to roll back.
        keys: Vec<Vec<u8>>,
        /// The transaction's start timestamp.
        start_ts: Ts,
    },
    /// Decide a transaction's fate from its primary lock.
    CheckTxnStatus {
        /// The primary key.
        primary: Vec<u8>,
        /// The transaction's start timestamp.
        start_ts: Ts,
        /// The current time (a timestamp from the oracle).
        now: Ts,
    },
    /// Commit or roll back every lock of a transaction in this region.
    ResolveLock {
        /// The transaction's start timestamp.
        start_ts: Ts,
        /// Commit at this timestamp, or roll back when `None`.
        commit_ts: Option<Ts>,
    },
    /// A single-key write committed in one step.
    OnePc {
        /// The write.
        op: OnePc,
        /// Its commit timestamp.
        commit_ts: Ts,
        /// The client's token for this write.
        token: Option<u128>,
        /// On a retry: the oldest timestamp the first attempt could have committed at.
        retry_since: Option<Ts>,
    },
    /// Drop versions older than the safe point.
    Gc {
        /// No snapshot below this timestamp will be read again.
        safe_point: Ts,
    },
    /// Split the region at `split_key`: this region keeps the keys below it; a new region
    /// `new_region` with the same replicas takes the rest.
    Split {
        /// First key of the new region.
        split_key: Vec<u8>,
        /// The new region's ID (allocated by the placement component).
        new_region: RegionId,
    },
    /// A change to the placement component's state (meta group only).
    Meta(MetaCommand),
}

/// A change to the placement component's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Record a node (new, or with a new address).
    PutNode {
        /// Its ID.
        id: NodeId,
        /// Its name.
        name: String,
        /// Its address.
        addr: String,
    },
    /// Record a region descriptor if it is newer than the one known.
    PutRegion(RegionDescriptor),
    /// Reserve `count` IDs; answers the first.
    AllocIds {
        /// How many.
        count: u64,
    },
    /// Persist the oracle's high-water mark: no timestamp at or above it was handed out.
    AdvanceTso {
        /// The new mark.
        high_water: Ts,
    },
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Done; nothing to report.
    Done,
    /// The transaction's fate.
    Status(TxnStatus),
    /// How many locks were resolved (or rows collected).
    Count(u64),
    /// A one-phase write's result.
    OnePc(OnePcResult),
    /// The first of the allocated IDs.
    Id(u64),
    /// The command was refused; the same on every replica.
    Error(FlareError),
}

/// A log entry's payload: one or more commands proposed together (see the batcher).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal(pub Vec<Command>);

/// The outcomes of a proposal's commands, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcomes(pub Vec<Outcome>);

openraft::declare_raft_types!(
    /// flaredb's Raft types.
    pub TypeConfig:
        D = Proposal,
        R = Outcomes,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle of one group.
pub type Raft = openraft::Raft<TypeConfig>;
/// Storage errors as openraft wants them.
pub type StorageError = openraft::StorageError<u64>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<u64>;
/// Stored membership.
pub type StoredMembership = openraft::StoredMembership<u64, NodeInfo>;
/// A group's log.
pub type LogStore = ultracloud_raftlog::LogStore<TypeConfig>;
