//! Property test: random interleavings of transactions (prewrite, commit, rollback, crash and
//! resolve) and snapshot reads against a model of snapshot isolation with first-committer-wins.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::{Mutation, MvccError, Op, Store, TxnStatus};
use crate::ts::Ts;

#[derive(Debug, Clone)]
enum Step {
    Begin,
    /// (txn slot, key, value or delete)
    Write(usize, u8, Option<u8>),
    Commit(usize),
    Rollback(usize),
    /// A reader meets the txn's locks after its client died: resolve through the primary.
    Resolve(usize),
    Read(u8),
    Scan,
    Gc,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => Just(Step::Begin),
        5 => (0usize..4, 0u8..4, proptest::option::of(0u8..4)).prop_map(|(t, k, v)| Step::Write(t, k, v)),
        3 => (0usize..4).prop_map(Step::Commit),
        1 => (0usize..4).prop_map(Step::Rollback),
        1 => (0usize..4).prop_map(Step::Resolve),
        3 => (0u8..4).prop_map(Step::Read),
        1 => Just(Step::Scan),
        1 => Just(Step::Gc),
    ]
}

fn key(k: u8) -> Vec<u8> {
    vec![b'k', k]
}

struct Txn {
    start: Ts,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    prewritten: bool,
}

/// (commit_ts, value or deleted)
type Version = (Ts, Option<Vec<u8>>);

#[derive(Default)]
struct Model {
    /// key → [(commit_ts, value or deleted)]
    committed: BTreeMap<Vec<u8>, Vec<Version>>,
    /// key → start_ts of the txn holding its lock
    locks: BTreeMap<Vec<u8>, Ts>,
}

impl Model {
    fn read(&self, k: &[u8], ts: Ts) -> Option<Vec<u8>> {
        self.committed.get(k)?.iter().rev().find(|(c, _)| *c <= ts).and_then(|(_, v)| v.clone())
    }

