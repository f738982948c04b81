//! The state machine of one group on one node.
//!
//! Every group of a node applies into the node's one data database: a data region's MVCC rows
//! live in the shared `locks`/`writes`/`locks_by_txn` tables (regions never overlap, so a split
//! moves no data), and each group's own state — its descriptor, applied log id, membership, GC
//! safe point and, for the meta group, the placement state — is one row of `groups`.
//!
//! Applies are committed durably, one fsync per batch of entries (openraft hands over what is
//! committed in batches, and the batcher packs many client commands into each entry). They once
//! skipped the fsync, relying on the log: a crash took the database back to its last durable
//! commit and every group replayed its log from there. Under the Jepsen-style test (clients
//! moving money between accounts in three regions while nodes are SIGKILLed) that design let
//! snapshots see money appear and vanish and changed the bank's total in about one run in five;
//! with durable applies, none in fifteen. The flaw in the replay was not pinned down; a
//! database that never goes back behind what it answered removes the whole class.
//! A snapshot is always built from the current state, on demand.
//!
//! New groups start "pre-applied" at log index 0 with their membership already in place (the
//! way TiKV starts split regions): the log from index 1 on is the only history a replica may
//! replay, so a replica that lacks the group's data can only be brought up by a snapshot.

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    CommittedLeaderId, EntryPayload, Membership, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageIOError,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::types::{Command, Entry, LogId, NodeInfo, Outcome, Outcomes, StorageError, StoredMembership, TypeConfig};
use crate::error::FlareError;
use crate::meta::MetaState;
use crate::mvcc::{LOCKS, LOCKS_BY_TXN, MvccError, WRITES, WriteSet};
use crate::region::{NodeId, RegionDescriptor, RegionId};
use crate::ts::Ts;

/// group ID → [`GroupState`].
pub(crate) const GROUPS: TableDefinition<u64, &[u8]> = TableDefinition::new("groups");

/// The log id a new group starts at (see the module comment).
pub fn initial_log_id() -> LogId {
    LogId::new(CommittedLeaderId::new(0, 0), 0)
}

/// What a group's replica knows about itself, persisted with every apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    /// The region (`None` for the meta group and for a replica waiting for its first snapshot).
    pub desc: Option<RegionDescriptor>,
    /// Last applied log id.
    pub applied: Option<LogId>,
    /// Membership as of `applied`.
    pub membership: StoredMembership,
    /// Reads below this timestamp are refused: GC may have dropped what they would see.
    pub gc_safe_point: Ts,
    /// The placement state (meta group only).
    pub meta: Option<MetaState>,
}

impl GroupState {
    /// The state of a group created with `voters` at [`initial_log_id`].
    pub fn new_group(desc: Option<RegionDescriptor>, voters: &[(NodeId, NodeInfo)], meta: Option<MetaState>) -> Self {
        let ids: std::collections::BTreeSet<u64> = voters.iter().map(|(id, _)| *id).collect();
        let nodes: std::collections::BTreeMap<u64, NodeInfo> = voters.iter().cloned().collect();
        let membership = Membership::new(vec![ids], nodes);
        Self {
            desc,
            applied: Some(initial_log_id()),
            membership: StoredMembership::new(Some(initial_log_id()), membership),
            gc_safe_point: 0,
            meta,
        }
    }
}

/// What a replica tells its node after applying.
#[derive(Debug, Clone)]
pub enum GroupEvent {
    /// A region split: start the new region's replica here (its state is already stored).
    Split {
        /// The new region.
        child: RegionDescriptor,
    },
    /// This node is no longer a member of the group: stop the replica and drop its data.
    Removed {
        /// The group.
        group: RegionId,
    },
}

/// The part of the state that request handlers consult (kept in memory, updated on apply).
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// The region (see [`GroupState::desc`]).
    pub desc: Option<RegionDescriptor>,
    /// GC safe point.
    pub gc_safe_point: Ts,
    /// The placement state (meta group only).
    pub meta: Option<MetaState>,
}

/// A `writes` row: ((key, commit_ts), encoded write).
type WriteRow = ((Vec<u8>, u64), Vec<u8>);

/// Everything a snapshot holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Image {
    state: GroupState,
    locks: Vec<(Vec<u8>, Vec<u8>)>,
    writes: Vec<WriteRow>,
    by_txn: Vec<(u64, Vec<u8>)>,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Reads a group's stored state.
