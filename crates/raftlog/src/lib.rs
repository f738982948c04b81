//! The Raft log of every openraft group of a process, in one redb database.
//!
//! Rows are keyed by (group, index), so chainfire's single group and flaredb's many regions use
//! the same code. Writes go through one writer thread that takes every operation queued since
//! its last commit — from any group — and commits them in one redb transaction with one fsync
//! (group commit): under load many client writes, and many regions, share an fsync. `append`
//! returns as soon as its entries are queued (they are readable at once from an in-memory
//! overlay) and tells openraft through its `LogFlushed` callback when they are durable; votes,
//! truncations and purges wait for their commit.

pub mod batcher;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{LogId, OptionalSend, RaftLogReader, RaftTypeConfig, StorageError, StorageIOError, Vote};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

const LOG: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("raft_log");
const RAFT_META: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("raft_meta");
const VOTE: &str = "vote";
const PURGED: &str = "last_purged";

/// Most operations committed together.
const MAX_GROUP: usize = 4096;

/// The type configurations this log serves: numeric node IDs and openraft's own entry type.
pub trait LogTypeConfig: RaftTypeConfig<NodeId = u64, Entry = openraft::Entry<Self>> {}
impl<C: RaftTypeConfig<NodeId = u64, Entry = openraft::Entry<C>>> LogTypeConfig for C {}

/// A range of (group, index) keys.
type KeyRange = (Bound<(u64, u64)>, Bound<(u64, u64)>);

type Pending<C> = BTreeMap<(u64, u64), (u64, openraft::Entry<C>)>;

/// The log database of a process; cheap to clone. Hand each group its [`LogStore`] with
/// [`LogDb::group`].
pub struct LogDb<C: LogTypeConfig> {
    db: Arc<Database>,
    /// Entries queued for the writer but not committed yet, by (group, index), with the
    /// sequence number of the append that queued them (so a later re-append is not dropped).
    pending: Arc<Mutex<Pending<C>>>,
    seq: Arc<AtomicU64>,
    writer: std::sync::mpsc::Sender<WriteOp<C>>,
}

impl<C: LogTypeConfig> Clone for LogDb<C> {
    fn clone(&self) -> Self {
        Self { db: self.db.clone(), pending: self.pending.clone(), seq: self.seq.clone(), writer: self.writer.clone() }
    }
}

impl<C: LogTypeConfig> Debug for LogDb<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogDb").finish_non_exhaustive()
    }
}

