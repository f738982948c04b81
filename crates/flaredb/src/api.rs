//! The HTTP/JSON messages of flaredb's API, shared by the server and the client.
//!
//! Keys and values are byte strings, carried in JSON as base64 (standard alphabet, padded).

use serde::{Deserialize, Serialize};

use crate::mvcc::{Mutation, OnePc, OnePcResult, TxnStatus};
use crate::region::{NodeId, RegionDescriptor, RegionId};
use crate::ts::Ts;

/// serde for `Vec<u8>` as base64.
pub mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes bytes as base64.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    /// Deserializes base64 into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s.as_bytes()).map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }

    /// serde for `Option<Vec<u8>>` as base64 or null.
    pub mod option {
        use super::*;

        /// Serializes optional bytes.
        pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.serialize_some(&STANDARD.encode(v)),
                None => s.serialize_none(),
            }
        }

        /// Deserializes optional bytes.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(s) => STANDARD
                    .decode(s.as_bytes())
                    .map(Some)
                    .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}"))),
                None => Ok(None),
            }
        }
    }

    /// serde for `Vec<Vec<u8>>` as a list of base64 strings.
    pub mod list {
        use super::*;

        /// Serializes a list of byte strings.
        pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(|b| STANDARD.encode(b)))
        }

        /// Deserializes a list of byte strings.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
            Vec::<String>::deserialize(d)?
                .into_iter()
                .map(|s| {
                    STANDARD.decode(s.as_bytes()).map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
                })
                .collect()
        }
    }
}

/// Which region a request is for, as the client's region map says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Route {
    /// The region.
    pub region: RegionId,
    /// The descriptor version the client routed with (omit to skip the check).
    #[serde(default)]
    pub version: Option<u64>,
}

/// `POST /v1/region/get`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetRequest {
    /// Routing.
    #[serde(flatten)]
    pub route: Route,
    /// The key.
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    /// Snapshot timestamp; omitted: the latest committed value (linearizable).
    #[serde(default)]
    pub ts: Option<Ts>,
}

/// Answer to a get.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetResponse {
    /// The value, or null when the key does not exist.
    #[serde(with = "b64::option")]
    pub value: Option<Vec<u8>>,
}

/// `POST /v1/region/scan`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanRequest {
    /// Routing.
    #[serde(flatten)]
    pub route: Route,
    /// First key (inclusive).
    #[serde(with = "b64")]
    pub start: Vec<u8>,
    /// End (exclusive); omitted: to the end of the region.
    #[serde(default, with = "b64::option")]
    pub end: Option<Vec<u8>>,
    /// Snapshot timestamp; omitted: latest.
    #[serde(default)]
    pub ts: Option<Ts>,
    /// Most pairs to return (0: as many as one answer holds, `MAX_SCAN_PAIRS` and about
    /// `MAX_SCAN_BYTES`; [`ScanResponse::more`] says when to ask again).
    #[serde(default)]
    pub limit: usize,
    /// Descending key order.
    #[serde(default)]
    pub reverse: bool,
}

/// A key and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    /// The key.
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    /// The value.
    #[serde(with = "b64")]
    pub value: Vec<u8>,
}

/// Answer to a scan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanResponse {
    /// The pairs, in the requested order.
    pub pairs: Vec<Pair>,
    /// The region may hold more of the range past the last pair (the answer reached a bound).
    #[serde(default)]
    pub more: bool,
}

/// A mutation in JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JsonMutation {
    /// The key.
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    /// The value to put; null deletes.
    #[serde(default, with = "b64::option")]
    pub value: Option<Vec<u8>>,
}

impl From<JsonMutation> for Mutation {
    fn from(m: JsonMutation) -> Self {
        Mutation { key: m.key, op: m.value.map_or(crate::mvcc::Op::Delete, crate::mvcc::Op::Put) }
    }
}