pub fn read_group(db: &Database, group: RegionId) -> Result<Option<GroupState>, std::io::Error> {
    let tx = db.begin_read().map_err(io_err)?;
    let t = match tx.open_table(GROUPS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    match t.get(group).map_err(io_err)? {
        Some(v) => Ok(Some(bincode::deserialize(v.value()).map_err(io_err)?)),
        None => Ok(None),
    }
}

/// Every group stored on this node.
pub fn stored_groups(db: &Database) -> Result<Vec<(RegionId, GroupState)>, std::io::Error> {
    let tx = db.begin_read().map_err(io_err)?;
    let t = match tx.open_table(GROUPS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![]),
        Err(e) => return Err(io_err(e)),
    };
    let mut out = Vec::new();
    for item in t.iter().map_err(io_err)? {
        let (k, v) = item.map_err(io_err)?;
        out.push((k.value(), bincode::deserialize(v.value()).map_err(io_err)?));
    }
    Ok(out)
}

/// Stores a group's state in `tx`.
pub fn write_group(tx: &WriteTransaction, group: RegionId, state: &GroupState) -> Result<(), std::io::Error> {
    let bytes = bincode::serialize(state).map_err(io_err)?;
    tx.open_table(GROUPS).map_err(io_err)?.insert(group, bytes.as_slice()).map_err(io_err)?;
    Ok(())
}

/// Deletes the MVCC rows of `[start, end)` in `tx`.
pub fn delete_range(tx: &WriteTransaction, start: &[u8], end: Option<&[u8]>) -> Result<(), std::io::Error> {
    let in_range = |k: &[u8]| k >= start && end.is_none_or(|e| k < e);
    let mut locks = tx.open_table(LOCKS).map_err(io_err)?;
    locks.retain(|k, _| !in_range(k)).map_err(io_err)?;
    let mut writes = tx.open_table(WRITES).map_err(io_err)?;
    writes.retain(|(k, _), _| !in_range(k)).map_err(io_err)?;
    let mut by_txn = tx.open_table(LOCKS_BY_TXN).map_err(io_err)?;
    by_txn.retain(|(_, k), _| !in_range(k)).map_err(io_err)?;
    Ok(())
}

/// The state machine of one group on this node; cheap to clone.
#[derive(Clone)]
pub struct StateMachine {
    group: RegionId,
    local: NodeId,
    db: Arc<Database>,
    shared: Arc<RwLock<Shared>>,
    applied: Arc<watch::Sender<u64>>,
    events: mpsc::UnboundedSender<(RegionId, GroupEvent)>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine").field("group", &self.group).finish_non_exhaustive()
    }
}

impl StateMachine {
    /// The state machine of `group` on node `local`, telling the node about splits and removals
    /// through `events`.
    pub fn open(
        group: RegionId,
        local: NodeId,
        db: Arc<Database>,
        events: mpsc::UnboundedSender<(RegionId, GroupEvent)>,
    ) -> Result<Self, std::io::Error> {
        let state = read_group(&db, group)?.unwrap_or_default();
        let shared = Shared { desc: state.desc, gc_safe_point: state.gc_safe_point, meta: state.meta };
        let applied = state.applied.map_or(0, |l| l.index);
        Ok(Self {
            group,
            local,
            db,
            shared: Arc::new(RwLock::new(shared)),
            applied: Arc::new(watch::channel(applied).0),
            events,
        })
    }

