//! The multi-version store of one region, Percolator style.
//!
//! Two tables in redb:
//! - `locks`: key → [`Lock`]: a transaction's pending write (its value included) between
//!   prewrite and commit, pointing at the transaction's primary key;
//! - `writes`: (key, commit_ts) → [`Write`]: committed puts and deletes, and rollback markers
//!   (kept at the rolled-back transaction's start_ts so a late prewrite cannot resurrect it).
//!
//! A read at `ts` sees, per key, the newest committed put or delete with `commit_ts <= ts`; a
//! lock older than `ts` means a transaction may be committing below `ts`, so the read stops with
//! [`MvccError::KeyIsLocked`] and the client resolves the lock through its primary
//! ([`Store::check_txn_status`], [`Store::resolve_lock`]). That gives snapshot isolation;
//! prewrite's conflict check (any commit at or after `start_ts`) makes the first committer win.
//!
//! Every operation is one redb transaction: validated first, then written, so a failed call
//! changes nothing. Region replication (openraft) will apply the same operations on every replica.

mod read;
mod txn;

#[cfg(test)]
mod model_tests;

use std::sync::Arc;

use redb::{Database, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::ts::Ts;

pub use read::{KeyValue, Scanned};
pub use txn::{Mutation, OnePc, OnePcResult, TxnStatus, WriteSet};

/// key → Lock.
pub const LOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("locks");
/// (key, commit_ts or rolled-back start_ts) → Write.
pub const WRITES: TableDefinition<(&[u8], u64), &[u8]> = TableDefinition::new("writes");
/// (start_ts, key) → (): the locks of a transaction, for resolving them all.
pub const LOCKS_BY_TXN: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("locks_by_txn");

/// Longest key accepted.
pub const MAX_KEY_BYTES: usize = 8 * 1024;
/// Largest value accepted.
pub const MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;
/// Most pairs one scan returns, whatever its limit (a client pages past it).
pub const MAX_SCAN_PAIRS: usize = 1000;
/// A scan stops once it has gathered this many bytes of keys and values (a client pages on).
pub const MAX_SCAN_BYTES: usize = 8 * 1024 * 1024;

/// What a transaction intends to do to a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Set the value.
    Put(Vec<u8>),
    /// Remove the key.
    Delete,
}

/// A pending write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// The transaction's primary key: its fate decides this lock's.
    pub primary: Vec<u8>,
    /// The transaction's start timestamp.
    pub start_ts: Ts,
    /// How long (ms after start_ts's physical time) the lock is protected from resolution.
    pub ttl_ms: u64,
    /// The write.
    pub op: Op,
}

/// What a `writes` row records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteKind {
    /// A committed value.
    Put(Vec<u8>),
    /// A committed deletion.
    Delete,
    /// The transaction with this start_ts was rolled back.
    Rollback,
}

/// A committed (or rolled-back) write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    /// Start timestamp of the transaction that wrote it.
    pub start_ts: Ts,
    /// What it wrote.
    pub kind: WriteKind,
    /// The client's token of a one-phase write, so a retry after an ambiguous failure (a lost
    /// answer, a leader change) finds it applied instead of applying it twice.
    pub token: Option<u128>,
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MvccError {
    /// Another transaction holds a lock on `key`; resolve it through its primary, then retry.
    #[error("key {key:?} is locked by transaction {start_ts} (primary {primary:?})")]
    KeyIsLocked {
        /// The locked key.
        key: Vec<u8>,
        /// Primary key of the lock's transaction.
        primary: Vec<u8>,
        /// Start timestamp of the lock's transaction.
        start_ts: Ts,
        /// Lock time-to-live in milliseconds.
        ttl_ms: u64,
    },
    /// A write committed at or after this transaction's start: retry the transaction.
    #[error(
        "write conflict on {key:?}: committed at {conflict_commit_ts}, after this transaction started at {start_ts}"
    )]
    WriteConflict {
        /// The key.
        key: Vec<u8>,
        /// This transaction's start.
        start_ts: Ts,
        /// The conflicting commit.
        conflict_commit_ts: Ts,
    },
    /// The transaction was rolled back (by itself or by a resolver); it cannot commit.
    #[error("transaction {start_ts} was rolled back")]
    TxnAborted {
        /// Its start timestamp.
        start_ts: Ts,
    },
    /// The transaction already committed; it cannot roll back.
    #[error("transaction {start_ts} already committed at {commit_ts}")]
    AlreadyCommitted {
        /// Its start timestamp.
        start_ts: Ts,
        /// Its commit timestamp.
        commit_ts: Ts,
    },
    /// Malformed request: empty or oversized key or value, commit_ts not after start_ts…
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The storage failed.
    #[error("storage error: {0}")]
    Storage(String),
}

impl MvccError {
    /// Whether retrying the whole transaction (with a new start_ts) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::WriteConflict { .. } | Self::TxnAborted { .. } | Self::KeyIsLocked { .. })
    }
}

macro_rules! storage_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for MvccError {
            fn from(e: $t) -> Self {
                MvccError::Storage(e.to_string())
            }
        }
    )*};
}
storage_errors!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError,
    bincode::Error
);

/// The multi-version store of one region.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store in `db`, creating its tables.
    pub fn open(db: Arc<Database>) -> Result<Self, MvccError> {
        let tx = db.begin_write()?;
        {
            tx.open_table(LOCKS)?;
            tx.open_table(WRITES)?;
            tx.open_table(LOCKS_BY_TXN)?;
        }
        tx.commit()?;
        Ok(Self { db })
    }

    /// The database underneath.
    pub fn db(&self) -> &Database {
        &self.db
    }
}

pub(crate) fn check_key(key: &[u8]) -> Result<(), MvccError> {
    if key.is_empty() {
        return Err(MvccError::Invalid("empty key".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(MvccError::Invalid(format!("key of {} bytes exceeds the limit of {MAX_KEY_BYTES}", key.len())));
    }
    Ok(())
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, MvccError> {
    bincode::deserialize(bytes).map_err(|e| MvccError::Storage(format!("corrupt record: {e}")))
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, MvccError> {
    Ok(bincode::serialize(value)?)
}
