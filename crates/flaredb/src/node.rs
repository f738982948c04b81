//! A flaredb node: its replicas (the meta group's and data regions'), the shared log and data
//! databases, and the background duties — heartbeats to the placement component, splitting
//! regions it leads, garbage collection, and (on the meta leader) placement and the oracle.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak};
use std::time::Duration;

use openraft::ChangeMembers;
use redb::{Database, ReadableDatabase};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use ultracloud_raftlog::LogDb;

use crate::api::{ChangeReplicas, CreateReplica, Heartbeat, HeartbeatResponse, IdResponse, ReplicaReport};
use crate::config::{FlaredbConfig, node_id};
use crate::error::{ErrorResponse, FlareError};
use crate::meta::{MetaState, NodeRecord};
use crate::mvcc::{Store, WRITES};
use crate::placement::Placement;
use crate::raft::network::Network;
use crate::raft::state_machine::{
    GroupEvent, GroupState, StateMachine, delete_range, read_group, stored_groups, write_group,
};
use crate::raft::types::{Command, MetaCommand, NodeInfo, Outcome, Raft, TypeConfig};
use crate::region::{FIRST_REGION, META_REGION, NodeId, RegionDescriptor, RegionId, uncovered};
use crate::replica::{Replica, TimestampSource};
use crate::ts::{Ts, compose, physical_ms};
use crate::tso::Oracle;

/// The data database, in the data dir.
pub const DATA_FILE: &str = "data.redb";
/// The Raft log database, in the data dir.
pub const LOG_FILE: &str = "raft-log.redb";
/// Groups whose replica was removed from this node: peers' late messages must not re-create it.
const TOMBSTONES: redb::TableDefinition<u64, ()> = redb::TableDefinition::new("tombstones");
/// How long one call to a meta leader candidate (timestamps, IDs, heartbeats) may take before
/// the next candidate is tried.
const META_CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A database could not be opened.
    #[error("cannot open {path}: {source}")]
    Storage {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The configuration does not make sense.
    #[error("{0}")]
    Config(String),
    /// A replica could not start.
    #[error("cannot start replica of group {group}: {reason}")]
    Replica {
        /// The group.
        group: RegionId,
        /// What failed.
        reason: String,
    },
}

/// One flaredb node.
pub struct Node {
    /// This node's ID.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Its advertised address.
    pub addr: String,
    /// Its configuration.
    pub config: FlaredbConfig,
    /// The MVCC store over the data database (reads).
    pub store: Store,
    /// The shared HTTP client (peers, meta leader).
    pub http: reqwest::Client,
    /// The placement component's view (used while this node leads the meta group).
    pub placement: Placement,
    /// Cancelled when the node stops.
    pub shutdown: CancellationToken,
    data: Arc<Database>,
    logs: LogDb<TypeConfig>,
    replicas: RwLock<HashMap<RegionId, Arc<Replica>>>,
    /// Serializes replica start-ups and removals: a group is never started twice, nor started
    /// while its storage is being deleted.
    lifecycle: tokio::sync::Mutex<()>,
    raft_config: Arc<openraft::Config>,
    events: mpsc::UnboundedSender<(RegionId, GroupEvent)>,
    tso: Arc<TsoClient>,
    oracle: Mutex<Option<(u64, Arc<Oracle>)>>,
    meta_hint: Mutex<Option<String>>,
    seeds: Vec<String>,
    /// Regions this node (as their leader) is changing the replicas of, or splitting: one
    /// at a time per region.
    changing: Mutex<BTreeSet<RegionId>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).field("name", &self.name).finish_non_exhaustive()
    }
}

fn storage_err(path: &Path) -> impl Fn(redb::DatabaseError) -> StartError + '_ {
    move |e| StartError::Storage { path: path.to_owned(), source: Box::new(e) }
}

fn unavailable(e: impl std::fmt::Display) -> FlareError {
    FlareError::Unavailable(e.to_string())
}