    /// What request handlers consult.
    pub fn shared(&self) -> Shared {
        self.shared.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The region descriptor, if this replica has one.
    pub fn desc(&self) -> Option<RegionDescriptor> {
        self.shared.read().unwrap_or_else(std::sync::PoisonError::into_inner).desc.clone()
    }

    /// Waits until the log is applied up to `index`.
    pub async fn wait_applied(&self, index: u64) {
        let mut rx = self.applied.subscribe();
        let _ = rx.wait_for(|a| *a >= index).await;
    }

    /// Makes every commit so far durable (before a snapshot is taken; applies are durable
    /// already, so this costs little).
    pub fn sync(&self) -> Result<(), std::io::Error> {
        let mut tx = self.db.begin_write().map_err(io_err)?;
        tx.set_durability(redb::Durability::Immediate).map_err(io_err)?;
        tx.commit().map_err(io_err)
    }

    fn set_shared(&self, state: &GroupState) {
        let mut s = self.shared.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.desc = state.desc.clone();
        s.gc_safe_point = state.gc_safe_point;
        s.meta = state.meta.clone();
    }

    fn apply_batch(&self, entries: Vec<Entry>) -> Result<Vec<Outcomes>, std::io::Error> {
        // Durable (redb's default durability): see the module comment.
        let tx = self.db.begin_write().map_err(io_err)?;
        let mut state = read_group_in(&tx, self.group)?;
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut events = Vec::new();
        for entry in entries {
            state.applied = Some(entry.log_id);
            let out = match entry.payload {
                EntryPayload::Blank => Outcomes::default(),
                EntryPayload::Membership(m) => {
                    let was_member = state.membership.membership().get_node(&self.local).is_some();
                    state.membership = StoredMembership::new(Some(entry.log_id), m);
                    let membership = state.membership.membership();
                    if let Some(desc) = state.desc.as_mut() {
                        desc.voters = membership.voter_ids().collect();
                        desc.learners = membership.learner_ids().collect();
                        desc.conf_ver += 1;
                    }
                    if was_member && membership.get_node(&self.local).is_none() {
                        events.push(GroupEvent::Removed { group: self.group });
                    }
                    Outcomes::default()
                }
                EntryPayload::Normal(p) => {
                    let mut results = Vec::with_capacity(p.0.len());
                    for cmd in p.0 {
                        results.push(self.apply_command(&tx, &mut state, cmd, &mut events)?);
                    }
                    Outcomes(results)
                }
            };
            outcomes.push(out);
        }
        write_group(&tx, self.group, &state)?;
        tx.commit().map_err(io_err)?;
        self.set_shared(&state);
        if let Some(applied) = state.applied {
            self.applied.send_replace(applied.index);
        }
        for e in events {
            let _ = self.events.send((self.group, e));
        }
        Ok(outcomes)
    }

    /// Applies one command. Deterministic refusals become `Outcome::Error`; only storage
    /// failures are errors (they stop the group).
    fn apply_command(
        &self,
        tx: &WriteTransaction,
        state: &mut GroupState,
        cmd: Command,
        events: &mut Vec<GroupEvent>,
    ) -> Result<Outcome, std::io::Error> {
        if let Command::Meta(m) = cmd {
            return Ok(match state.meta.as_mut() {
                Some(meta) => meta.apply(m),
                None => Outcome::Error(FlareError::Invalid("not the meta group".into())),
            });
        }
        let Some(desc) = state.desc.clone() else {
            // Only a replica that lost its descriptor gets here (a replica waiting for its first
            // snapshot is sent that snapshot, never entries). Skipping the command would move
            // `applied` past data this replica never wrote: stop the group instead.
            // (The command itself is not named: values may be secrets.)
            return Err(io_err(format!(
                "group {} has no region descriptor: refusing to apply a data command",
                self.group
            )));
        };
        let outside = |keys: Vec<&Vec<u8>>| keys.into_iter().find(|k| !desc.contains(k)).cloned();
        let refused = match &cmd {
            Command::Prewrite { mutations, .. } => outside(mutations.iter().map(|m| &m.key).collect()),
            Command::Commit { keys, .. } | Command::Rollback { keys, .. } => outside(keys.iter().collect()),
            Command::CheckTxnStatus { primary, .. } => outside(vec![primary]),
            Command::OnePc { op, .. } => (!desc.contains(op.key())).then(|| op.key().to_vec()),
            _ => None,
        };
        if let Some(key) = refused {
            return Ok(Outcome::Error(FlareError::KeyNotInRegion { key, region: self.group }));
        }
        let mut set = WriteSet::open(tx).map_err(io_err)?;
        let result: Result<Outcome, MvccError> = match cmd {
            Command::Prewrite { mutations, primary, start_ts, ttl_ms } => {
                set.prewrite(&mutations, &primary, start_ts, ttl_ms).map(|()| Outcome::Done)
            }
            Command::Commit { keys, start_ts, commit_ts } => {
                set.commit(&keys, start_ts, commit_ts).map(|()| Outcome::Done)
            }
            Command::Rollback { keys, start_ts } => set.rollback(&keys, start_ts).map(|()| Outcome::Done),
            Command::CheckTxnStatus { primary, start_ts, now } => {
                set.check_txn_status(&primary, start_ts, now).map(Outcome::Status)
            }
            Command::ResolveLock { start_ts, commit_ts } => set
                .resolve_lock(start_ts, commit_ts, &desc.start, desc.end.as_deref())
                .map(|n| Outcome::Count(n as u64)),
            Command::OnePc { op, commit_ts, token, retry_since } => {
                set.one_pc(&op, commit_ts, token, retry_since).map(Outcome::OnePc)
            }
            Command::Gc { safe_point } => {
                let r = set.gc(safe_point, &desc.start, desc.end.as_deref()).map(|n| Outcome::Count(n as u64));
                if r.is_ok() {
                    state.gc_safe_point = state.gc_safe_point.max(safe_point);
                }
                r
            }
            Command::Split { split_key, new_region } => {
                drop(set);
                return self.apply_split(tx, state, split_key, new_region, events);
            }
            Command::Meta(_) => unreachable_meta(),
        };
        Ok(match result {
            Ok(o) => o,
            Err(MvccError::Storage(e)) => return Err(io_err(e)),
            Err(e) => Outcome::Error(e.into()),
        })
    }

    fn apply_split(
        &self,
        tx: &WriteTransaction,
        state: &mut GroupState,
        split_key: Vec<u8>,
        new_region: RegionId,
        events: &mut Vec<GroupEvent>,
    ) -> Result<Outcome, std::io::Error> {
        let Some(desc) = state.desc.as_mut() else {
            return Ok(Outcome::Error(FlareError::RegionNotFound { region: self.group }));
        };
        if split_key.as_slice() <= desc.start.as_slice() || !desc.contains(&split_key) {
            return Ok(Outcome::Error(FlareError::Invalid(format!(
                "split key {split_key:?} is not strictly inside region {}",
                self.group
            ))));
        }
        desc.version += 1;
        let child = RegionDescriptor {
            id: new_region,
            start: split_key.clone(),
            end: desc.end.take(),
            version: desc.version,
            conf_ver: desc.conf_ver,
            voters: desc.voters.clone(),
            learners: vec![],
        };
        desc.end = Some(split_key);
        if read_group_in(tx, new_region)?.desc.is_none() {
            let membership = state.membership.membership();
            let voters: Vec<(NodeId, NodeInfo)> =
                membership.voter_ids().filter_map(|id| membership.get_node(&id).map(|n| (id, n.clone()))).collect();
            let mut child_state = GroupState::new_group(Some(child.clone()), &voters, None);
            child_state.gc_safe_point = state.gc_safe_point;
            write_group(tx, new_region, &child_state)?;
            events.push(GroupEvent::Split { child });
        }
        Ok(Outcome::Done)
    }

    fn image(&self) -> Result<Image, std::io::Error> {
        // The log behind a snapshot may be purged: the data must not fall behind it on a crash.
        self.sync()?;
        let tx = self.db.begin_read().map_err(io_err)?;
        let state = match tx.open_table(GROUPS) {
            Ok(t) => match t.get(self.group).map_err(io_err)? {
                Some(v) => bincode::deserialize(v.value()).map_err(io_err)?,
                None => GroupState::default(),
            },
            Err(e) => return Err(io_err(e)),
        };
        let mut img = Image { state, ..Image::default() };
        if let Some(desc) = img.state.desc.clone() {
            let (start, end) = (desc.start.as_slice(), desc.end.as_deref());
            let upper = end.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
            let locks = tx.open_table(LOCKS).map_err(io_err)?;
            for item in locks.range::<&[u8]>((std::ops::Bound::Included(start), upper)).map_err(io_err)? {
                let (k, v) = item.map_err(io_err)?;
                img.locks.push((k.value().to_vec(), v.value().to_vec()));
            }
            let writes = tx.open_table(WRITES).map_err(io_err)?;
            let wupper = end.map_or(std::ops::Bound::Unbounded, |e| std::ops::Bound::Excluded((e, 0u64)));
            for item in
                writes.range::<(&[u8], u64)>((std::ops::Bound::Included((start, 0u64)), wupper)).map_err(io_err)?
            {
                let (k, v) = item.map_err(io_err)?;
                let (key, ts) = k.value();
                img.writes.push(((key.to_vec(), ts), v.value().to_vec()));
            }
            let by_txn = tx.open_table(LOCKS_BY_TXN).map_err(io_err)?;
            for item in by_txn.iter().map_err(io_err)? {
                let (k, _) = item.map_err(io_err)?;
                let (ts, key) = k.value();
                if desc.contains(key) {
                    img.by_txn.push((ts, key.to_vec()));
                }
            }
        }
        Ok(img)
    }

    fn install(&self, img: Image) -> Result<(), std::io::Error> {
        let tx = self.db.begin_write().map_err(io_err)?;
        if let Some(desc) = &img.state.desc {
            delete_range(&tx, &desc.start, desc.end.as_deref())?;
            let mut locks = tx.open_table(LOCKS).map_err(io_err)?;
            for (k, v) in &img.locks {
                locks.insert(k.as_slice(), v.as_slice()).map_err(io_err)?;
            }
            let mut writes = tx.open_table(WRITES).map_err(io_err)?;
            for ((k, ts), v) in &img.writes {
                writes.insert((k.as_slice(), *ts), v.as_slice()).map_err(io_err)?;
            }
            let mut by_txn = tx.open_table(LOCKS_BY_TXN).map_err(io_err)?;
            for (ts, k) in &img.by_txn {
                by_txn.insert((*ts, k.as_slice()), ()).map_err(io_err)?;
            }
        }
        write_group(&tx, self.group, &img.state)?;
        tx.commit().map_err(io_err)?;
        self.set_shared(&img.state);
        if let Some(applied) = img.state.applied {
            self.applied.send_replace(applied.index);
        }
        Ok(())
    }

    fn snapshot_of(&self, img: &Image) -> Result<Snapshot<TypeConfig>, std::io::Error> {
        let last = img.state.applied;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: img.state.membership.clone(),
            snapshot_id: format!("{}-{}", self.group, last.map_or(0, |l| l.index)),
        };
        let data = bincode::serialize(img).map_err(io_err)?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

fn unreachable_meta() -> Result<Outcome, MvccError> {
    Err(MvccError::Invalid("meta command reached the data path".into()))
}

fn read_group_in(tx: &WriteTransaction, group: RegionId) -> Result<GroupState, std::io::Error> {
    let t = tx.open_table(GROUPS).map_err(io_err)?;
    let state = match t.get(group).map_err(io_err)? {
        Some(v) => bincode::deserialize(v.value()).map_err(io_err)?,
        None => GroupState::default(),
    };
    Ok(state)
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let img = self.image().map_err(|e| StorageIOError::read_state_machine(&e))?;
        self.snapshot_of(&img).map_err(|e| StorageIOError::read_state_machine(&e).into())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = read_group(&self.db, self.group).map_err(|e| StorageIOError::read_state_machine(&e))?;
        let state = state.unwrap_or_default();
        Ok((state.applied, state.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcomes>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.apply_batch(entries).map_err(|e| StorageIOError::write_state_machine(&e).into())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let mut img: Image = bincode::deserialize(snapshot.get_ref())
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        // The snapshot's metadata is authoritative for what it covers.
        img.state.applied = meta.last_log_id;
        img.state.membership = meta.last_membership.clone();
        self.install(img).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e).into())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let img = self.image().map_err(|e| StorageIOError::read_state_machine(&e))?;
        if img.state.applied.is_none() {
            return Ok(None);
        }
        self.snapshot_of(&img).map(Some).map_err(|e| StorageIOError::read_state_machine(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::mvcc::{OnePc, Store};
    use crate::raft::types::Proposal;

    fn db() -> (tempfile::TempDir, Arc<Database>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("d.redb")).unwrap());
        Store::open(db.clone()).unwrap();
        (dir, db)
    }

    fn entry(index: u64, cmds: Vec<Command>) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Normal(Proposal(cmds)) }
    }