/// An operation for the writer thread, applied in queue order.
enum WriteOp<C: LogTypeConfig> {
    Append { group: u64, seq: u64, entries: Vec<(u64, Vec<u8>)>, done: LogFlushed<C> },
    Meta { group: u64, key: &'static str, bytes: Vec<u8>, done: Done },
    Truncate { group: u64, from: u64, done: Done },
    Purge { group: u64, upto: u64, log_id: Vec<u8>, done: Done },
    Drop { group: u64, done: Done },
}

type Done = oneshot::Sender<std::io::Result<()>>;

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, std::io::Error> {
    bincode::serialize(v).map_err(io_err)
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, std::io::Error> {
    bincode::deserialize(b).map_err(io_err)
}

impl<C: LogTypeConfig> LogDb<C> {
    /// Opens the log in `db`, creating its tables, and starts the writer thread (named
    /// `thread_name`, for stack dumps and `top -H`).
    pub fn open(db: Arc<Database>, thread_name: &str) -> Result<Self, redb::Error> {
        let tx = db.begin_write()?;
        {
            tx.open_table(LOG)?;
            tx.open_table(RAFT_META)?;
        }
        tx.commit()?;
        let (writer, ops) = std::sync::mpsc::channel();
        let pending = Arc::new(Mutex::new(BTreeMap::new()));
        let (thread_db, thread_pending) = (db.clone(), pending.clone());
        std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || write_loop(&thread_db, &thread_pending, &ops))
            .map_err(redb::Error::Io)?;
        Ok(Self { db, pending, seq: Arc::new(AtomicU64::new(0)), writer })
    }

    /// The log of `group`.
    pub fn group(&self, group: u64) -> LogStore<C> {
        LogStore { log: self.clone(), group }
    }

    /// The groups that have anything stored (entries, a vote or a purge mark), in order.
    pub fn groups(&self) -> std::io::Result<Vec<u64>> {
        let tx = self.db.begin_read().map_err(io_err)?;
        let mut out = BTreeSet::new();
        let meta = tx.open_table(RAFT_META).map_err(io_err)?;
        for item in meta.iter().map_err(io_err)? {
            let (k, _) = item.map_err(io_err)?;
            out.insert(k.value().0);
        }
        // Entries: one lookup per group, jumping over the rest of its rows.
        let log = tx.open_table(LOG).map_err(io_err)?;
        let mut from = Some(0);
        while let Some(g) = from {
            let Some(item) = log.range((g, 0)..).map_err(io_err)?.next() else { break };
            let group = item.map_err(io_err)?.0.value().0;
            out.insert(group);
            from = group.checked_add(1);
        }
        Ok(out.into_iter().collect())
    }

    /// Deletes everything of `group` (a replica that left its group); waits for the commit.
    pub async fn drop_group(&self, group: u64) -> std::io::Result<()> {
        self.lock_pending().retain(|(g, _), _| *g != group);
        self.commit(|done| WriteOp::Drop { group, done }).await
    }

    fn lock_pending(&self) -> MutexGuard<'_, Pending<C>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a read of redb together with the queued entries of `range` (cloned).
    ///
    /// The read starts under the overlay's lock: the writer takes entries out of the overlay only
    /// after committing them, so each entry is in the overlay copy, in the read, or in both
    /// (then the overlay's is as new or newer). Started outside the lock, a read could miss an
    /// entry committed and taken out of the overlay in between — a gap in the middle of a
    /// replicated batch.
    fn begin_read(&self, range: KeyRange) -> std::io::Result<(ReadTransaction, Vec<openraft::Entry<C>>)>
    where
        C::D: Clone,
    {
        let pending = self.lock_pending();
        let tx = self.db.begin_read().map_err(io_err)?;
        let queued = pending.range(range).map(|(_, (_, e))| e.clone()).collect();
        Ok((tx, queued))
    }

    fn get_meta<T: DeserializeOwned>(&self, group: u64, key: &str) -> Result<Option<T>, std::io::Error> {
        let tx = self.db.begin_read().map_err(io_err)?;
        read_meta(&tx, group, key)
    }
    /// Queues an operation and waits for its commit.
    async fn commit(&self, make: impl FnOnce(Done) -> WriteOp<C>) -> std::io::Result<()> {
        let (done, wait) = oneshot::channel();
        self.writer.send(make(done)).map_err(|_| io_err("log writer stopped"))?;
        wait.await.map_err(|_| io_err("log writer stopped"))?
    }
}

fn read_meta<T: DeserializeOwned>(tx: &ReadTransaction, group: u64, key: &str) -> Result<Option<T>, std::io::Error> {
    let t = tx.open_table(RAFT_META).map_err(io_err)?;
    match t.get((group, key)).map_err(io_err)? {
        Some(v) => Ok(Some(decode(v.value())?)),
        None => Ok(None),
    }
}

/// The writer thread: commits every queued operation in one transaction per round.
fn write_loop<C: LogTypeConfig>(
    db: &Database,
    pending: &Mutex<Pending<C>>,
    ops: &std::sync::mpsc::Receiver<WriteOp<C>>,
) {
    while let Ok(first) = ops.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match ops.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        let result = commit_group(db, &group);
        tracing::trace!(ops = group.len(), "log group committed");
        // Committed entries now live in redb; drop them from the overlay unless re-queued since.
        if result.is_ok() {
            let mut p = pending.lock().unwrap_or_else(PoisonError::into_inner);
            for op in &group {
                if let WriteOp::Append { group, seq, entries, .. } = op {
                    for (index, _) in entries {
                        if p.get(&(*group, *index)).is_some_and(|(s, _)| s == seq) {
                            p.remove(&(*group, *index));
                        }
                    }
                }
            }
        }
        for op in group {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io_err(e)),
            };
            match op {
                WriteOp::Append { done, .. } => done.log_io_completed(r),
                WriteOp::Meta { done, .. }
                | WriteOp::Truncate { done, .. }
                | WriteOp::Purge { done, .. }
                | WriteOp::Drop { done, .. } => {
                    let _ = done.send(r);
                }
            }
        }
    }
}

