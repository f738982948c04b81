//! The Raft log in redb: entries by index, plus the vote and the last purged log id.
//!
//! Writes go through one writer thread that takes every operation queued since its last commit
//! and commits them in one redb transaction with one fsync (group commit): under load, many
//! client writes share an fsync. `append` returns as soon as its entries are queued (they are
//! readable at once from an in-memory overlay) and tells openraft through its `LogFlushed`
//! callback when they are durable; votes, truncations and purges wait for their commit.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::{Entry, LogId, StorageError, TypeConfig};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const VOTE: &str = "vote";
const PURGED: &str = "last_purged";

/// The Raft log store; cheap to clone (the database and the writer are shared).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    /// Entries queued for the writer but not committed yet, by index, with the sequence number
    /// of the append that queued them (so a later re-append of the index is not dropped).
    pending: Arc<Mutex<BTreeMap<u64, (u64, Entry)>>>,
    seq: Arc<AtomicU64>,
    writer: std::sync::mpsc::Sender<WriteOp>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

/// An operation for the writer thread, applied in queue order.
enum WriteOp {
    Append { seq: u64, entries: Vec<(u64, Vec<u8>)>, done: LogFlushed<TypeConfig> },
    Meta { key: &'static str, bytes: Vec<u8>, done: oneshot::Sender<std::io::Result<()>> },
    Truncate { from: u64, done: oneshot::Sender<std::io::Result<()>> },
    Purge { upto: u64, log_id: Vec<u8>, done: oneshot::Sender<std::io::Result<()>> },
}

/// Most operations committed together.
const MAX_GROUP: usize = 4096;

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, std::io::Error> {
    bincode::serialize(v).map_err(io_err)
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, std::io::Error> {
    bincode::deserialize(b).map_err(io_err)
}

impl LogStore {
    /// Opens the log in `db`, creating its tables, and starts the writer thread.
    pub fn open(db: Arc<Database>) -> Result<Self, redb::Error> {
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
            .name("chainfire-log-writer".into())
            .spawn(move || write_loop(&thread_db, &thread_pending, &ops))
            .map_err(redb::Error::Io)?;
        Ok(Self { db, pending, seq: Arc::new(AtomicU64::new(0)), writer })
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, std::io::Error> {
        let tx = self.db.begin_read().map_err(io_err)?;
        let t = tx.open_table(RAFT_META).map_err(io_err)?;
        match t.get(key).map_err(io_err)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, (u64, Entry)>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues an operation and waits for its commit.
    async fn commit(&self, make: impl FnOnce(oneshot::Sender<std::io::Result<()>>) -> WriteOp) -> std::io::Result<()> {
        let (done, wait) = oneshot::channel();
        self.writer.send(make(done)).map_err(|_| io_err("log writer stopped"))?;
        wait.await.map_err(|_| io_err("log writer stopped"))?
    }
}

/// The writer thread: commits every queued operation in one transaction per round.
fn write_loop(db: &Database, pending: &Mutex<BTreeMap<u64, (u64, Entry)>>, ops: &std::sync::mpsc::Receiver<WriteOp>) {
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
                if let WriteOp::Append { seq, entries, .. } = op {
                    for (index, _) in entries {
                        if p.get(index).is_some_and(|(s, _)| s == seq) {
                            p.remove(index);
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
                WriteOp::Meta { done, .. } | WriteOp::Truncate { done, .. } | WriteOp::Purge { done, .. } => {
                    let _ = done.send(r);
                }
            }
        }
    }
}

fn commit_group(db: &Database, group: &[WriteOp]) -> std::io::Result<()> {
    let tx = db.begin_write().map_err(io_err)?;
    {
        let mut log = tx.open_table(LOG).map_err(io_err)?;
        let mut meta = tx.open_table(RAFT_META).map_err(io_err)?;
        for op in group {
            match op {
                WriteOp::Append { entries, .. } => {
                    for (index, bytes) in entries {
                        log.insert(*index, bytes.as_slice()).map_err(io_err)?;
                    }
                }
                WriteOp::Meta { key, bytes, .. } => {
                    meta.insert(*key, bytes.as_slice()).map_err(io_err)?;
                }
                WriteOp::Truncate { from, .. } => {
                    log.retain_in(*from.., |_, _| false).map_err(io_err)?;
                }
                WriteOp::Purge { upto, log_id, .. } => {
                    meta.insert(PURGED, log_id.as_slice()).map_err(io_err)?;
                    log.retain_in(..=*upto, |_, _| false).map_err(io_err)?;
                }
            }
        }
    }
    tx.commit().map_err(io_err)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let read = || -> Result<Vec<Entry>, std::io::Error> {
            let tx = self.db.begin_read().map_err(io_err)?;
            let t = tx.open_table(LOG).map_err(io_err)?;
            let bounds: (Bound<u64>, Bound<u64>) = (range.start_bound().cloned(), range.end_bound().cloned());
            let mut out: BTreeMap<u64, Entry> = BTreeMap::new();
            for item in t.range(bounds).map_err(io_err)? {
                let (k, v) = item.map_err(io_err)?;
                out.insert(k.value(), decode(v.value())?);
            }
            // Queued entries are newer than what redb holds for the same index.
            for (index, (_, entry)) in self.pending().range(bounds) {
                out.insert(*index, entry.clone());
            }
            Ok(out.into_values().collect())
        };
        read().map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let read = || -> Result<LogState<TypeConfig>, std::io::Error> {
            let last_purged_log_id: Option<LogId> = self.get_meta(PURGED)?;
            let tx = self.db.begin_read().map_err(io_err)?;
            let t = tx.open_table(LOG).map_err(io_err)?;
            let stored = match t.last().map_err(io_err)? {
                Some((_, v)) => Some(decode::<Entry>(v.value())?.log_id),
                None => None,
            };
            let queued = self.pending().last_key_value().map(|(_, (_, e))| e.log_id);
            let last = std::cmp::max(stored, queued);
            Ok(LogState { last_purged_log_id, last_log_id: last.or(last_purged_log_id) })
        };
        read().map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        let bytes = encode(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        self.commit(|done| WriteOp::Meta { key: VOTE, bytes, done })
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        self.get_meta(VOTE).map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let encoded: Result<Vec<(u64, Vec<u8>)>, std::io::Error> =
            entries.iter().map(|e| Ok((e.log_id.index, encode(e)?))).collect();
        let encoded = encoded.map_err(|e| StorageIOError::write_logs(&e))?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        {
            let mut pending = self.pending();
            for e in entries {
                pending.insert(e.log_id.index, (seq, e));
            }
        }
        self.writer
            .send(WriteOp::Append { seq, entries: encoded, done: callback })
            .map_err(|_| StorageIOError::write_logs(&io_err("log writer stopped")).into())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.pending().retain(|index, _| *index < log_id.index);
        self.commit(|done| WriteOp::Truncate { from: log_id.index, done })
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = encode(&log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        self.commit(|done| WriteOp::Purge { upto: log_id.index, log_id: bytes, done })
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