impl Node {
    /// Opens the node's storage in `dir`, forms the cluster on first start (when this node is
    /// one of the initial nodes) and starts every stored replica and the background duties.
    pub fn start<'a>(
        config: FlaredbConfig,
        dir: &'a Path,
        shutdown: CancellationToken,
    ) -> ultracloud_runtime::Entry<'a, Result<Arc<Self>, StartError>> {
        Box::pin(Self::open_and_start(config, dir, shutdown))
    }

    async fn open_and_start(
        config: FlaredbConfig,
        dir: &Path,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, StartError> {
        let data_path = dir.join(DATA_FILE);
        let data = Arc::new(Database::create(&data_path).map_err(storage_err(&data_path))?);
        let log_path = dir.join(LOG_FILE);
        let log_db = Arc::new(Database::create(&log_path).map_err(storage_err(&log_path))?);
        let logs = LogDb::open(log_db, "flaredb-log-writer")
            .map_err(|e| StartError::Storage { path: log_path.clone(), source: Box::new(e) })?;
        let store = Store::open(data.clone())
            .map_err(|e| StartError::Storage { path: data_path.clone(), source: Box::new(e) })?;
        let initial = config.initial_nodes().map_err(|e| StartError::Config(e.to_string()))?;
        let mut seeds: Vec<String> = initial.iter().map(|n| n.addr.clone()).collect();
        seeds.extend(config.join_addrs());
        let (events, events_rx) = mpsc::unbounded_channel();
        let http = ultracloud_tls::client::http_client_builder()
            .tcp_nodelay(true)
            // A partitioned peer drops the SYN: give up on it quickly and ask another.
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| StartError::Config(e.to_string()))?;
        let node = Arc::new(Self {
            id: node_id(&config.name),
            name: config.name.clone(),
            addr: config.advertise_addr(),
            placement: Placement::new(Duration::from_millis(config.node_down_after_ms)),
            raft_config: Arc::new(
                config.raft_config().validate().map_err(|e| StartError::Config(format!("raft settings: {e}")))?,
            ),
            config,
            store,
            http,
            shutdown,
            data,
            logs,
            replicas: RwLock::new(HashMap::new()),
            lifecycle: tokio::sync::Mutex::new(()),
            events,
            tso: Arc::new(TsoClient::default()),
            oracle: Mutex::new(None),
            meta_hint: Mutex::new(None),
            seeds,
            changing: Mutex::new(BTreeSet::new()),
        });
        node.tso.bind(&node);
        let stored = stored_groups(&node.data)
            .map_err(|e| StartError::Storage { path: data_path.clone(), source: Box::new(e) })?;
        if stored.is_empty() && node.config.join_addrs().is_empty() {
            node.bootstrap(
                &initial.iter().map(|n| (node_id(&n.name), n.name.clone(), n.addr.clone())).collect::<Vec<_>>(),
            )
            .map_err(|e| StartError::Storage { path: data_path.clone(), source: Box::new(e) })?;
        }
        let groups =
            stored_groups(&node.data).map_err(|e| StartError::Storage { path: data_path, source: Box::new(e) })?;
        for (group, _) in groups {
            node.start_replica(group).await.map_err(|e| StartError::Replica { group, reason: e.to_string() })?;
        }
        tokio::spawn(node.clone().handle_events(events_rx));
        tokio::spawn(node.clone().duties());
        Ok(node)
    }

    /// Writes the initial state of a new cluster: the meta group on the first three nodes and
    /// one region covering the key space on the first `replication_factor` nodes.
    fn bootstrap(&self, nodes: &[(NodeId, String, String)]) -> Result<(), std::io::Error> {
        let voters = |n: usize| -> Vec<(NodeId, NodeInfo)> {
            nodes.iter().take(n).map(|(id, _, addr)| (*id, NodeInfo { addr: addr.clone() })).collect()
        };
        let meta_voters = voters(3);
        let region_voters = voters(self.config.replication_factor);
        let first = RegionDescriptor {
            id: FIRST_REGION,
            start: Vec::new(),
            end: None,
            version: 1,
            conf_ver: 1,
            voters: region_voters.iter().map(|(id, _)| *id).collect(),
            learners: vec![],
        };
        let meta = MetaState {
            nodes: nodes
                .iter()
                .map(|(id, name, addr)| (*id, NodeRecord { name: name.clone(), addr: addr.clone() }))
                .collect(),
            regions: [(FIRST_REGION, first.clone())].into_iter().collect(),
            next_id: FIRST_REGION + 1,
            tso_high_water: 0,
        };
        let tx = self.data.begin_write().map_err(std::io::Error::other)?;
        if meta_voters.iter().any(|(id, _)| *id == self.id) {
            write_group(&tx, META_REGION, &GroupState::new_group(None, &meta_voters, Some(meta)))?;
        }
        if region_voters.iter().any(|(id, _)| *id == self.id) {
            write_group(&tx, FIRST_REGION, &GroupState::new_group(Some(first), &region_voters, None))?;
        }
        tx.commit().map_err(std::io::Error::other)?;
        tracing::info!(nodes = nodes.len(), "formed a new flaredb cluster");
        Ok(())
    }

    /// Starts the replica of `group` from its stored state.
    async fn start_replica(self: &Arc<Self>, group: RegionId) -> Result<Arc<Replica>, FlareError> {
        let _lifecycle = self.lifecycle.lock().await;
        self.start_replica_locked(group).await
    }

    /// [`Self::start_replica`] for a caller holding the lifecycle lock.
    async fn start_replica_locked(self: &Arc<Self>, group: RegionId) -> Result<Arc<Replica>, FlareError> {
        if let Some(r) = self.replicas.read().unwrap_or_else(PoisonError::into_inner).get(&group) {
            return Ok(r.clone());
        }
        let sm = StateMachine::open(group, self.id, self.data.clone(), self.events.clone()).map_err(unavailable)?;
        let mut log = self.logs.group(group);
        // A new group starts pre-applied (see the state machine): mark its log purged up to there.
        let applied = read_group(&self.data, group).map_err(unavailable)?.and_then(|s| s.applied);
        let state = openraft::storage::RaftLogStorage::get_log_state(&mut log).await.map_err(unavailable)?;
        if state.last_log_id.is_none()
            && let Some(applied) = applied
        {
            openraft::storage::RaftLogStorage::purge(&mut log, applied).await.map_err(unavailable)?;
        }
        let raft =
            Raft::new(self.id, self.raft_config.clone(), Network::new(group, self.http.clone()), log, sm.clone())
                .await
                .map_err(unavailable)?;
        let replica = Arc::new(Replica::new(group, self.id, raft, sm, self.tso.clone()));
        self.replicas.write().unwrap_or_else(PoisonError::into_inner).insert(group, replica.clone());
        tracing::debug!(group, "replica started");
        Ok(replica)
    }

    /// Stops the replica of `group` and deletes its log, its state and the data only it covered.
    pub async fn destroy_replica(&self, group: RegionId) -> Result<(), FlareError> {
        // Held to the end: a leader's message must not re-create the group from the storage
        // being deleted (it would start on a log that vanishes under it) before the tombstone.
        let _lifecycle = self.lifecycle.lock().await;
        let replica = self.replicas.write().unwrap_or_else(PoisonError::into_inner).remove(&group);
        let Some(replica) = replica else { return Ok(()) };
        let desc = replica.sm.desc();
        let _ = replica.raft.shutdown().await;
        self.logs.drop_group(group).await.map_err(unavailable)?;
        let others: Vec<RegionDescriptor> = self.replicas().iter().filter_map(|r| r.sm.desc()).collect();
        let tx = self.data.begin_write().map_err(unavailable)?;
        if let Some(desc) = desc {
            for (start, end) in uncovered(&desc.start, desc.end.as_deref(), &others) {
                delete_range(&tx, &start, end.as_deref()).map_err(unavailable)?;
            }
        }
        tx.open_table(crate::raft::state_machine::GROUPS)
            .and_then(|mut t| t.remove(group).map(|_| ()).map_err(Into::into))
            .map_err(unavailable)?;
        tx.open_table(TOMBSTONES)
            .and_then(|mut t| t.insert(group, ()).map(|_| ()).map_err(Into::into))
            .map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        tracing::info!(group, "replica removed from this node");
        Ok(())
    }

    /// Every running replica.
    pub fn replicas(&self) -> Vec<Arc<Replica>> {
        let mut v: Vec<Arc<Replica>> =
            self.replicas.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        v.sort_by_key(|r| r.id);
        v
    }

    /// The replica of `group`.
    pub fn replica(&self, group: RegionId) -> Result<Arc<Replica>, FlareError> {
        self.replicas
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&group)
            .cloned()
            .ok_or(FlareError::RegionNotFound { region: group })
    }

    /// The local meta replica when it leads.
    pub fn meta_leader(&self) -> Option<Arc<Replica>> {
        self.replica(META_REGION).ok().filter(|r| r.is_leader())
    }

    /// "Not the meta leader", with this node's hint of who is.
    pub fn not_meta_leader(&self) -> FlareError {
        let leader = self.replica(META_REGION).ok().and_then(|r| r.leader());
        FlareError::NotLeader { region: META_REGION, leader }
    }

    /// Creates an empty replica that waits for its leader's snapshot (a placement change).
    pub async fn create_replica(self: &Arc<Self>, req: CreateReplica) -> Result<(), FlareError> {
        let id = req.desc.id;
        let _lifecycle = self.lifecycle.lock().await;
        if self.replica(id).is_ok() {
            return Ok(());
        }
        if let Some(other) =
            self.replicas().iter().filter_map(|r| r.sm.desc()).find(|d| d.id != id && d.overlaps(&req.desc))
        {
            return Err(FlareError::Invalid(format!(
                "region {id} overlaps region {} on this node; retry after it is split or removed",
                other.id
            )));
        }
        let tx = self.data.begin_write().map_err(unavailable)?;
        write_group(&tx, id, &GroupState::default()).map_err(unavailable)?;
        tx.open_table(TOMBSTONES)
            .and_then(|mut t| t.remove(id).map(|_| ()).map_err(Into::into))
            .map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        self.start_replica_locked(id).await?;
        Ok(())
    }

    /// The replica of `group`, created empty when a leader talks to this node about a group it
    /// lacks: a replica that was down while its region split received the parent's snapshot
    /// instead of the split, so it never created the new region; the new region's leader then
    /// brings it up with a snapshot. Groups removed from this node stay removed.
    pub async fn replica_for_leader(self: &Arc<Self>, group: RegionId) -> Result<Arc<Replica>, FlareError> {
        if let Ok(r) = self.replica(group) {
            return Ok(r);
        }
        let _lifecycle = self.lifecycle.lock().await;
        if let Ok(r) = self.replica(group) {
            return Ok(r);
        }
        let removed = {
            let tx = self.data.begin_read().map_err(unavailable)?;
            match tx.open_table(TOMBSTONES) {
                Ok(t) => t.get(group).map_err(unavailable)?.is_some(),
                Err(redb::TableError::TableDoesNotExist(_)) => false,
                Err(e) => return Err(unavailable(e)),
            }
        };
        if removed || group == META_REGION {
            return Err(FlareError::RegionNotFound { region: group });
        }
        tracing::info!(group, "a leader contacted this node for a group it lacks; creating an empty replica");
        let tx = self.data.begin_write().map_err(unavailable)?;
        if read_group(&self.data, group).map_err(unavailable)?.is_none() {
            write_group(&tx, group, &GroupState::default()).map_err(unavailable)?;
        }
        tx.commit().map_err(unavailable)?;
        self.start_replica_locked(group).await
    }

    async fn handle_events(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<(RegionId, GroupEvent)>) {
        while let Some((group, event)) = rx.recv().await {
            match event {
                GroupEvent::Split { child } => {
                    tracing::info!(parent = group, child = child.id, "region split");
                    if let Err(e) = self.start_replica(child.id).await {
                        tracing::error!(child = child.id, error = %e, "cannot start the new region's replica");
                    }
                }
                GroupEvent::Removed { group } => {
                    // A replica catching up replays its group's history: a removal followed by
                    // a re-add (a node that came back) must not destroy it. The log's latest
                    // membership (appended, maybe not applied yet) decides.
                    if self.replica(group).is_ok_and(|r| {
                        r.raft.metrics().borrow().membership_config.membership().get_node(&self.id).is_some()
                    }) {
                        tracing::debug!(group, "a replayed removal: the group's latest membership keeps this node");
                        continue;
                    }
                    let node = self.clone();
                    // Not inline: the removal waits for the group's Raft to stop.
                    tokio::spawn(async move {
                        if let Err(e) = node.destroy_replica(group).await {
                            tracing::error!(group, error = %e, "cannot remove replica");
                        }
                    });
                }
            }
        }
    }

    /// Reserves `count` timestamps from the oracle (here when this node leads the meta group).
    pub async fn timestamps(&self, count: u32) -> Result<Ts, FlareError> {
        if let Some(meta) = self.meta_leader() {
            let term = meta.raft.metrics().borrow().current_term;
            let oracle = {
                let mut o = self.oracle.lock().unwrap_or_else(PoisonError::into_inner);
                match o.as_ref() {
                    Some((t, oracle)) if *t == term => oracle.clone(),
                    _ => {
                        let oracle = Arc::new(Oracle::spawn(meta.clone()));
                        *o = Some((term, oracle.clone()));
                        oracle
                    }
                }
            };
            return oracle.allocate(count).await;
        }
        let r: crate::api::TsResponse = self.meta_post(&format!("/v1/ts?count={count}"), &()).await?;
        Ok(r.ts)
    }

    /// Reserves `count` new IDs from the placement component.
    pub async fn alloc_ids(&self, count: u64) -> Result<u64, FlareError> {
        if let Some(meta) = self.meta_leader() {
            return match meta.propose(Command::Meta(MetaCommand::AllocIds { count })).await? {
                Outcome::Id(id) => Ok(id),
                other => Err(FlareError::Internal(format!("unexpected answer to an ID allocation: {other:?}"))),
            };
        }
        let r: IdResponse = self.meta_post(&format!("/internal/alloc_id?count={count}"), &()).await?;
        Ok(r.id)
    }

    /// Posts to the meta leader, wherever it is, following "not leader" hints.
    pub async fn meta_post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
    ) -> Result<Resp, FlareError> {
        let mut candidates: Vec<String> = Vec::new();
        // This node's own meta replica knows of a new leader before the hint (the last address
        // that answered) does; a hint that does not answer is dropped.
        if let Ok(meta) = self.replica(META_REGION)
            && let Some((_, addr)) = meta.leader()
        {
            candidates.push(addr);
        }
        candidates.extend(self.meta_hint.lock().unwrap_or_else(PoisonError::into_inner).clone());
        candidates.extend(self.seeds.iter().cloned());
        let mut tried = BTreeSet::new();
        let mut last = FlareError::Unavailable("no meta leader found".into());
        while let Some(addr) = candidates.first().cloned() {
            candidates.remove(0);
            if addr == self.addr || !tried.insert(addr.clone()) {
                continue;
            }
            // A pooled connection to a peer that was partitioned away connects nothing, so only
            // a timeout tells: a short one, as the meta leader answers these in milliseconds.
            let answer = tokio::time::timeout(META_CALL_TIMEOUT, post_json::<Req, Resp>(&self.http, &addr, path, body))
                .await
                .unwrap_or_else(|_| {
                    Err(FlareError::Unavailable(format!("{addr}: no answer within {META_CALL_TIMEOUT:?}")))
                });
            match answer {
                Ok(r) => {
                    *self.meta_hint.lock().unwrap_or_else(PoisonError::into_inner) = Some(addr);
                    return Ok(r);
                }
                Err(FlareError::NotLeader { leader: Some((_, named)), .. }) => candidates.insert(0, named),
                Err(e) => {
                    let mut hint = self.meta_hint.lock().unwrap_or_else(PoisonError::into_inner);
                    if hint.as_ref() == Some(&addr) {
                        *hint = None;
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Splits a region this node leads at `key` (or at its middle key).
    pub async fn split(self: &Arc<Self>, region: RegionId, key: Option<Vec<u8>>) -> Result<RegionId, FlareError> {
        let replica = self.replica(region)?;
        if !replica.is_leader() {
            return Err(FlareError::NotLeader { region, leader: replica.leader() });
        }
        let desc = replica.sm.desc().ok_or(FlareError::RegionNotFound { region })?;
        let key = match key {
            Some(k) => k,
            None => self
                .middle_key(&desc)?
                .ok_or_else(|| FlareError::Invalid(format!("region {region} has too few keys to split")))?,
        };
        // The new region starts with the parent's membership as of the split: never split in
        // the middle of a replica change (a joint configuration or a learner would be copied
        // into a group that no change will ever finish, and it could lose its quorum).
        {
            let metrics = replica.raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership();
            if membership.get_joint_config().len() > 1 || membership.learner_ids().next().is_some() {
                return Err(FlareError::Unavailable(format!("region {region} is changing its replicas; split later")));
            }
        }
        if !self.changing.lock().unwrap_or_else(PoisonError::into_inner).insert(region) {
            return Err(FlareError::Unavailable(format!("region {region} is changing its replicas; split later")));
        }
        let proposed = match self.alloc_ids(1).await {
            Ok(new_region) => replica.propose(Command::Split { split_key: key, new_region }).await.map(|_| new_region),
            Err(e) => Err(e),
        };
        self.changing.lock().unwrap_or_else(PoisonError::into_inner).remove(&region);
        let new_region = proposed?;
        // Tell the placement component now, so clients find both halves without waiting.
        if let Err(e) = self.send_heartbeat().await {
            tracing::debug!(error = %e, "heartbeat after split not delivered");
        }
        Ok(new_region)
    }

    /// Number of distinct keys and bytes of versions in a region, counting at most `cap` keys.
    fn region_size(&self, desc: &RegionDescriptor, cap: u64) -> Result<(u64, u64), FlareError> {
        let tx = self.data.begin_read().map_err(unavailable)?;
        let writes = tx.open_table(WRITES).map_err(unavailable)?;
        let upper = desc.end.as_deref().map_or(std::ops::Bound::Unbounded, |e| std::ops::Bound::Excluded((e, 0u64)));
        let (mut keys, mut bytes) = (0u64, 0u64);
        let mut last: Option<Vec<u8>> = None;
        for item in writes
            .range::<(&[u8], u64)>((std::ops::Bound::Included((desc.start.as_slice(), 0u64)), upper))
            .map_err(unavailable)?
        {
            let (k, v) = item.map_err(unavailable)?;
            let key = k.value().0;
            bytes += (key.len() + v.value().len()) as u64;
            if last.as_deref() != Some(key) {
                keys += 1;
                if keys > cap {
                    break;
                }
                last = Some(key.to_vec());
            }
        }
        Ok((keys, bytes))
    }

    fn middle_key(&self, desc: &RegionDescriptor) -> Result<Option<Vec<u8>>, FlareError> {
        let (keys, _) = self.region_size(desc, u64::MAX)?;
        if keys < 2 {
            return Ok(None);
        }
        let tx = self.data.begin_read().map_err(unavailable)?;
        let writes = tx.open_table(WRITES).map_err(unavailable)?;
        let upper = desc.end.as_deref().map_or(std::ops::Bound::Unbounded, |e| std::ops::Bound::Excluded((e, 0u64)));
        let mut seen = 0u64;
        let mut last: Option<Vec<u8>> = None;
        for item in writes
            .range::<(&[u8], u64)>((std::ops::Bound::Included((desc.start.as_slice(), 0u64)), upper))
            .map_err(unavailable)?
        {
            let (k, _) = item.map_err(unavailable)?;
            let key = k.value().0;
            if last.as_deref() != Some(key) {
                seen += 1;
                last = Some(key.to_vec());
                if seen > keys / 2 {
                    return Ok(last);
                }
            }
        }
        Ok(None)
    }

    /// Carries out a placement decision on a region this node leads: add a replica (created
    /// empty on the target, filled by a snapshot, then made a voter), then remove one.
    pub async fn change_replicas(&self, change: ChangeReplicas) -> Result<(), FlareError> {
        let replica = self.replica(change.region)?;
        if !replica.is_leader() {
            return Err(FlareError::NotLeader { region: change.region, leader: replica.leader() });
        }
        if !self.changing.lock().unwrap_or_else(PoisonError::into_inner).insert(change.region) {
            return Err(FlareError::Unavailable(format!("region {} is already changing", change.region)));
        }
        let result = self.change_replicas_inner(&replica, &change).await;
        self.changing.lock().unwrap_or_else(PoisonError::into_inner).remove(&change.region);
        result
    }

    async fn change_replicas_inner(&self, replica: &Replica, change: &ChangeReplicas) -> Result<(), FlareError> {
        let desc = replica.sm.desc().ok_or(FlareError::RegionNotFound { region: change.region })?;
        if let (None, Some(remove)) = (change.add, change.remove) {
            if desc.learners.contains(&remove) {
                let gone = ChangeMembers::RemoveNodes([remove].into_iter().collect());
                replica.raft.change_membership(gone, false).await.map_err(unavailable)?;
                tracing::info!(region = change.region, learner = remove, "dropped a learner left by an earlier change");
                return Ok(());
            }
            if !desc.voters.contains(&remove) {
                return Ok(()); // already gone: the plan was made from an older descriptor
            }
        }
        let mut voters: BTreeSet<NodeId> = desc.voters.iter().copied().collect();
        if let (Some(add), Some(addr)) = (change.add, change.add_addr.clone()) {
            let _: serde_json::Value =
                post_json(&self.http, &addr, "/internal/replicas", &CreateReplica { desc: desc.clone() }).await?;
            tracing::info!(region = change.region, node = add, "adding a replica");
            let added =
                tokio::time::timeout(Duration::from_secs(60), replica.raft.add_learner(add, NodeInfo { addr }, true))
                    .await;
            match added {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(unavailable(e)),
                Err(_) => {
                    return Err(FlareError::Unavailable(format!(
                        "new replica of region {} did not catch up",
                        change.region
                    )));
                }
            }
            voters.insert(add);
        }
        if let Some(remove) = change.remove {
            voters.remove(&remove);
        }
        if voters.is_empty() {
            return Err(FlareError::Invalid("a region needs at least one replica".into()));
        }
        replica.raft.change_membership(ChangeMembers::ReplaceAllVoters(voters), false).await.map_err(unavailable)?;
        tracing::info!(region = change.region, add = ?change.add, remove = ?change.remove, "region membership changed");
        Ok(())
    }

    /// What this node reports in its heartbeat.
    fn heartbeat(&self) -> Heartbeat {
        let mut empty = Vec::new();
        let replicas = self
            .replicas()
            .iter()
            .filter_map(|r| {
                let Some(desc) = r.sm.desc() else {
                    if r.id != crate::region::META_REGION {
                        empty.push(r.id);
                    }
                    return None;
                };
                let leader = r.is_leader();
                let approximate_keys =
                    if leader { r.approximate_keys.load(std::sync::atomic::Ordering::Relaxed) } else { 0 };
                Some(ReplicaReport { desc, leader, approximate_keys })
            })
            .collect();
        Heartbeat { id: self.id, name: self.name.clone(), addr: self.addr.clone(), replicas, empty }
    }

    /// Handles a heartbeat on the meta leader.
    pub async fn on_heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatResponse, FlareError> {
        let Some(meta) = self.meta_leader() else { return Err(self.not_meta_leader()) };
        let term = meta.raft.metrics().borrow().current_term;
        let state = meta.sm.shared().meta.unwrap_or_default();
        let (changes, answer) = self.placement.on_heartbeat(term, &state, &hb);
        for c in changes {
            meta.propose(Command::Meta(c)).await?;
        }
        Ok(answer)
    }

    async fn send_heartbeat(self: &Arc<Self>) -> Result<(), FlareError> {
        let hb = self.heartbeat();
        let answer = if self.meta_leader().is_some() {
            self.on_heartbeat(hb).await?
        } else {
            self.meta_post::<Heartbeat, HeartbeatResponse>("/internal/heartbeat", &hb).await?
        };
        for group in answer.destroy {
            tracing::info!(group, "placement says this replica is stale");
            self.destroy_replica(group).await?;
        }
        Ok(())
    }

    /// One round of placement on the meta leader.
    async fn place(self: &Arc<Self>) {
        let Some(meta) = self.meta_leader() else { return };
        let term = meta.raft.metrics().borrow().current_term;
        let state = meta.sm.shared().meta.unwrap_or_default();
        for mut change in self.placement.next_changes(term, &state, self.config.replication_factor) {
            let Some((leader, _)) = self.placement.leader_of(term, change.region) else { continue };
            let Some(leader_addr) = state.nodes.get(&leader).map(|n| n.addr.clone()) else { continue };
            change.add_addr = change.add.and_then(|n| state.nodes.get(&n)).map(|n| n.addr.clone());
            let node = self.clone();
            tokio::spawn(async move {
                let region = change.region;
                let result: Result<serde_json::Value, FlareError> =
                    post_json(&node.http, &leader_addr, "/internal/change", &change).await;
                if let Err(e) = result {
                    tracing::warn!(region, error = %e, "placement change failed; will retry");
                }
                node.placement.change_done(term, region);
            });
        }
    }

    /// Splits regions this node leads that grew past the thresholds; collects old versions.
    async fn maintain_regions(self: &Arc<Self>, gc_due: bool) {
        for r in self.replicas() {
            if r.id == META_REGION || !r.is_leader() {
                continue;
            }
            let Some(desc) = r.sm.desc() else { continue };
            let Ok((keys, bytes)) = self.region_size(&desc, self.config.region_split_keys) else { continue };
            r.approximate_keys.store(keys, std::sync::atomic::Ordering::Relaxed);
            if keys > self.config.region_split_keys || bytes > self.config.region_split_bytes {
                match self.split(r.id, None).await {
                    Ok(child) => {
                        tracing::info!(region = r.id, child, keys, bytes, "split a region past its size limit")
                    }
                    Err(e) => tracing::warn!(region = r.id, error = %e, "split failed"),
                }
            }
            if gc_due && let Ok(now) = self.timestamps(1).await {
                let safe_point = compose(physical_ms(now).saturating_sub(self.config.gc_life_ms), 0);
                if let Err(e) = r.propose(Command::Gc { safe_point }).await {
                    tracing::debug!(region = r.id, error = %e, "gc skipped");
                }
            }
        }
    }

    /// The background loop: heartbeats, placement, splits and GC.
    async fn duties(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.heartbeat_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_gc = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.send_heartbeat().await {
                tracing::debug!(error = %e, "heartbeat not delivered");
            }
            self.place().await;
            let gc_due = last_gc.elapsed() >= Duration::from_millis(self.config.gc_interval_ms);
            if gc_due {
                last_gc = tokio::time::Instant::now();
            }
            self.maintain_regions(gc_due).await;
        }
    }
}

/// Marks a request sent by a flaredb node to a peer. A node that would have to forward such a
/// request to the meta leader answers "not leader" with its hint instead: two nodes that each
/// believe the other leads must not bounce a request between them until it times out (each hop
/// holds a connection, so a bounce during an election once piled up thousands of them).
pub const PEER_HEADER: &str = "x-flaredb-peer";

/// POSTs JSON to `{scheme}://{addr}{path}` (as a peer, see [`PEER_HEADER`]) and decodes the answer or
/// the flaredb error.
pub async fn post_json<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
    http: &reqwest::Client,
    addr: &str,
    path: &str,
    body: &Req,
) -> Result<Resp, FlareError> {
    let reply = http
        .post(format!("{}://{addr}{path}", ultracloud_tls::client::scheme()))
        .timeout(Duration::from_secs(10))
        .header(PEER_HEADER, "1")
        .json(body)
        .send()
        .await
        .map_err(|e| FlareError::Unavailable(format!("{addr}: {e}")))?;
    decode_reply(addr, reply).await
}

/// Decodes a flaredb answer: the JSON body, or the JSON error.
pub async fn decode_reply<Resp: DeserializeOwned>(addr: &str, reply: reqwest::Response) -> Result<Resp, FlareError> {
    let status = reply.status();
    let bytes = reply.bytes().await.map_err(|e| FlareError::Unavailable(format!("{addr}: {e}")))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .map_err(|e| FlareError::Internal(format!("{addr}: malformed answer: {e}")));
    }
    let text = String::from_utf8_lossy(&bytes);
    match serde_json::from_slice::<ErrorResponse>(&bytes) {
        Ok(e) => Err(e.error),
        // The TLS layer's refusals (no or the wrong certificate, plain HTTP to a TLS port) are
        // not flaredb errors; asking again would not change them.
        Err(_) if matches!(status.as_u16(), 400 | 401 | 403) => {
            Err(FlareError::Refused(format!("{addr}: HTTP {status}: {text}")))
        }
        Err(_) => Err(FlareError::Unavailable(format!("{addr}: HTTP {status}: {text}"))),
    }
}

/// A node's handle on the oracle, wherever the meta leader is: the replicas' timestamp source.
/// It holds the node weakly (the node owns the replicas that hold it) and is bound once the
/// node is built.
#[derive(Debug, Default)]
pub struct TsoClient {
    node: OnceLock<Weak<Node>>,
}

impl TsoClient {
    /// Binds the client to its node (after the node is built).
    pub fn bind(&self, node: &Arc<Node>) {
        let _ = self.node.set(Arc::downgrade(node));
    }
}

impl TimestampSource for TsoClient {
    fn timestamps(&self, count: u32) -> futures::future::BoxFuture<'_, Result<Ts, FlareError>> {
        Box::pin(async move {
            let node = self
                .node
                .get()
                .and_then(Weak::upgrade)
                .ok_or_else(|| FlareError::Unavailable("node is shutting down".into()))?;
            node.timestamps(count).await
        })
    }
}
