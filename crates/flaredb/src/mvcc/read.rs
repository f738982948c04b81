//! Snapshot reads: the newest committed version at or below a timestamp, per key.

use std::ops::Bound;

use redb::{ReadableDatabase, ReadableTable};

use super::{
    LOCKS, Lock, MAX_SCAN_BYTES, MAX_SCAN_PAIRS, MvccError, Store, WRITES, Write, WriteKind, check_key, decode,
};
use crate::ts::Ts;

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Table of committed writes.
pub(crate) trait WritesTable: ReadableTable<(&'static [u8], u64), &'static [u8]> {}
impl<T: ReadableTable<(&'static [u8], u64), &'static [u8]>> WritesTable for T {}
/// Table of locks.
pub(crate) trait LocksTable: ReadableTable<&'static [u8], &'static [u8]> {}
impl<T: ReadableTable<&'static [u8], &'static [u8]>> LocksTable for T {}

/// The value of `key` visible at `ts` (ignoring locks).
pub(crate) fn committed_at(writes: &impl WritesTable, key: &[u8], ts: Ts) -> Result<Option<Vec<u8>>, MvccError> {
    for item in writes.range::<(&[u8], u64)>((key, 0u64)..=(key, ts))?.rev() {
        let (_, v) = item?;
        match decode::<Write>(v.value())?.kind {
            WriteKind::Put(value) => return Ok(Some(value)),
            WriteKind::Delete => return Ok(None),
            WriteKind::Rollback => {}
        }
    }
    Ok(None)
}

/// The newest commit (not rollback) of `key` at or after `from`: (commit_ts, write).
pub(crate) fn newest_commit_since(
    writes: &impl WritesTable,
    key: &[u8],
    from: Ts,
) -> Result<Option<(Ts, Write)>, MvccError> {
    for item in writes.range::<(&[u8], u64)>((key, from)..=(key, u64::MAX))?.rev() {
        let (k, v) = item?;
        let w: Write = decode(v.value())?;
        if w.kind != WriteKind::Rollback {
            return Ok(Some((k.value().1, w)));
        }
    }
    Ok(None)
}

/// The record this transaction left on `key`, if any: (ts of the row, write).
pub(crate) fn record_of_txn(
    writes: &impl WritesTable,
    key: &[u8],
    start_ts: Ts,
) -> Result<Option<(Ts, Write)>, MvccError> {
    for item in writes.range::<(&[u8], u64)>((key, start_ts)..=(key, u64::MAX))? {
        let (k, v) = item?;
        let w: Write = decode(v.value())?;
        if w.start_ts == start_ts {
            return Ok(Some((k.value().1, w)));
        }
    }
    Ok(None)
}

fn blocking_lock(locks: &impl LocksTable, key: &[u8], ts: Ts) -> Result<Option<Lock>, MvccError> {
    match locks.get(key)? {
        Some(v) => {
            let lock: Lock = decode(v.value())?;
            Ok((lock.start_ts <= ts).then_some(lock))
        }
        None => Ok(None),
    }
}

fn locked(key: &[u8], lock: Lock) -> MvccError {
    MvccError::KeyIsLocked { key: key.to_vec(), primary: lock.primary, start_ts: lock.start_ts, ttl_ms: lock.ttl_ms }
}

impl Store {
    /// The value of `key` in the snapshot at `ts`.
    pub fn get(&self, key: &[u8], ts: Ts) -> Result<Option<Vec<u8>>, MvccError> {
        check_key(key)?;
        let tx = self.db().begin_read()?;
        let locks = tx.open_table(LOCKS)?;
        if let Some(lock) = blocking_lock(&locks, key, ts)? {
            return Err(locked(key, lock));
        }
        let writes = tx.open_table(WRITES)?;
        committed_at(&writes, key, ts)
    }

    /// Keys in `[start, end)` (`end` `None`: to the end) and their values in the snapshot at
    /// `ts`, in key order (descending when `reverse`), at most `limit` of them (0, or more than
    /// [`MAX_SCAN_PAIRS`]: that many) and about [`MAX_SCAN_BYTES`]; [`Scanned::more`] says
    /// whether the range may hold more past the last pair.
    pub fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        ts: Ts,
        limit: usize,
        reverse: bool,
    ) -> Result<Scanned, MvccError> {
        let limit = if limit == 0 { MAX_SCAN_PAIRS } else { limit.min(MAX_SCAN_PAIRS) };
        let tx = self.db().begin_read()?;
        let locks = tx.open_table(LOCKS)?;
        let writes = tx.open_table(WRITES)?;
        let key_bounds = (Bound::Included(start), end.map_or(Bound::Unbounded, Bound::Excluded));
        // Any lock below ts in the range could hide a commit: report the first one.
        for item in locks.range::<&[u8]>(key_bounds)? {
            let (k, v) = item?;
            let lock: Lock = decode(v.value())?;
            if lock.start_ts <= ts {
                return Err(locked(k.value(), lock));
            }
        }
        let lower = Bound::Included((start, 0u64));
        let upper = match end {
            Some(e) => Bound::Excluded((e, 0u64)),
            None => Bound::Unbounded,
        };
        // Walk versions key by key; the newest version <= ts of each key decides.
        let mut out: Vec<KeyValue> = Vec::new();
        let mut current: Option<Vec<u8>> = None;
        let mut best: Option<WriteKind> = None;
        let mut rows = writes.range::<(&[u8], u64)>((lower, upper))?;
        let mut bytes = 0usize;
        let mut flush = |key: Option<Vec<u8>>, best: Option<WriteKind>, out: &mut Vec<KeyValue>| {
            if let (Some(k), Some(WriteKind::Put(v))) = (key, best) {
                bytes += k.len() + v.len();
                out.push((k, v));
            }
            out.len() >= limit || bytes >= MAX_SCAN_BYTES
        };
        loop {
            let next = if reverse { rows.next_back() } else { rows.next() };
            let Some(item) = next else { break };
            let (k, v) = item?;
            let (key, commit_ts) = k.value();
            if current.as_deref() != Some(key) {
                if flush(current.take(), best.take(), &mut out) {
                    return Ok(Scanned { rows: out, more: true });
                }
                current = Some(key.to_vec());
            }
            if commit_ts > ts {
                continue;
            }
            let w: Write = decode(v.value())?;
            if w.kind == WriteKind::Rollback {
                continue;
            }
            // Forward: later rows of a key are newer; reverse: the first row seen is the newest.
            if !reverse || best.is_none() {
                best = Some(w.kind);
            }
        }
        flush(current, best, &mut out);
        Ok(Scanned { rows: out, more: false })
    }
}

/// What one scan gathered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// The pairs, in the order asked for.
    pub rows: Vec<KeyValue>,
    /// The scan stopped at a bound (its limit, [`MAX_SCAN_PAIRS`] or [`MAX_SCAN_BYTES`]) before
    /// the end of its range: continue after the last pair to read on.
    pub more: bool,
}