    fn put(key: &[u8], ts: u64) -> Command {
        Command::OnePc {
            op: OnePc::Put { key: key.to_vec(), value: b"v".to_vec() },
            commit_ts: ts,
            token: None,
            retry_since: None,
        }
    }

    /// Stores region 1, covering every key, on node 1 alone.
    fn whole_region(data: &Database) {
        let whole = RegionDescriptor {
            id: 1,
            start: vec![],
            end: None,
            version: 1,
            conf_ver: 1,
            voters: vec![1],
            learners: vec![],
        };
        let voters = [(1u64, NodeInfo { addr: "127.0.0.1:1".into() })];
        let tx = data.begin_write().unwrap();
        write_group(&tx, 1, &GroupState::new_group(Some(whole), &voters, None)).unwrap();
        tx.commit().unwrap();
    }

    /// What a crash leaves of `db`'s file: a copy taken while the database is open (redb's
    /// commits without fsync would not be in it).
    fn crash_image(dir: &tempfile::TempDir) -> Database {
        let image = dir.path().join("crash.redb");
        std::fs::copy(dir.path().join("d.redb"), &image).unwrap();
        Database::create(image).unwrap()
    }

    #[tokio::test]
    async fn applies_survive_a_crash_and_a_replica_without_its_range_stops() {
        let (dir, data) = db();
        whole_region(&data);
        let (events, _rx) = mpsc::unbounded_channel();
        let mut sm = StateMachine::open(1, 1, data.clone(), events.clone()).unwrap();
        sm.apply(vec![entry(1, vec![put(b"a", 10)])]).await.unwrap();
        let image = crash_image(&dir);
        assert_eq!(read_group(&image, 1).unwrap().unwrap().applied.map(|l| l.index), Some(1), "an apply is durable");
        assert_eq!(Store::open(Arc::new(image)).unwrap().get(b"a", u64::MAX).unwrap(), Some(b"v".to_vec()));
        sm.apply(vec![entry(2, vec![Command::Split { split_key: b"m".to_vec(), new_region: 2 }])]).await.unwrap();
        let image = crash_image(&dir);
        let child = read_group(&image, 2).unwrap().expect("the new region survives a crash");
        assert_eq!(child.desc.map(|d| d.start), Some(b"m".to_vec()));
        assert_eq!(read_group(&image, 1).unwrap().unwrap().applied.map(|l| l.index), Some(2));
        drop(image);

        // A replica whose group has no descriptor refuses data commands instead of skipping them.
        let tx = data.begin_write().unwrap();
        write_group(&tx, 3, &GroupState::default()).unwrap();
        tx.commit().unwrap();
        let mut empty = StateMachine::open(3, 1, data.clone(), events).unwrap();
        let refused = empty.apply(vec![entry(1, vec![put(b"x", 20)])]).await;
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(read_group(&data, 3).unwrap().unwrap().applied, None, "nothing was applied");
    }