fn commit_group<C: LogTypeConfig>(db: &Database, ops: &[WriteOp<C>]) -> std::io::Result<()> {
    let tx = db.begin_write().map_err(io_err)?;
    {
        let mut log = tx.open_table(LOG).map_err(io_err)?;
        let mut meta = tx.open_table(RAFT_META).map_err(io_err)?;
        for op in ops {
            match op {
                WriteOp::Append { group, entries, .. } => {
                    for (index, bytes) in entries {
                        log.insert((*group, *index), bytes.as_slice()).map_err(io_err)?;
                    }
                }
                WriteOp::Meta { group, key, bytes, .. } => {
                    meta.insert((*group, *key), bytes.as_slice()).map_err(io_err)?;
                }
                WriteOp::Truncate { group, from, .. } => {
                    log.retain_in((*group, *from)..=(*group, u64::MAX), |_, _| false).map_err(io_err)?;
                }
                WriteOp::Purge { group, upto, log_id, .. } => {
                    meta.insert((*group, PURGED), log_id.as_slice()).map_err(io_err)?;
                    log.retain_in((*group, 0)..=(*group, *upto), |_, _| false).map_err(io_err)?;
                }
                WriteOp::Drop { group, .. } => {
                    log.retain_in((*group, 0)..=(*group, u64::MAX), |_, _| false).map_err(io_err)?;
                    meta.retain(|(g, _), _| g != *group).map_err(io_err)?;
                }
            }
        }
    }
    tx.commit().map_err(io_err)
}

/// The log of one Raft group; cheap to clone (the database and the writer are shared).
pub struct LogStore<C: LogTypeConfig> {
    log: LogDb<C>,
    group: u64,
}

impl<C: LogTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self { log: self.log.clone(), group: self.group }
    }
}

impl<C: LogTypeConfig> Debug for LogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").field("group", &self.group).finish_non_exhaustive()
    }
}

impl<C: LogTypeConfig> LogStore<C> {
    /// The group this log belongs to.
    pub fn group_id(&self) -> u64 {
        self.group
    }

    /// Opens a single-group log (group 0) in `db`: chainfire's case.
    pub fn open(db: Arc<Database>) -> Result<Self, redb::Error> {
        Ok(LogDb::open(db, "raft-log-writer")?.group(0))
    }
}

