//! The two-phase commit protocol on one region: prewrite, commit, rollback, and the lock
//! resolution a reader or a later writer runs against a crashed client's transaction; plus the
//! one-phase writes of single keys and garbage collection.
//!
//! Every operation runs on a [`WriteSet`]: the tables of one redb write transaction, so a
//! region replica applies a whole batch of Raft entries in one transaction. [`Store`] wraps each
//! operation in a transaction of its own (for tests and tools).

use std::ops::Bound;

use redb::{ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::read::{committed_at, newest_commit_since, record_of_txn};
use super::{
    LOCKS, LOCKS_BY_TXN, Lock, MAX_VALUE_BYTES, MvccError, Op, Store, WRITES, Write, WriteKind, check_key, decode,
    encode,
};
use crate::ts::{Ts, physical_ms};

/// One key a transaction writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mutation {
    /// The key.
    pub key: Vec<u8>,
    /// What to do to it.
    pub op: Op,
}

/// The fate of a transaction, as its primary key tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnStatus {
    /// Still running: its primary lock lives for `ttl_ms` more milliseconds.
    Locked {
        /// Remaining protection.
        ttl_ms: u64,
    },
    /// Committed at this timestamp: its other locks must be committed too.
    Committed {
        /// The commit timestamp.
        commit_ts: Ts,
    },
    /// Rolled back: its other locks must be rolled back.
    RolledBack,
}

/// A single-key write committed in one step (no locks): the fast paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnePc {
    /// Set the value.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove the key.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Set (or delete, `new: None`) only if the current value is `expected` (`None`: absent).
    Cas {
        /// The key.
        key: Vec<u8>,
        /// The value the key must have now.
        expected: Option<Vec<u8>>,
        /// The value to set; `None` deletes.
        new: Option<Vec<u8>>,
    },
    /// Add `delta` to the decimal integer stored at the key (absent counts as 0).
    Increment {
        /// The key.
        key: Vec<u8>,
        /// What to add (may be negative).
        delta: i64,
    },
}

impl OnePc {
    /// The key written.
    pub fn key(&self) -> &[u8] {
        match self {
            Self::Put { key, .. } | Self::Delete { key } | Self::Cas { key, .. } | Self::Increment { key, .. } => key,
        }
    }
}

/// What a one-phase write did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnePcResult {
    /// Written; for an increment, the new value.
    Done {
        /// The value after the write (increments), or `None`.
        value: Option<Vec<u8>>,
    },
    /// A compare-and-swap found another value; nothing was written.
    CasFailed {
        /// The value found.
        current: Option<Vec<u8>>,
    },
}

