//! The two-phase commit protocol on one region: prewrite, commit, rollback, and the lock
//! resolution a reader or a later writer runs against a crashed client's transaction.

use redb::ReadableTable;

use super::read::{newest_commit_since, record_of_txn};
use super::{
    LOCKS, LOCKS_BY_TXN, Lock, MAX_VALUE_BYTES, MvccError, Op, Store, WRITES, Write, WriteKind, check_key, decode,
    encode,
};
use crate::ts::{Ts, physical_ms};

/// One key a transaction writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// The key.
    pub key: Vec<u8>,
    /// What to do to it.
    pub op: Op,
}

/// The fate of a transaction, as its primary key tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl Store {
    /// Phase one: locks every key of `mutations` for the transaction `start_ts` whose primary is
    /// `primary`. Fails without writing anything if any key is locked by another transaction or
    /// was committed at or after `start_ts`. Repeating a prewrite is harmless.
    pub fn prewrite(&self, mutations: &[Mutation], primary: &[u8], start_ts: Ts, ttl_ms: u64) -> Result<(), MvccError> {
        check_key(primary)?;
        for m in mutations {
            check_key(&m.key)?;
            if let Op::Put(v) = &m.op
                && v.len() > MAX_VALUE_BYTES
            {
                return Err(MvccError::Invalid(format!(
                    "value of {} bytes for {:?} exceeds the limit of {MAX_VALUE_BYTES}",
                    v.len(),
                    m.key
                )));
            }
        }
        let tx = self.db().begin_write()?;
        {
            let mut locks = tx.open_table(LOCKS)?;
            let mut by_txn = tx.open_table(LOCKS_BY_TXN)?;
            let writes = tx.open_table(WRITES)?;
            let mut todo = Vec::with_capacity(mutations.len());
            for m in mutations {
                if let Some(v) = locks.get(m.key.as_slice())? {
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
                if let Some((_, w)) = record_of_txn(&writes, &m.key, start_ts)? {
                    if w.kind == WriteKind::Rollback {
                        return Err(MvccError::TxnAborted { start_ts });
                    }
                    continue; // committed already: a retried prewrite after commit
                }
                if let Some((commit_ts, _)) = newest_commit_since(&writes, &m.key, start_ts)? {
                    return Err(MvccError::WriteConflict {
                        key: m.key.clone(),
                        start_ts,
                        conflict_commit_ts: commit_ts,
                    });
                }
                todo.push(m);
            }
            for m in todo {
                let lock = Lock { primary: primary.to_vec(), start_ts, ttl_ms, op: m.op.clone() };
                locks.insert(m.key.as_slice(), encode(&lock)?.as_slice())?;
                by_txn.insert((start_ts, m.key.as_slice()), ())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Phase two: commits the transaction's locks on `keys` at `commit_ts`. Commit the primary
    /// first: once it is committed, the transaction is. Repeating a commit is harmless.
    pub fn commit(&self, keys: &[Vec<u8>], start_ts: Ts, commit_ts: Ts) -> Result<(), MvccError> {
        if commit_ts <= start_ts {
            return Err(MvccError::Invalid(format!("commit_ts {commit_ts} is not after start_ts {start_ts}")));
        }
        let tx = self.db().begin_write()?;
        {
            let mut locks = tx.open_table(LOCKS)?;
            let mut by_txn = tx.open_table(LOCKS_BY_TXN)?;
            let mut writes = tx.open_table(WRITES)?;
            for key in keys {
                check_key(key)?;
                let lock: Option<Lock> = match locks.get(key.as_slice())? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
                match lock {
                    Some(lock) if lock.start_ts == start_ts => {
                        let kind = match lock.op {
                            Op::Put(v) => WriteKind::Put(v),
                            Op::Delete => WriteKind::Delete,
                        };
                        writes.insert((key.as_slice(), commit_ts), encode(&Write { start_ts, kind })?.as_slice())?;
                        locks.remove(key.as_slice())?;
                        by_txn.remove((start_ts, key.as_slice()))?;
                    }
                    _ => match record_of_txn(&writes, key, start_ts)? {
                        Some((_, w)) if w.kind == WriteKind::Rollback => {
                            return Err(MvccError::TxnAborted { start_ts });
                        }
                        Some(_) => {} // committed before
                        // Neither locked nor recorded: the lock was resolved away (rolled back).
                        None => return Err(MvccError::TxnAborted { start_ts }),
                    },
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Rolls back the transaction's locks on `keys` and leaves rollback markers so a late
    /// prewrite of the same transaction fails. Fails if the transaction already committed.
    pub fn rollback(&self, keys: &[Vec<u8>], start_ts: Ts) -> Result<(), MvccError> {
        let tx = self.db().begin_write()?;
        {
            let mut locks = tx.open_table(LOCKS)?;
            let mut by_txn = tx.open_table(LOCKS_BY_TXN)?;
            let mut writes = tx.open_table(WRITES)?;
            for key in keys {
                check_key(key)?;
                rollback_key(&mut locks, &mut by_txn, &mut writes, key, start_ts)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Decides the fate of the transaction `start_ts` from its primary key, as of `now`: a
    /// committed or rolled-back transaction says so; a live lock past its TTL is rolled back; a
    /// transaction whose primary was never prewritten is marked rolled back so it cannot commit.
    pub fn check_txn_status(&self, primary: &[u8], start_ts: Ts, now: Ts) -> Result<TxnStatus, MvccError> {
        check_key(primary)?;
        let tx = self.db().begin_write()?;
        let status = {
            let mut locks = tx.open_table(LOCKS)?;
            let mut by_txn = tx.open_table(LOCKS_BY_TXN)?;
            let mut writes = tx.open_table(WRITES)?;
            let lock: Option<Lock> = match locks.get(primary)? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            };
            match lock {
                Some(lock) if lock.start_ts == start_ts => {
                    let expires = physical_ms(start_ts).saturating_add(lock.ttl_ms);
                    if physical_ms(now) < expires {
                        TxnStatus::Locked { ttl_ms: expires - physical_ms(now) }
                    } else {
                        rollback_key(&mut locks, &mut by_txn, &mut writes, primary, start_ts)?;
                        TxnStatus::RolledBack
                    }
                }
                _ => match record_of_txn(&writes, primary, start_ts)? {
                    Some((commit_ts, w)) if w.kind != WriteKind::Rollback => TxnStatus::Committed { commit_ts },
                    Some(_) => TxnStatus::RolledBack,
                    None => {
                        rollback_key(&mut locks, &mut by_txn, &mut writes, primary, start_ts)?;
                        TxnStatus::RolledBack
                    }
                },
            }
        };
        tx.commit()?;
        Ok(status)
    }

    /// Resolves every lock of the transaction `start_ts` in this region: commits them at
    /// `commit_ts`, or rolls them back when `commit_ts` is `None`. Returns how many it resolved.
    pub fn resolve_lock(&self, start_ts: Ts, commit_ts: Option<Ts>) -> Result<usize, MvccError> {
        let keys: Vec<Vec<u8>> = {
            let tx = redb::ReadableDatabase::begin_read(self.db())?;
            let by_txn = tx.open_table(LOCKS_BY_TXN)?;
            let mut keys = Vec::new();
            for item in by_txn.range::<(u64, &[u8])>((start_ts, &[][..])..)? {
                let (k, _) = item?;
                let (ts, key) = k.value();
                if ts != start_ts {
                    break;
                }
                keys.push(key.to_vec());
            }
            keys
        };
        match commit_ts {
            Some(c) => self.commit(&keys, start_ts, c)?,
            None => self.rollback(&keys, start_ts)?,
        }
        Ok(keys.len())
    }

    /// Drops versions no snapshot at or after `safe_point` can see: per key, everything older
    /// than the newest commit at or below `safe_point` (and that one too when it is a delete),
    /// and rollback markers below it. Returns the number of rows removed.
    pub fn gc(&self, safe_point: Ts) -> Result<usize, MvccError> {
        let tx = self.db().begin_write()?;
        let mut doomed: Vec<(Vec<u8>, Ts)> = Vec::new();
        {
            let writes = tx.open_table(WRITES)?;
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
            for item in writes.iter()? {
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
        }
        {
            let mut writes = tx.open_table(WRITES)?;
            for (key, ts) in &doomed {
                writes.remove((key.as_slice(), *ts))?;
            }
        }
        tx.commit()?;
        Ok(doomed.len())
    }
}

fn rollback_key(
    locks: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    by_txn: &mut redb::Table<'_, (u64, &'static [u8]), ()>,
    writes: &mut redb::Table<'_, (&'static [u8], u64), &'static [u8]>,
    key: &[u8],
    start_ts: Ts,
) -> Result<(), MvccError> {
    if let Some((commit_ts, w)) = record_of_txn(writes, key, start_ts)? {
        if w.kind == WriteKind::Rollback {
            return Ok(());
        }
        return Err(MvccError::AlreadyCommitted { start_ts, commit_ts });
    }
    let ours = match locks.get(key)? {
        Some(v) => decode::<Lock>(v.value())?.start_ts == start_ts,
        None => false,
    };
    if ours {
        locks.remove(key)?;
        by_txn.remove((start_ts, key))?;
    }
    let marker = Write { start_ts, kind: WriteKind::Rollback };
    writes.insert((key, start_ts), encode(&marker)?.as_slice())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
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
}