impl<C: LogTypeConfig> RaftLogReader<C> for LogStore<C>
where
    C::D: Serialize + DeserializeOwned + Clone,
    C::Node: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<u64>> {
        let g = self.group;
        let read = || -> Result<Vec<C::Entry>, std::io::Error> {
            let lo = match range.start_bound() {
                Bound::Included(i) => Bound::Included((g, *i)),
                Bound::Excluded(i) => Bound::Excluded((g, *i)),
                Bound::Unbounded => Bound::Included((g, 0)),
            };
            let hi = match range.end_bound() {
                Bound::Included(i) => Bound::Included((g, *i)),
                Bound::Excluded(i) => Bound::Excluded((g, *i)),
                Bound::Unbounded => Bound::Included((g, u64::MAX)),
            };
            let (tx, queued) = self.log.begin_read((lo, hi))?;
            let t = tx.open_table(LOG).map_err(io_err)?;
            let mut out: BTreeMap<u64, C::Entry> = BTreeMap::new();
            for item in t.range((lo, hi)).map_err(io_err)? {
                let (k, v) = item.map_err(io_err)?;
                out.insert(k.value().1, decode(v.value())?);
            }
            // Queued entries are newer than what redb holds for the same index.
            for entry in queued {
                out.insert(entry.log_id.index, entry);
            }
            Ok(out.into_values().collect())
        };
        read().map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl<C: LogTypeConfig> RaftLogStorage<C> for LogStore<C>
where
    C::D: Serialize + DeserializeOwned + Clone,
    C::Node: Serialize + DeserializeOwned,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<u64>> {
        let g = self.group;
        let read = || -> Result<LogState<C>, std::io::Error> {
            let all = (Bound::Included((g, 0)), Bound::Included((g, u64::MAX)));
            let (tx, queued) = self.log.begin_read(all)?;
            let last_purged_log_id: Option<LogId<u64>> = read_meta(&tx, g, PURGED)?;
            let t = tx.open_table(LOG).map_err(io_err)?;
            let stored = match t.range(all).map_err(io_err)?.next_back() {
                Some(item) => Some(decode::<C::Entry>(item.map_err(io_err)?.1.value())?.log_id),
                None => None,
            };
            let queued = queued.last().map(|e| e.log_id);
            let last = std::cmp::max(stored, queued);
            Ok(LogState { last_purged_log_id, last_log_id: last.or(last_purged_log_id) })
        };
        read().map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let bytes = encode(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        let group = self.group;
        self.log
            .commit(|done| WriteOp::Meta { group, key: VOTE, bytes, done })
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.log.get_meta(self.group, VOTE).map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<C::Entry> = entries.into_iter().collect();
        let encoded: Result<Vec<(u64, Vec<u8>)>, std::io::Error> =
            entries.iter().map(|e| Ok((e.log_id.index, encode(e)?))).collect();
        let encoded = encoded.map_err(|e| StorageIOError::write_logs(&e))?;
        let seq = self.log.seq.fetch_add(1, Ordering::Relaxed);
        {
            let mut pending = self.log.lock_pending();
            for e in entries {
                pending.insert((self.group, e.log_id.index), (seq, e));
            }
        }
        self.log
            .writer
            .send(WriteOp::Append { group: self.group, seq, entries: encoded, done: callback })
            .map_err(|_| StorageIOError::write_logs(&io_err("log writer stopped")).into())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let group = self.group;
        self.log.lock_pending().retain(|(g, index), _| *g != group || *index < log_id.index);
        self.log
            .commit(|done| WriteOp::Truncate { group, from: log_id.index, done })
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let bytes = encode(&log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        let group = self.group;
        self.log
            .commit(|done| WriteOp::Purge { group, upto: log_id.index, log_id: bytes, done })
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    //! openraft's storage suite on one group among neighbours, the isolation of groups sharing a
    //! database, and two real single-member Raft groups writing through one log.
    //!
    //! openraft 0.9 builds the `LogFlushed` callback that `append` needs only inside itself, so
    //! appends go through openraft: the suite's `feed_10_logs_vote_self` (entries 0..=10, vote
    //! term 1) or a real `openraft::Raft`.

    use std::collections::BTreeMap;
    use std::io::Cursor;
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
    use openraft::raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
        VoteResponse,
    };
    use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
    use openraft::testing::{StoreBuilder, Suite, log_id};
    use openraft::{BasicNode, EntryPayload, RaftSnapshotBuilder, ServerState, StoredMembership};
    use serde::Deserialize;

    use super::*;

    /// The command of the test groups.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    struct Put {
        key: String,
        value: u64,
    }

    openraft::declare_raft_types!(
        /// The test groups' Raft types.
        Tc:
            D = Put,
            R = (),
            NodeId = u64,
            Node = BasicNode,
            Entry = openraft::Entry<Tc>,
            SnapshotData = Cursor<Vec<u8>>,
            AsyncRuntime = openraft::TokioRuntime,
    );

    type Entry = openraft::Entry<Tc>;
    type Store = LogStore<Tc>;
    type TestSuite = Suite<Tc, Store, MemSm, Builder, tempfile::TempDir>;

    /// A state machine in memory: what the suite and a real Raft need besides the log.
    #[derive(Debug, Clone, Default)]
    struct MemSm(Arc<Mutex<SmState>>);

    #[derive(Debug, Default)]
    struct SmState {
        applied: Option<LogId<u64>>,
        membership: StoredMembership<u64, BasicNode>,
        puts: Vec<Put>,
        snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    }

    impl MemSm {
        fn state(&self) -> MutexGuard<'_, SmState> {
            self.0.lock().unwrap()
        }
    }

    impl RaftSnapshotBuilder<Tc> for MemSm {
        async fn build_snapshot(&mut self) -> Result<Snapshot<Tc>, StorageError<u64>> {
            let mut s = self.state();
            let data = encode(&s.puts).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
            let snapshot_id = format!("{:?}", s.applied.map(|l| l.index));
            let meta = SnapshotMeta { last_log_id: s.applied, last_membership: s.membership.clone(), snapshot_id };
            s.snapshot = Some((meta.clone(), data.clone()));
            Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
        }
    }

    impl RaftStateMachine<Tc> for MemSm {
        type SnapshotBuilder = Self;

        async fn applied_state(
            &mut self,
        ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
            let s = self.state();
            Ok((s.applied, s.membership.clone()))
        }

        async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<u64>>
        where
            I: IntoIterator<Item = Entry> + OptionalSend,
            I::IntoIter: OptionalSend,
        {
            let mut s = self.state();
            let mut out = Vec::new();
            for e in entries {
                s.applied = Some(e.log_id);
                match e.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(put) => s.puts.push(put),
                    EntryPayload::Membership(m) => s.membership = StoredMembership::new(Some(e.log_id), m),
                }
                out.push(());
            }
            Ok(out)
        }

        async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
            self.clone()
        }

        async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
            Ok(Box::new(Cursor::new(Vec::new())))
        }

        async fn install_snapshot(
            &mut self,
            meta: &SnapshotMeta<u64, BasicNode>,
            snapshot: Box<Cursor<Vec<u8>>>,
        ) -> Result<(), StorageError<u64>> {
            let data = snapshot.into_inner();
            let puts = decode(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
            let mut s = self.state();
            s.applied = meta.last_log_id;
            s.membership = meta.last_membership.clone();
            s.puts = puts;
            s.snapshot = Some((meta.clone(), data));
            Ok(())
        }

        async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<Tc>>, StorageError<u64>> {
            let s = self.state();
            Ok(s.snapshot.clone().map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
        }
    }

    /// No peers: the test groups have one member each.
    struct NoPeers;

    type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

    fn no_peer<E: std::error::Error>() -> RPCError<u64, BasicNode, RaftError<u64, E>> {
        RPCError::Unreachable(Unreachable::new(&io_err("single-member test group")))
    }

    impl RaftNetworkFactory<Tc> for NoPeers {
        type Network = NoPeers;

        async fn new_client(&mut self, _target: u64, _node: &BasicNode) -> NoPeers {
            NoPeers
        }
    }

    impl RaftNetwork<Tc> for NoPeers {
        async fn append_entries(
            &mut self,
            _rpc: AppendEntriesRequest<Tc>,
            _option: RPCOption,
        ) -> RpcResult<AppendEntriesResponse<u64>> {
            Err(no_peer())
        }

        async fn install_snapshot(
            &mut self,
            _rpc: InstallSnapshotRequest<Tc>,
            _option: RPCOption,
        ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
            Err(no_peer())
        }

        async fn vote(&mut self, _rpc: VoteRequest<u64>, _option: RPCOption) -> RpcResult<VoteResponse<u64>> {
            Err(no_peer())
        }
    }

    const DB_FILE: &str = "log.redb";

    /// A log database in a fresh temporary directory.
    fn new_db() -> (tempfile::TempDir, LogDb<Tc>) {
        let dir = tempfile::tempdir().unwrap();
        let log = open_db(&dir.path().join(DB_FILE));
        (dir, log)
    }

    /// Opens the log database at `path`, waiting (up to a deadline) for the writer thread of a
    /// previous opening to let go of the file once its last handle is dropped.
    fn open_db(path: &Path) -> LogDb<Tc> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let db = loop {
            match Database::create(path) {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("opening {}: {e}", path.display()),
            }
        };
        LogDb::open(Arc::new(db), "test-log-writer").unwrap()
    }

    /// The indexes of every entry of `store`.
    async fn indexes(store: &mut Store) -> Vec<u64> {
        store.try_get_log_entries(..).await.unwrap().iter().map(|e| e.log_id.index).collect()
    }

    /// (last purged, last) log indexes of `store`.
    async fn state(store: &mut Store) -> (Option<u64>, Option<u64>) {
        let s = store.get_log_state().await.unwrap();
        (s.last_purged_log_id.map(|l| l.index), s.last_log_id.map(|l| l.index))
    }

    async fn feed(store: &mut Store) {
        TestSuite::feed_10_logs_vote_self(store).await.unwrap();
    }

    /// Builds the suite's group 2 beside groups 1 and 3, which hold entries, a vote and a purge
    /// mark that group 2 must never see.
    struct Builder;

    impl StoreBuilder<Tc, Store, MemSm, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, Store, MemSm), StorageError<u64>> {
            let (dir, log) = new_db();
            for g in [1, 3] {
                TestSuite::feed_10_logs_vote_self(&mut log.group(g)).await?;
            }
            log.group(1).purge(log_id(1, 0, 4)).await?;
            log.group(3).save_vote(&Vote::new(9, 3)).await?;
            Ok((dir, log.group(2), MemSm::default()))
        }
    }

    // A plain #[test]: the suite starts its own runtime for each case.
    #[test]
    fn openraft_storage_suite_on_a_group_between_neighbours() {
        TestSuite::test_all(Builder).unwrap();
    }

    #[tokio::test]
    async fn a_new_group_sees_nothing_of_its_neighbours() {
        let (_dir, log) = new_db();
        feed(&mut log.group(1)).await;
        feed(&mut log.group(3)).await;
        let mut g2 = log.group(2);
        assert_eq!(g2.group_id(), 2);
        assert_eq!(indexes(&mut g2).await, Vec::<u64>::new());
        assert_eq!(state(&mut g2).await, (None, None));
        assert_eq!(g2.read_vote().await.unwrap(), None);
        assert_eq!(indexes(&mut log.group(1)).await, (0..=10).collect::<Vec<_>>());
        assert_eq!(indexes(&mut log.group(3)).await, (0..=10).collect::<Vec<_>>());
        // Bounded and unbounded ranges stop at the group's edge.
        assert_eq!(log.group(1).try_get_log_entries(5..).await.unwrap().len(), 6);
        assert_eq!(log.group(3).try_get_log_entries(..=3).await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn votes_are_per_group() {
        let (_dir, log) = new_db();
        feed(&mut log.group(1)).await;
        feed(&mut log.group(2)).await;
        log.group(2).save_vote(&Vote::new(7, 2)).await.unwrap();
        assert_eq!(log.group(1).read_vote().await.unwrap(), Some(Vote::new(1, 0)));
        assert_eq!(log.group(2).read_vote().await.unwrap(), Some(Vote::new(7, 2)));
        assert_eq!(log.group(3).read_vote().await.unwrap(), None);
    }

    #[tokio::test]
    async fn purge_touches_only_its_group() {
        let (_dir, log) = new_db();
        for g in 1..=3 {
            feed(&mut log.group(g)).await;
        }
        log.group(2).purge(log_id(1, 0, 4)).await.unwrap();
        assert_eq!(indexes(&mut log.group(2)).await, (5..=10).collect::<Vec<_>>());
        assert_eq!(state(&mut log.group(2)).await, (Some(4), Some(10)));
        for g in [1, 3] {
            assert_eq!(indexes(&mut log.group(g)).await, (0..=10).collect::<Vec<_>>(), "group {g}");
            assert_eq!(state(&mut log.group(g)).await, (None, Some(10)), "group {g}");
        }
        // Purging everything leaves the purge mark as the last log id.
        log.group(2).purge(log_id(1, 0, 10)).await.unwrap();
        assert_eq!(indexes(&mut log.group(2)).await, Vec::<u64>::new());
        assert_eq!(state(&mut log.group(2)).await, (Some(10), Some(10)));
        assert_eq!(state(&mut log.group(3)).await, (None, Some(10)));
    }

    #[tokio::test]
    async fn truncate_touches_only_its_group() {
        let (_dir, log) = new_db();
        for g in 1..=3 {
            feed(&mut log.group(g)).await;
        }
        log.group(2).truncate(log_id(1, 0, 6)).await.unwrap();
        assert_eq!(indexes(&mut log.group(2)).await, (0..=5).collect::<Vec<_>>());
        assert_eq!(state(&mut log.group(2)).await, (None, Some(5)));
        for g in [1, 3] {
            assert_eq!(indexes(&mut log.group(g)).await, (0..=10).collect::<Vec<_>>(), "group {g}");
        }
        // Re-appending after a truncation continues the group's own log.
        TestSuite::default_vote(&mut log.group(2)).await.unwrap();
        log.group(2).truncate(log_id(0, 0, 0)).await.unwrap();
        assert_eq!(state(&mut log.group(2)).await, (None, None));
        feed(&mut log.group(2)).await;
        assert_eq!(indexes(&mut log.group(2)).await, (0..=10).collect::<Vec<_>>());
        assert_eq!(indexes(&mut log.group(3)).await, (0..=10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn drop_group_removes_its_rows_and_only_its_rows() {
        let (_dir, log) = new_db();
        for g in 1..=3 {
            feed(&mut log.group(g)).await;
        }
        log.group(2).purge(log_id(1, 0, 3)).await.unwrap();
        assert_eq!(log.groups().unwrap(), vec![1, 2, 3]);

        log.drop_group(2).await.unwrap();
        assert_eq!(log.groups().unwrap(), vec![1, 3]);
        let mut g2 = log.group(2);
        assert_eq!(indexes(&mut g2).await, Vec::<u64>::new());
        assert_eq!(state(&mut g2).await, (None, None));
        assert_eq!(g2.read_vote().await.unwrap(), None);
        for g in [1, 3] {
            assert_eq!(indexes(&mut log.group(g)).await, (0..=10).collect::<Vec<_>>(), "group {g}");
            assert_eq!(log.group(g).read_vote().await.unwrap(), Some(Vote::new(1, 0)), "group {g}");
        }

        // A dropped group can start again from nothing.
        feed(&mut log.group(2)).await;
        assert_eq!(log.groups().unwrap(), vec![1, 2, 3]);
        assert_eq!(state(&mut log.group(2)).await, (None, Some(10)));
    }

    #[tokio::test]
    async fn groups_lists_groups_with_entries_a_vote_or_a_purge_mark() {
        let (_dir, log) = new_db();
        assert_eq!(log.groups().unwrap(), Vec::<u64>::new());
        log.group(5).save_vote(&Vote::new(1, 5)).await.unwrap();
        log.group(2).purge(log_id(1, 0, 3)).await.unwrap();
        feed(&mut log.group(u64::MAX)).await;
        // Entries but no vote: written straight into the table, as `append` cannot be called
        // without a vote through openraft's helpers.
        let tx = log.db.begin_write().unwrap();
        {
            let bytes = encode(&openraft::testing::blank_ent::<Tc>(1, 0, 4)).unwrap();
            let mut t = tx.open_table(LOG).unwrap();
            t.insert((9, 4), bytes.as_slice()).unwrap();
        }
        tx.commit().unwrap();
        assert_eq!(log.groups().unwrap(), vec![2, 5, 9, u64::MAX]);
        assert_eq!(indexes(&mut log.group(9)).await, vec![4]);
    }

    #[tokio::test]
    async fn entries_votes_and_purge_marks_survive_reopening() {
        let (dir, log) = new_db();
        for g in [1, 2] {
            feed(&mut log.group(g)).await;
        }
        log.group(1).purge(log_id(1, 0, 2)).await.unwrap();
        log.group(2).truncate(log_id(1, 0, 8)).await.unwrap();
        log.group(2).save_vote(&Vote::new(4, 2)).await.unwrap();
        let before: Vec<Vec<Entry>> = vec![
            log.group(1).try_get_log_entries(..).await.unwrap(),
            log.group(2).try_get_log_entries(..).await.unwrap(),
        ];
        drop(log);

        let log = open_db(&dir.path().join(DB_FILE));
        assert_eq!(log.groups().unwrap(), vec![1, 2]);
        assert_eq!(log.group(1).try_get_log_entries(..).await.unwrap(), before[0]);
        assert_eq!(log.group(2).try_get_log_entries(..).await.unwrap(), before[1]);
        assert_eq!(state(&mut log.group(1)).await, (Some(2), Some(10)));
        assert_eq!(state(&mut log.group(2)).await, (None, Some(7)));
        assert_eq!(log.group(1).read_vote().await.unwrap(), Some(Vote::new(1, 0)));
        assert_eq!(log.group(2).read_vote().await.unwrap(), Some(Vote::new(4, 2)));
    }

    /// Starts a single-member Raft for `group` of `log` and waits for it to lead.
    async fn start_raft(log: &LogDb<Tc>, group: u64, sm: MemSm, init: bool) -> openraft::Raft<Tc> {
        let config = openraft::Config {
            heartbeat_interval: 50,
            election_timeout_min: 150,
            election_timeout_max: 300,
            ..Default::default()
        };
        let raft =
            openraft::Raft::new(1, Arc::new(config.validate().unwrap()), NoPeers, log.group(group), sm).await.unwrap();
        if init {
            raft.initialize(BTreeMap::from([(1, BasicNode::default())])).await.unwrap();
        }
        raft.wait(Some(Duration::from_secs(10)))
            .state(ServerState::Leader, format!("group {group} leads"))
            .await
            .unwrap();
        raft
    }

    fn put(group: u64, i: u64) -> Put {
        Put { key: format!("g{group}/{i}"), value: i }
    }

    /// The commands in `group`'s log.
    async fn logged_puts(log: &LogDb<Tc>, group: u64) -> Vec<Put> {
        let entries = log.group(group).try_get_log_entries(..).await.unwrap();
        entries
            .into_iter()
            .filter_map(|e| match e.payload {
                EntryPayload::Normal(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_raft_groups_write_through_one_log_and_restart_from_it() {
        const WRITES: u64 = 50;
        let (dir, log) = new_db();
        let (sm1, sm2) = (MemSm::default(), MemSm::default());
        let r1 = start_raft(&log, 1, sm1.clone(), true).await;
        let r2 = start_raft(&log, 2, sm2.clone(), true).await;
        // Both groups write at once, so their appends share the writer's commits.
        let write = |raft: openraft::Raft<Tc>, group: u64| async move {
            for i in 0..WRITES {
                raft.client_write(put(group, i)).await.unwrap();
            }
        };
        let (a, b) = tokio::join!(tokio::spawn(write(r1.clone(), 1)), tokio::spawn(write(r2.clone(), 2)));
        a.unwrap();
        b.unwrap();

        let expect = |group| (0..WRITES).map(|i| put(group, i)).collect::<Vec<_>>();
        for (group, sm) in [(1, &sm1), (2, &sm2)] {
            assert_eq!(logged_puts(&log, group).await, expect(group), "group {group}");
            assert_eq!(sm.state().puts, expect(group), "group {group}");
        }
        let last = state(&mut log.group(1)).await.1;
        r1.shutdown().await.unwrap();
        r2.shutdown().await.unwrap();
        drop((r1, r2, log));

        // A fresh state machine: openraft re-applies the log it finds after the restart.
        let log = open_db(&dir.path().join(DB_FILE));
        assert_eq!(log.groups().unwrap(), vec![1, 2]);
        let sm1 = MemSm::default();
        let r1 = start_raft(&log, 1, sm1.clone(), false).await;
        r1.wait(Some(Duration::from_secs(10)))
            .applied_index_at_least(last, "group 1 re-applied its log")
            .await
            .unwrap();
        assert_eq!(sm1.state().puts, expect(1));
        assert_eq!(logged_puts(&log, 2).await, expect(2));
        r1.shutdown().await.unwrap();
    }
}