type LocksT<'t> = Table<'t, &'static [u8], &'static [u8]>;
type WritesT<'t> = Table<'t, (&'static [u8], u64), &'static [u8]>;
type ByTxnT<'t> = Table<'t, (u64, &'static [u8]), ()>;

/// The MVCC tables opened in one write transaction.
pub struct WriteSet<'t> {
    locks: LocksT<'t>,
    writes: WritesT<'t>,
    by_txn: ByTxnT<'t>,
}

fn check_value(key: &[u8], v: &[u8]) -> Result<(), MvccError> {
    if v.len() > MAX_VALUE_BYTES {
        return Err(MvccError::Invalid(format!(
            "value of {} bytes for {key:?} exceeds the limit of {MAX_VALUE_BYTES}",
            v.len()
        )));
    }
    Ok(())
}

impl<'t> WriteSet<'t> {
    /// Opens the tables in `tx`.
    pub fn open(tx: &'t WriteTransaction) -> Result<Self, MvccError> {
        Ok(Self { locks: tx.open_table(LOCKS)?, writes: tx.open_table(WRITES)?, by_txn: tx.open_table(LOCKS_BY_TXN)? })
    }

    /// Phase one: locks every key of `mutations` for the transaction `start_ts` whose primary is
    /// `primary`. Fails without writing anything if any key is locked by another transaction or
    /// was committed at or after `start_ts`. Repeating a prewrite is harmless.
    pub fn prewrite(
        &mut self,
        mutations: &[Mutation],
        primary: &[u8],
        start_ts: Ts,
        ttl_ms: u64,
    ) -> Result<(), MvccError> {
        check_key(primary)?;
        for m in mutations {
            check_key(&m.key)?;
            if let Op::Put(v) = &m.op {
                check_value(&m.key, v)?;
            }
        }
        let mut todo = Vec::with_capacity(mutations.len());
        for m in mutations {
            if let Some(v) = self.locks.get(m.key.as_slice())? {
                let lock: Lock = decode(v.value())?;
                if lock.start_ts == start_ts {
                    continue; // already prewritten by this transaction
                }
                return Err(MvccError::KeyIsLocked {
                    key: m.key.clone(),
                    primary: lock.primary,
                    start_ts: lock.start_ts,
                    ttl_ms: lock.ttl_ms,
                });
            }
            if let Some((_, w)) = record_of_txn(&self.writes, &m.key, start_ts)? {
                if w.kind == WriteKind::Rollback {
                    return Err(MvccError::TxnAborted { start_ts });
                }
                continue; // committed already: a retried prewrite after commit
            }
            if let Some((commit_ts, _)) = newest_commit_since(&self.writes, &m.key, start_ts)? {
                return Err(MvccError::WriteConflict { key: m.key.clone(), start_ts, conflict_commit_ts: commit_ts });
            }
            todo.push(m);
        }
        for m in todo {
            let lock = Lock { primary: primary.to_vec(), start_ts, ttl_ms, op: m.op.clone() };
            self.locks.insert(m.key.as_slice(), encode(&lock)?.as_slice())?;
            self.by_txn.insert((start_ts, m.key.as_slice()), ())?;
        }
        Ok(())
    }

    /// Phase two: commits the transaction's locks on `keys` at `commit_ts`. Commit the primary
    /// first: once it is committed, the transaction is. Repeating a commit is harmless. Checks
    /// every key before writing any, so a failed commit changes nothing.
    pub fn commit(&mut self, keys: &[Vec<u8>], start_ts: Ts, commit_ts: Ts) -> Result<(), MvccError> {
        if commit_ts <= start_ts {
            return Err(MvccError::Invalid(format!("commit_ts {commit_ts} is not after start_ts {start_ts}")));
        }
        let mut todo = Vec::with_capacity(keys.len());
        for key in keys {
            check_key(key)?;
            let lock: Option<Lock> = match self.locks.get(key.as_slice())? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            };
            match lock {
                Some(lock) if lock.start_ts == start_ts => todo.push((key, lock)),
                _ => match record_of_txn(&self.writes, key, start_ts)? {
                    Some((_, w)) if w.kind == WriteKind::Rollback => return Err(MvccError::TxnAborted { start_ts }),
                    Some(_) => {} // committed before
                    // Neither locked nor recorded: the lock was resolved away (rolled back).
                    None => return Err(MvccError::TxnAborted { start_ts }),
                },
            }
        }
        for (key, lock) in todo {
            let kind = match lock.op {
                Op::Put(v) => WriteKind::Put(v),
                Op::Delete => WriteKind::Delete,
            };
            self.writes
                .insert((key.as_slice(), commit_ts), encode(&Write { start_ts, kind, token: None })?.as_slice())?;
            self.locks.remove(key.as_slice())?;
            self.by_txn.remove((start_ts, key.as_slice()))?;
        }
        Ok(())
    }

    /// Rolls back the transaction's locks on `keys` and leaves rollback markers so a late
    /// prewrite of the same transaction fails. Fails if the transaction already committed.
    pub fn rollback(&mut self, keys: &[Vec<u8>], start_ts: Ts) -> Result<(), MvccError> {
        for key in keys {
            check_key(key)?;
            if let Some((commit_ts, w)) = record_of_txn(&self.writes, key, start_ts)?
                && w.kind != WriteKind::Rollback
            {
                return Err(MvccError::AlreadyCommitted { start_ts, commit_ts });
            }
        }
        for key in keys {
            self.rollback_key(key, start_ts)?;
        }
        Ok(())
    }

    /// Decides the fate of the transaction `start_ts` from its primary key, as of `now`: a
    /// committed or rolled-back transaction says so; a live lock past its TTL is rolled back; a
    /// transaction whose primary was never prewritten is marked rolled back so it cannot commit.
    pub fn check_txn_status(&mut self, primary: &[u8], start_ts: Ts, now: Ts) -> Result<TxnStatus, MvccError> {
        check_key(primary)?;
        let lock: Option<Lock> = match self.locks.get(primary)? {
            Some(v) => Some(decode(v.value())?),
            None => None,
        };
        Ok(match lock {
            Some(lock) if lock.start_ts == start_ts => {
                let expires = physical_ms(start_ts).saturating_add(lock.ttl_ms);
                if physical_ms(now) < expires {
                    TxnStatus::Locked { ttl_ms: expires - physical_ms(now) }
                } else {
                    self.rollback_key(primary, start_ts)?;
                    TxnStatus::RolledBack
                }
            }
            _ => match record_of_txn(&self.writes, primary, start_ts)? {
                Some((commit_ts, w)) if w.kind != WriteKind::Rollback => TxnStatus::Committed { commit_ts },
                Some(_) => TxnStatus::RolledBack,
                None => {
                    self.rollback_key(primary, start_ts)?;
                    TxnStatus::RolledBack
                }
            },
        })
    }

    /// Resolves every lock of the transaction `start_ts` whose key is in `[start, end)`: commits
    /// them at `commit_ts`, or rolls them back when `commit_ts` is `None`. Returns how many.
    pub fn resolve_lock(
        &mut self,
        start_ts: Ts,
        commit_ts: Option<Ts>,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<usize, MvccError> {
        let mut keys = Vec::new();
        for item in self.by_txn.range::<(u64, &[u8])>((start_ts, &[][..])..)? {
            let (k, _) = item?;
            let (ts, key) = k.value();
            if ts != start_ts {
                break;
            }
            if key >= start && end.is_none_or(|e| key < e) {
                keys.push(key.to_vec());
            }
        }
        match commit_ts {
            Some(c) => self.commit(&keys, start_ts, c)?,
            None => self.rollback(&keys, start_ts)?,
        }
        Ok(keys.len())
    }

    /// Writes one key at `commit_ts` in one step. Fails with `KeyIsLocked` when a transaction
    /// holds the key and with `WriteConflict` when something committed at or after `commit_ts`.
    /// The write records `token`. A retry (`retry_since` set) first looks for a version of the
    /// key since then carrying the same token: found, the write was applied before, so it answers
    /// as the first time and writes nothing. First attempts skip the search (it costs a walk over
    /// the key's recent versions).
    pub fn one_pc(
        &mut self,
        op: &OnePc,
        commit_ts: Ts,
        token: Option<u128>,
        retry_since: Option<Ts>,
    ) -> Result<OnePcResult, MvccError> {
        let key = op.key();
        check_key(key)?;
        if let (Some(token), Some(since)) = (token, retry_since) {
            for item in self.writes.range::<(&[u8], u64)>((key, since)..=(key, u64::MAX))? {
                let (_, v) = item?;
                let w: Write = decode(v.value())?;
                if w.token == Some(token) {
                    let value = match (op, w.kind) {
                        (OnePc::Increment { .. }, WriteKind::Put(v)) => Some(v),
                        _ => None,
                    };
                    return Ok(OnePcResult::Done { value });
                }
            }
        }
        if let OnePc::Put { value, .. } | OnePc::Cas { new: Some(value), .. } = op {
            check_value(key, value)?;
        }
        if let Some(v) = self.locks.get(key)? {
            let lock: Lock = decode(v.value())?;
            return Err(MvccError::KeyIsLocked {
                key: key.to_vec(),
                primary: lock.primary,
                start_ts: lock.start_ts,
                ttl_ms: lock.ttl_ms,
            });
        }
        if let Some((conflict, _)) = newest_commit_since(&self.writes, key, commit_ts)? {
            return Err(MvccError::WriteConflict {
                key: key.to_vec(),
                start_ts: commit_ts,
                conflict_commit_ts: conflict,
            });
        }
        let current = || committed_at(&self.writes, key, commit_ts);
        let (kind, value) = match op {
            OnePc::Put { value, .. } => (WriteKind::Put(value.clone()), None),
            OnePc::Delete { .. } => (WriteKind::Delete, None),
            OnePc::Cas { expected, new, .. } => {
                let now = current()?;
                if now != *expected {
                    return Ok(OnePcResult::CasFailed { current: now });
                }
                (new.clone().map_or(WriteKind::Delete, WriteKind::Put), None)
            }
            OnePc::Increment { delta, .. } => {
                let now = match current()? {
                    None => 0,
                    Some(bytes) => std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|s| s.trim().parse::<i64>().ok())
                        .ok_or_else(|| MvccError::Invalid(format!("value of {key:?} is not a decimal integer")))?,
                };
                let next = now
                    .checked_add(*delta)
                    .ok_or_else(|| MvccError::Invalid(format!("incrementing {key:?} by {delta} overflows")))?;
                let bytes = next.to_string().into_bytes();
                (WriteKind::Put(bytes.clone()), Some(bytes))
            }
        };
        // One-phase writes have no separate start: start_ts = commit_ts marks them.
        self.writes.insert((key, commit_ts), encode(&Write { start_ts: commit_ts, kind, token })?.as_slice())?;
        Ok(OnePcResult::Done { value })
    }

    /// Drops versions in `[start, end)` no snapshot at or after `safe_point` can see: per key,
    /// everything older than the newest commit at or below `safe_point` (and that one too when
    /// it is a delete), and rollback markers below it. Returns the number of rows removed.
    pub fn gc(&mut self, safe_point: Ts, start: &[u8], end: Option<&[u8]>) -> Result<usize, MvccError> {
        let mut doomed: Vec<(Vec<u8>, Ts)> = Vec::new();
        let mut key: Option<Vec<u8>> = None;
        let mut below: Vec<(Ts, WriteKind)> = Vec::new();
        let settle = |key: &Option<Vec<u8>>, below: &mut Vec<(Ts, WriteKind)>, doomed: &mut Vec<(Vec<u8>, Ts)>| {
            let Some(k) = key else { return };
            let newest = below.iter().rposition(|(_, kind)| *kind != WriteKind::Rollback);
            for (i, (ts, kind)) in below.iter().enumerate() {
                let keep = Some(i) == newest && *kind != WriteKind::Delete;
                if !keep {
                    doomed.push((k.clone(), *ts));
                }
            }
            below.clear();
        };
        let upper = end.map_or(Bound::Unbounded, |e| Bound::Excluded((e, 0u64)));
        for item in self.writes.range::<(&[u8], u64)>((Bound::Included((start, 0u64)), upper))? {
            let (k, v) = item?;
            let (row_key, ts) = k.value();
            if key.as_deref() != Some(row_key) {
                settle(&key, &mut below, &mut doomed);
                key = Some(row_key.to_vec());
            }
            if ts <= safe_point {
                below.push((ts, decode::<Write>(v.value())?.kind));
            }
        }
        settle(&key, &mut below, &mut doomed);
        for (key, ts) in &doomed {
            self.writes.remove((key.as_slice(), *ts))?;
        }
        Ok(doomed.len())
    }

    fn rollback_key(&mut self, key: &[u8], start_ts: Ts) -> Result<(), MvccError> {
        if let Some((commit_ts, w)) = record_of_txn(&self.writes, key, start_ts)? {
            if w.kind == WriteKind::Rollback {
                return Ok(());
            }
            return Err(MvccError::AlreadyCommitted { start_ts, commit_ts });
        }
        let ours = match self.locks.get(key)? {
            Some(v) => decode::<Lock>(v.value())?.start_ts == start_ts,
            None => false,
        };
        if ours {
            self.locks.remove(key)?;
            self.by_txn.remove((start_ts, key))?;
        }
        let marker = Write { start_ts, kind: WriteKind::Rollback, token: None };
        self.writes.insert((key, start_ts), encode(&marker)?.as_slice())?;
        Ok(())
    }
}