/// `POST /v1/region/prewrite`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrewriteRequest {
    /// Routing.
    #[serde(flatten)]
    pub route: Route,
    /// The keys of the transaction in this region.
    pub mutations: Vec<JsonMutation>,
    /// The transaction's primary key (may be in another region).
    #[serde(with = "b64")]
    pub primary: Vec<u8>,
    /// The transaction's start timestamp.
    pub start_ts: Ts,
    /// Lock lifetime in milliseconds.
    pub ttl_ms: u64,
}

/// `POST /v1/region/commit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitRequest {
    /// Routing.
    #[serde(flatten)]
    pub route: Route,
    /// Keys to commit.
    #[serde(with = "b64::list")]
    pub keys: Vec<Vec<u8>>,
    /// The transaction's start timestamp.
    pub start_ts: Ts,
    /// Its commit timestamp.
    pub commit_ts: Ts,
}

/// `POST /v1/region/rollback`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackRequest {
    /// Routing.
    #[serde(flatten)]
    pub route: Route,
    /// Keys to roll back.
    #[serde(with = "b64::list")]
    pub keys: Vec<Vec<u8>>,
    /// The transaction's start timestamp.
    pub start_ts: Ts,
}

/// `POST /v1/region/check_txn_status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckTxnStatusRequest {
    /// Routing (the primary key's region).
    #[serde(flatten)]
    pub route: Route,
    /// The primary key.
    #[serde(with = "b64")]
    pub primary: Vec<u8>,
    /// The transaction's start timestamp.
    pub start_ts: Ts,
}

/// Answer to check_txn_status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckTxnStatusResponse {
    /// The transaction's fate.
    pub status: TxnStatus,
}

/// `POST /v1/region/resolve_lock`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResolveLockRequest {
    /// Routing.
    #[serde(flatten)]
    pub route: Route,
    /// The transaction's start timestamp.
    pub start_ts: Ts,
    /// Commit its locks at this timestamp; null rolls them back.
    #[serde(default)]
    pub commit_ts: Option<Ts>,
}

/// Answer to resolve_lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResolveLockResponse {
    /// How many locks were resolved.
    pub resolved: u64,
}

/// `POST /v1/region/write`: a single-key write in one phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteRequest {
    /// Routing.
    #[serde(flatten)]
    pub route: Route,
    /// The write.
    pub op: JsonOnePc,
    /// A token unique to this write (a random 128-bit number, as a decimal string): retrying
    /// with the same token after an ambiguous failure never applies the write twice.
    #[serde(default)]
    pub token: Option<String>,
    /// Set on every attempt after the first: only then is the token looked for.
    #[serde(default)]
    pub retry: bool,
}

/// A one-phase write in JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JsonOnePc {
    /// Set a value.
    Put {
        /// The key.
        #[serde(with = "b64")]
        key: Vec<u8>,
        /// The value.
        #[serde(with = "b64")]
        value: Vec<u8>,
    },
    /// Delete a key.
    Delete {
        /// The key.
        #[serde(with = "b64")]
        key: Vec<u8>,
    },
    /// Compare and swap.
    Cas {
        /// The key.
        #[serde(with = "b64")]
        key: Vec<u8>,
        /// The required current value (null: absent).
        #[serde(default, with = "b64::option")]
        expected: Option<Vec<u8>>,
        /// The new value (null: delete).
        #[serde(default, with = "b64::option")]
        new: Option<Vec<u8>>,
    },
    /// Add to a decimal integer.
    Increment {
        /// The key.
        #[serde(with = "b64")]
        key: Vec<u8>,
        /// What to add.
        delta: i64,
    },
}

impl From<JsonOnePc> for OnePc {
    fn from(j: JsonOnePc) -> Self {
        match j {
            JsonOnePc::Put { key, value } => OnePc::Put { key, value },
            JsonOnePc::Delete { key } => OnePc::Delete { key },
            JsonOnePc::Cas { key, expected, new } => OnePc::Cas { key, expected, new },
            JsonOnePc::Increment { key, delta } => OnePc::Increment { key, delta },
        }
    }
}