    fn newest_commit(&self, k: &[u8]) -> Option<Ts> {
        self.committed.get(k).and_then(|v| v.last()).map(|(c, _)| *c)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn snapshot_isolation_holds(steps in proptest::collection::vec(step(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(redb::Database::create(dir.path().join("t.redb")).unwrap());
        let store = Store::open(db).unwrap();
        let mut clock: Ts = 1000;
        let mut tick = || { clock += 1; clock };
        let mut model = Model::default();
        let mut txns: Vec<Option<Txn>> = (0..4).map(|_| None).collect();
        let mut gc_point: Ts = 0;

        for s in steps {
            match s {
                Step::Begin => {
                    if let Some(slot) = txns.iter().position(Option::is_none) {
                        txns[slot] = Some(Txn { start: tick(), writes: BTreeMap::new(), prewritten: false });
                    }
                }
                Step::Write(t, k, v) => {
                    if let Some(txn) = txns[t].as_mut().filter(|x| !x.prewritten) {
                        txn.writes.insert(key(k), v.map(|v| vec![v]));
                    }
                }
                Step::Commit(t) => {
                    let Some(txn) = txns[t].take() else { continue };
                    // A "crashed" client never commits; only a resolver settles its locks.
                    if txn.prewritten { txns[t] = Some(txn); continue; }
                    if txn.writes.is_empty() { continue; }
                    let primary = txn.writes.keys().next().unwrap().clone();
                    let muts: Vec<Mutation> = txn.writes.iter().map(|(k, v)| Mutation {
                        key: k.clone(),
                        op: v.clone().map_or(Op::Delete, Op::Put),
                    }).collect();
                    // Expected outcome per the model: the first key (in mutation order) that is
                    // locked by another transaction, or else committed since start, fails it.
                    let first_problem = txn.writes.keys().find_map(|k| {
                        if model.locks.contains_key(k) {
                            Some("locked")
                        } else if model.newest_commit(k).is_some_and(|c| c >= txn.start) {
                            Some("conflict")
                        } else {
                            None
                        }
                    });
                    let r = store.prewrite(&muts, &primary, txn.start, 3_600_000);
                    match first_problem {
                        Some("locked") => {
                            prop_assert!(matches!(r, Err(MvccError::KeyIsLocked { .. })), "expected lock error, got {:?}", r);
                            continue;
                        }
                        Some(_) => {
                            prop_assert!(matches!(r, Err(MvccError::WriteConflict { .. })), "expected conflict, got {:?}", r);
                            continue;
                        }
                        None => {}
                    }
                    prop_assert!(r.is_ok(), "prewrite failed: {:?}", r);
                    for k in txn.writes.keys() { model.locks.insert(k.clone(), txn.start); }
                    // Half the time the client "crashes" after prewrite and leaves locks behind.
                    if txn.start % 2 == 0 {
                        txns[t] = Some(Txn { prewritten: true, ..txn });
                        continue;
                    }
                    let commit = tick();
                    let keys: Vec<Vec<u8>> = std::iter::once(primary.clone())
                        .chain(txn.writes.keys().filter(|k| **k != primary).cloned()).collect();
                    prop_assert!(store.commit(&keys, txn.start, commit).is_ok());
                    for (k, v) in &txn.writes {
                        model.locks.remove(k);
                        model.committed.entry(k.clone()).or_default().push((commit, v.clone()));
                    }
                }
                Step::Rollback(t) => {
                    let Some(txn) = txns[t].take() else { continue };
                    let keys: Vec<Vec<u8>> = txn.writes.keys().cloned().collect();
                    prop_assert!(store.rollback(&keys, txn.start).is_ok());
                    for k in &keys { if model.locks.get(k) == Some(&txn.start) { model.locks.remove(k); } }
                    // A prewrite after the rollback must fail.
                    if let Some(k) = keys.first() {
                        let late = store.prewrite(&[Mutation { key: k.clone(), op: Op::Delete }], k, txn.start, 1000);
                        prop_assert!(late.is_err(), "prewrite after rollback succeeded");
                    }
                }
                Step::Resolve(t) => {
                    let Some(txn) = txns[t].take() else { continue };
                    if !txn.prewritten { txns[t] = Some(txn); continue; }
                    let primary = txn.writes.keys().next().unwrap().clone();
                    // Far in the future: the TTL has passed, so the primary is rolled back.
                    let now = crate::ts::compose(crate::ts::physical_ms(txn.start) + 10_000_000, 0);
                    let status = store.check_txn_status(&primary, txn.start, now).unwrap();
                    prop_assert_eq!(status, TxnStatus::RolledBack);
                    let n = store.resolve_lock(txn.start, None).unwrap();
                    prop_assert_eq!(n, txn.writes.len() - 1, "the primary was already rolled back");
                    for k in txn.writes.keys() { model.locks.remove(k); }
                    let commit_late = store.commit(&[primary], txn.start, tick());
                    prop_assert_eq!(commit_late, Err(MvccError::TxnAborted { start_ts: txn.start }));
                }
                Step::Read(k) => {
                    let ts = tick();
                    let r = store.get(&key(k), ts);
                    if model.locks.contains_key(&key(k)) {
                        prop_assert!(matches!(r, Err(MvccError::KeyIsLocked { .. })), "{:?}", r);
                    } else {
                        prop_assert_eq!(r.unwrap(), model.read(&key(k), ts));
                    }
                    // Reads in the past (above the GC safe point) see the old snapshot.
                    if gc_point > 0 && !model.locks.contains_key(&key(k)) {
                        prop_assert_eq!(store.get(&key(k), gc_point).unwrap(), model.read(&key(k), gc_point));
                    }
                }
                Step::Scan => {
                    let ts = tick();
                    let r = store.scan(b"k", None, ts, 0, false).map(|s| s.rows);
                    if !model.locks.is_empty() {
                        prop_assert!(matches!(r, Err(MvccError::KeyIsLocked { .. })), "{:?}", r);
                        continue;
                    }
                    let expected: Vec<(Vec<u8>, Vec<u8>)> = model.committed.keys()
                        .filter_map(|k| model.read(k, ts).map(|v| (k.clone(), v))).collect();
                    prop_assert_eq!(r.unwrap(), expected.clone());
                    let mut reversed = expected.clone();
                    reversed.reverse();
                    reversed.truncate(2);
                    prop_assert_eq!(store.scan(b"k", None, ts, 2, true).unwrap().rows, reversed);
                }
                Step::Gc => {
                    // Only below every running transaction's start, as a real safe point is.
                    let oldest = txns.iter().flatten().map(|t| t.start).min().unwrap_or(Ts::MAX);
                    let point = std::cmp::min(tick(), oldest.saturating_sub(1));
                    if point > gc_point {
                        store.gc(point).unwrap();
                        gc_point = point;
                    }
                }
            }
        }
    }
}