impl Store {
    /// Runs `f` on the tables of a new write transaction and commits it if `f` succeeds.
    pub fn write<T>(&self, f: impl FnOnce(&mut WriteSet<'_>) -> Result<T, MvccError>) -> Result<T, MvccError> {
        let tx = self.db().begin_write()?;
        let out = {
            let mut set = WriteSet::open(&tx)?;
            f(&mut set)?
        };
        tx.commit()?;
        Ok(out)
    }

    /// [`WriteSet::prewrite`] in a transaction of its own.
    pub fn prewrite(&self, mutations: &[Mutation], primary: &[u8], start_ts: Ts, ttl_ms: u64) -> Result<(), MvccError> {
        self.write(|w| w.prewrite(mutations, primary, start_ts, ttl_ms))
    }

    /// [`WriteSet::commit`] in a transaction of its own.
    pub fn commit(&self, keys: &[Vec<u8>], start_ts: Ts, commit_ts: Ts) -> Result<(), MvccError> {
        self.write(|w| w.commit(keys, start_ts, commit_ts))
    }

    /// [`WriteSet::rollback`] in a transaction of its own.
    pub fn rollback(&self, keys: &[Vec<u8>], start_ts: Ts) -> Result<(), MvccError> {
        self.write(|w| w.rollback(keys, start_ts))
    }

    /// [`WriteSet::check_txn_status`] in a transaction of its own.
    pub fn check_txn_status(&self, primary: &[u8], start_ts: Ts, now: Ts) -> Result<TxnStatus, MvccError> {
        self.write(|w| w.check_txn_status(primary, start_ts, now))
    }

    /// [`WriteSet::resolve_lock`] over the whole key space, in a transaction of its own.
    pub fn resolve_lock(&self, start_ts: Ts, commit_ts: Option<Ts>) -> Result<usize, MvccError> {
        self.write(|w| w.resolve_lock(start_ts, commit_ts, &[], None))
    }

    /// [`WriteSet::one_pc`] in a transaction of its own.
    pub fn one_pc(
        &self,
        op: &OnePc,
        commit_ts: Ts,
        token: Option<u128>,
        retry_since: Option<Ts>,
    ) -> Result<OnePcResult, MvccError> {
        self.write(|w| w.one_pc(op, commit_ts, token, retry_since))
    }

    /// [`WriteSet::gc`] over the whole key space, in a transaction of its own.
    pub fn gc(&self, safe_point: Ts) -> Result<usize, MvccError> {
        self.write(|w| w.gc(safe_point, &[], None))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mvcc::{MAX_SCAN_BYTES, MAX_SCAN_PAIRS};
    use crate::ts::compose;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(redb::Database::create(dir.path().join("t.redb")).unwrap());
        (dir, Store::open(db).unwrap())
    }

    fn put(k: &[u8], v: &[u8]) -> Mutation {
        Mutation { key: k.to_vec(), op: Op::Put(v.to_vec()) }
    }

    #[test]
    fn bad_input_is_refused_without_writing() {
        let (_d, s) = store();
        let err = s.prewrite(&[put(b"", b"v")], b"p", 10, 1000).unwrap_err();
        assert!(matches!(err, MvccError::Invalid(ref m) if m.contains("empty key")), "{err}");
        let big = vec![0u8; MAX_VALUE_BYTES + 1];
        let err = s.prewrite(&[put(b"a", b"v"), put(b"b", &big)], b"a", 10, 1000).unwrap_err();
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
        assert_eq!(s.get(b"a", 20), Ok(None), "nothing of a refused prewrite was written");
        s.prewrite(&[put(b"a", b"v")], b"a", 10, 1000).unwrap();
        let err = s.commit(&[b"a".to_vec()], 10, 10).unwrap_err();
        assert!(matches!(err, MvccError::Invalid(_)), "{err}");
        let err = s.commit(&[b"nope".to_vec()], 99, 100).unwrap_err();
        assert_eq!(err, MvccError::TxnAborted { start_ts: 99 }, "an unknown transaction cannot commit");
    }

    #[test]
    fn a_scan_answers_at_most_a_bounded_page_and_says_there_is_more() {
        let (_d, s) = store();
        let n = MAX_SCAN_PAIRS + 500;
        let rows: Vec<Mutation> = (0..n).map(|i| put(format!("k{i:05}").as_bytes(), b"v")).collect();
        s.prewrite(&rows, b"k00000", 10, 1000).unwrap();
        let keys: Vec<Vec<u8>> = rows.iter().map(|m| m.key.clone()).collect();
        s.commit(&keys, 10, 11).unwrap();
        // Limit 0 ("all") and a limit past the bound both stop at the bound.
        for limit in [0, n] {
            let first = s.scan(b"k", None, 20, limit, false).unwrap();
            assert_eq!((first.rows.len(), first.more), (MAX_SCAN_PAIRS, true));
            let mut next = first.rows.last().unwrap().0.clone();
            next.push(0);
            let rest = s.scan(&next, None, 20, limit, false).unwrap();
            assert_eq!((rest.rows.len(), rest.more), (500, false));
        }
        // Big values stop it by size first.
        let big = vec![7u8; MAX_VALUE_BYTES];
        let fat: Vec<Mutation> = (0..4).map(|i| put(format!("z{i}").as_bytes(), &big)).collect();
        s.prewrite(&fat, b"z0", 30, 1000).unwrap();
        s.commit(&fat.iter().map(|m| m.key.clone()).collect::<Vec<_>>(), 30, 31).unwrap();
        let page = s.scan(b"z", None, 40, 0, false).unwrap();
        assert_eq!((page.rows.len(), page.more), (MAX_SCAN_BYTES / MAX_VALUE_BYTES, true));
    }

    #[test]
    fn a_live_lock_is_reported_until_its_ttl_passes() {
        let (_d, s) = store();
        let start = compose(1_000_000, 0);
        s.prewrite(&[put(b"p", b"1"), put(b"s", b"2")], b"p", start, 3_000).unwrap();
        let status = s.check_txn_status(b"p", start, compose(1_001_000, 0)).unwrap();
        assert_eq!(status, TxnStatus::Locked { ttl_ms: 2_000 });
        assert!(matches!(s.get(b"s", start + 1), Err(MvccError::KeyIsLocked { .. })));
        // Committing the primary decides the transaction; a resolver then commits the rest.
        s.commit(&[b"p".to_vec()], start, start + 5).unwrap();
        assert_eq!(s.check_txn_status(b"p", start, start + 6).unwrap(), TxnStatus::Committed { commit_ts: start + 5 });
        assert_eq!(s.resolve_lock(start, Some(start + 5)).unwrap(), 1);
        assert_eq!(s.get(b"s", start + 6).unwrap(), Some(b"2".to_vec()));
        assert_eq!(s.get(b"s", start + 4).unwrap(), None, "the old snapshot does not see it");
        let err = s.rollback(&[b"p".to_vec()], start).unwrap_err();
        assert!(matches!(err, MvccError::AlreadyCommitted { .. }), "{err}");
    }

    #[test]
    fn one_phase_writes_cas_increment_and_token_retries() {
        let (_d, s) = store();
        let t = compose(1_000_000, 0);
        s.one_pc(&OnePc::Put { key: b"k".to_vec(), value: b"1".to_vec() }, t, None, None).unwrap();
        assert_eq!(s.get(b"k", t).unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.get(b"k", t - 1).unwrap(), None, "invisible below its commit_ts");
        let cas = OnePc::Cas { key: b"k".to_vec(), expected: Some(b"0".to_vec()), new: Some(b"2".to_vec()) };
        assert_eq!(s.one_pc(&cas, t + 1, None, None).unwrap(), OnePcResult::CasFailed { current: Some(b"1".to_vec()) });
        let inc = OnePc::Increment { key: b"k".to_vec(), delta: 41 };
        assert_eq!(s.one_pc(&inc, t + 2, Some(7), None).unwrap(), OnePcResult::Done { value: Some(b"42".to_vec()) });
        // The same token again (a retry after a lost answer): answered, not applied twice.
        assert_eq!(s.one_pc(&inc, t + 3, Some(7), Some(t)).unwrap(), OnePcResult::Done { value: Some(b"42".to_vec()) });
        assert_eq!(s.get(b"k", t + 10).unwrap(), Some(b"42".to_vec()));
        // A commit_ts at or below the newest commit is a conflict; a locked key is reported.
        let err = s.one_pc(&inc, t + 2, None, None).unwrap_err();
        assert!(matches!(err, MvccError::WriteConflict { .. }), "{err}");
        s.prewrite(&[put(b"k", b"x")], b"k", t + 20, 1000).unwrap();
        let err = s.one_pc(&inc, t + 30, None, None).unwrap_err();
        assert!(matches!(err, MvccError::KeyIsLocked { .. }), "{err}");
        s.rollback(&[b"k".to_vec()], t + 20).unwrap();
        s.one_pc(&OnePc::Put { key: b"n".to_vec(), value: b"abc".to_vec() }, t + 40, None, None).unwrap();
        let err = s.one_pc(&OnePc::Increment { key: b"n".to_vec(), delta: 1 }, t + 41, None, None).unwrap_err();
        assert!(matches!(err, MvccError::Invalid(ref m) if m.contains("decimal")), "{err}");
    }
}