    #[tokio::test]
    async fn a_split_narrows_the_parent_and_a_snapshot_carries_only_its_range() {
        let (_d, data) = db();
        whole_region(&data);
        let (events, mut rx) = mpsc::unbounded_channel();
        let mut sm = StateMachine::open(1, 1, data.clone(), events).unwrap();
        let out = sm
            .apply(vec![
                entry(1, vec![put(b"a", 10), put(b"z", 11)]),
                entry(2, vec![Command::Split { split_key: b"m".to_vec(), new_region: 2 }]),
                entry(3, vec![put(b"b", 12), put(b"y", 13)]),
            ])
            .await
            .unwrap();
        assert_eq!(out[2].0[0], Outcome::OnePc(crate::mvcc::OnePcResult::Done { value: None }));
        assert!(matches!(&out[2].0[1], Outcome::Error(FlareError::KeyNotInRegion { .. })), "{:?}", out[2]);
        let desc = sm.desc().unwrap();
        assert_eq!((desc.end.as_deref(), desc.version), (Some(&b"m"[..]), 2));
        let Some((1, GroupEvent::Split { child })) = rx.recv().await else { panic!("no split event") };
        assert_eq!((child.id, child.start.as_slice(), child.end.as_deref()), (2, &b"m"[..], None));
        let child_state = read_group(&data, 2).unwrap().unwrap();
        assert_eq!(child_state.applied, Some(initial_log_id()), "the new region starts pre-applied");
        assert_eq!(child_state.membership.membership().voter_ids().collect::<Vec<_>>(), [1]);

        // Region 1's snapshot, installed on another node, holds a and b but not z.
        let snap = sm.get_current_snapshot().await.unwrap().unwrap();
        let (_d2, other) = db();
        let (events2, _rx2) = mpsc::unbounded_channel();
        let mut sm2 = StateMachine::open(1, 2, other.clone(), events2).unwrap();
        sm2.install_snapshot(&snap.meta, snap.snapshot).await.unwrap();
        let store = Store::open(other.clone()).unwrap();
        assert_eq!(store.get(b"a", u64::MAX).unwrap(), Some(b"v".to_vec()));
        assert_eq!(store.get(b"b", u64::MAX).unwrap(), Some(b"v".to_vec()));
        assert_eq!(store.get(b"z", u64::MAX).unwrap(), None, "z belongs to the new region");
        assert_eq!(sm2.desc().unwrap().end.as_deref(), Some(&b"m"[..]));
        assert_eq!(sm2.applied_state().await.unwrap().0.map(|l| l.index), Some(3));
    }
}