/// Answer to a one-phase write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteResponse {
    /// Whether it was written (false: a CAS found another value).
    pub succeeded: bool,
    /// Increment: the new value; failed CAS: the current value.
    #[serde(with = "b64::option")]
    pub value: Option<Vec<u8>>,
}

impl WriteResponse {
    /// From the state machine's result.
    pub fn from_result(r: OnePcResult) -> Self {
        match r {
            OnePcResult::Done { value } => Self { succeeded: true, value },
            OnePcResult::CasFailed { current } => Self { succeeded: false, value: current },
        }
    }
}

/// Answer to `GET /v1/ts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TsResponse {
    /// The first of the reserved timestamps.
    pub ts: Ts,
}

/// A region and where its leader is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegionInfo {
    /// The descriptor.
    pub desc: RegionDescriptor,
    /// The leader's node, when the placement component knows it.
    pub leader: Option<NodeId>,
    /// Approximate number of keys (as the leader last reported).
    pub approximate_keys: u64,
}

/// A node in the region map.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeEntry {
    /// Its ID.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Its address.
    pub addr: String,
    /// Whether it has sent a heartbeat recently.
    pub up: bool,
}

/// Answer to `GET /v1/regions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegionsResponse {
    /// Regions in key order.
    pub regions: Vec<RegionInfo>,
    /// Nodes.
    pub nodes: Vec<NodeEntry>,
}

/// One replica in a node's status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// The group.
    pub group: RegionId,
    /// The region (null for the meta group and replicas waiting for a snapshot).
    pub desc: Option<RegionDescriptor>,
    /// `leader`, `follower`, `learner`, `candidate`.
    pub role: String,
    /// The leader, when known.
    pub leader: Option<NodeId>,
    /// Last applied log index.
    pub applied: u64,
    /// Current term.
    pub term: u64,
}

/// Answer to `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusResponse {
    /// This node's ID.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Its address.
    pub addr: String,
    /// Its replicas.
    pub replicas: Vec<ReplicaStatus>,
}

/// What a node tells the meta leader every heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The node.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Its address.
    pub addr: String,
    /// Its replicas of data regions: descriptor as known there, and whether it leads.
    pub replicas: Vec<ReplicaReport>,
    /// Groups it holds an empty replica of: made when a leader contacted it for a group it
    /// lacked, no snapshot received yet, so no descriptor to report. One whose region has since
    /// dropped this node would otherwise never be called stale.
    #[serde(default)]
    pub empty: Vec<RegionId>,
}

/// One replica in a heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaReport {
    /// The region as this replica knows it.
    pub desc: RegionDescriptor,
    /// Whether this replica leads.
    pub leader: bool,
    /// Approximate number of keys (leaders only).
    pub approximate_keys: u64,
}

/// The meta leader's answer to a heartbeat.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// Replicas the node must drop (it was removed from their regions while away).
    pub destroy: Vec<RegionId>,
}

/// `POST /internal/replicas`: create an empty replica that waits for a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateReplica {
    /// The region as its leader knows it.
    pub desc: RegionDescriptor,
}

/// `POST /internal/change`: a placement decision for a region's leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeReplicas {
    /// The region.
    pub region: RegionId,
    /// Add a replica on this node (first).
    pub add: Option<NodeId>,
    /// The address of the node to add (filled in by the meta leader).
    #[serde(default)]
    pub add_addr: Option<String>,
    /// Then remove the replica on this node.
    pub remove: Option<NodeId>,
}

/// `POST /internal/split`: split a region (at `key`, or at its middle key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitRequest {
    /// The region.
    pub region: RegionId,
    /// Where to split; omitted: the region's middle key.
    #[serde(default, with = "b64::option")]
    pub key: Option<Vec<u8>>,
}

/// `POST /internal/alloc_id` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdResponse {
    /// The allocated ID.
    pub id: u64,
}
