//! Property test: the store against a simple in-memory model of etcd's MVCC semantics, over
//! random sequences of puts, deletes, range deletes, txns and compactions, reading every key
//! range at every revision after each step.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::write::Writer;
use super::{Mvcc, Revisions};
use crate::error::EtcdError;
use crate::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::pb::etcdserverpb::request_op::Request;
use crate::pb::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use crate::pb::mvccpb::KeyValue;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    DeleteRange(u8, u8),
    /// if value(k) == v then put(k2, v2) else delete(k2)
    Txn(u8, u8, u8, u8),
    Compact(u8),
}

fn key(k: u8) -> Vec<u8> {
    vec![b'a' + k]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..5, 0u8..3).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..5).prop_map(Op::Delete),
        1 => (0u8..5, 0u8..6).prop_map(|(a, b)| Op::DeleteRange(a, b)),
        2 => (0u8..5, 0u8..3, 0u8..5, 0u8..3).prop_map(|(a, b, c, d)| Op::Txn(a, b, c, d)),
        1 => (0u8..20).prop_map(Op::Compact),
    ]
}

/// A read row: key, mod revision, create revision, version, value.
type Row = (Vec<u8>, i64, i64, i64, Vec<u8>);

/// Version record of the model: (mod revision, create revision, version, value) or deletion.
type Version = (i64, Option<(i64, i64, Vec<u8>)>);

#[derive(Default)]
struct Model {
    rev: i64,
    compacted: i64,
    history: BTreeMap<Vec<u8>, Vec<Version>>,
}

impl Model {
    fn at(&self, k: &[u8], rev: i64) -> Option<(i64, i64, i64, Vec<u8>)> {
        let versions = self.history.get(k)?;
        let (m, v) = versions.iter().rev().find(|(m, _)| *m <= rev)?;
        v.as_ref().map(|(c, ver, val)| (*m, *c, *ver, val.clone()))
    }

    fn live(&self, k: &[u8]) -> Option<(i64, i64, i64, Vec<u8>)> {
        self.at(k, self.rev)
    }

    fn put(&mut self, k: Vec<u8>, v: Vec<u8>, rev: i64) {
        let (create, version) = match self.live(&k) {
            Some((_, c, ver, _)) => (c, ver + 1),
            None => (rev, 1),
        };
        self.history.entry(k).or_default().push((rev, Some((create, version, v))));
    }

    fn delete(&mut self, k: &[u8], rev: i64) -> bool {
        if self.live(k).is_some() {
            self.history.entry(k.to_vec()).or_default().push((rev, None));
            true
        } else {
            false
        }
    }

    fn apply(&mut self, op: &Op) {
        let next = self.rev + 1;
        let changed = match op {
            Op::Put(k, v) => {
                self.put(key(*k), vec![*v], next);
                true
            }
            Op::Delete(k) => self.delete(&key(*k), next),
            Op::DeleteRange(a, b) => {
                let mut any = false;
                for k in *a..*b {
                    any |= self.delete(&key(k), next);
                }
                any
            }
            Op::Txn(k, v, k2, v2) => {
                let ok = self.live(&key(*k)).is_some_and(|(_, _, _, val)| val == vec![*v]);
                if ok {
                    self.put(key(*k2), vec![*v2], next);
                    true
                } else {
                    self.delete(&key(*k2), next)
                }
            }
            Op::Compact(r) => {
                let r = i64::from(*r);
                if r <= self.rev && r > self.compacted {
                    self.compacted = r;
                }
                false
            }
        };
        if changed {
            self.rev = next;
        }
    }
}

fn run(store: &Mvcc, op: &Op) -> Result<(), EtcdError> {
    let tx = store.db().begin_write()?;
    {
        let mut w = Writer::new(&tx)?;
        let result = match op {
            Op::Put(k, v) => w.put(&PutRequest { key: key(*k), value: vec![*v], ..Default::default() }).map(|_| ()),
            Op::Delete(k) => w.delete_range(&DeleteRangeRequest { key: key(*k), ..Default::default() }).map(|_| ()),
            Op::DeleteRange(a, b) => w
                .delete_range(&DeleteRangeRequest { key: key(*a), range_end: key(*b), ..Default::default() })
                .map(|_| ()),
            Op::Txn(k, v, k2, v2) => w
                .txn(
                    &TxnRequest {
                        compare: vec![Compare {
                            result: CompareResult::Equal as i32,
                            target: CompareTarget::Value as i32,
                            key: key(*k),
                            target_union: Some(TargetUnion::Value(vec![*v])),
                            range_end: vec![],
                        }],
                        success: vec![RequestOp {
                            request: Some(Request::RequestPut(PutRequest {
                                key: key(*k2),
                                value: vec![*v2],
                                ..Default::default()
                            })),
                        }],
                        failure: vec![RequestOp {
                            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                                key: key(*k2),
                                ..Default::default()
                            })),
                        }],
                    },
                    128,
                )
                .map(|_| ()),
            Op::Compact(r) => match w.compact(&CompactionRequest { revision: i64::from(*r), physical: true }) {
                Ok(_) | Err(EtcdError::Compacted | EtcdError::FutureRev) => Ok(()),
                Err(e) => Err(e),
            },
        };
        result?;
    }
    tx.commit()?;
    Ok(())
}

/// What a sort target orders by.
fn sort_key(kv: &KeyValue, target: SortTarget) -> (i64, Vec<u8>) {
    match target {
        SortTarget::Key => (0, kv.key.clone()),
        SortTarget::Version => (kv.version, Vec::new()),
        SortTarget::Create => (kv.create_revision, Vec::new()),
        SortTarget::Mod => (kv.mod_revision, Vec::new()),
        SortTarget::Value => (0, kv.value.clone()),
    }
}

/// Every sort target and order with small limits answers what sorting the whole range and cutting
/// it would: the same count, `more`, and sequence of sort keys (etcd leaves ties unordered).
fn check_limited_sorts(store: &Mvcc, at: i64, all: &[KeyValue]) -> Result<(), TestCaseError> {
    let targets = [SortTarget::Key, SortTarget::Version, SortTarget::Create, SortTarget::Mod, SortTarget::Value];
    for target in targets {
        for order in [SortOrder::None, SortOrder::Ascend, SortOrder::Descend] {
            for limit in 1..4usize {
                let req = RangeRequest {
                    key: key(0),
                    range_end: key(9),
                    revision: at,
                    limit: limit as i64,
                    sort_order: order as i32,
                    sort_target: target as i32,
                    ..Default::default()
                };
                let got = store.range(&req).unwrap();
                let mut expected: Vec<_> = all.iter().map(|kv| sort_key(kv, target)).collect();
                match order {
                    SortOrder::None => expected = all.iter().map(|kv| sort_key(kv, SortTarget::Key)).collect(),
                    SortOrder::Ascend => expected.sort(),
                    SortOrder::Descend => expected.sort_by(|a, b| b.cmp(a)),
                }
                expected.truncate(limit);
                let shown = if order == SortOrder::None { SortTarget::Key } else { target };
                let actual: Vec<_> = got.kvs.iter().map(|kv| sort_key(kv, shown)).collect();
                prop_assert_eq!(actual, expected, "{:?} {:?} limit {} at {}", target, order, limit, at);
                prop_assert_eq!(got.count, all.len() as i64);
                prop_assert_eq!(got.more, all.len() > limit);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(redb::Database::create(dir.path().join("t.redb")).unwrap());
        let store = Mvcc::open(db).unwrap();
        let mut model = Model { rev: 1, ..Default::default() };
        for op in &ops {
            run(&store, op).unwrap();
            model.apply(op);
            let revs = store.revisions().unwrap();
            prop_assert_eq!(revs, Revisions { current: model.rev, compacted: model.compacted }, "after {:?}", op);
            for at in 0..=model.rev + 1 {
                let req = RangeRequest { key: key(0), range_end: key(9), revision: at, ..Default::default() };
                let got = store.range(&req);
                if at > model.rev {
                    prop_assert_eq!(got.unwrap_err(), EtcdError::FutureRev);
                    continue;
                }
                if at != 0 && at < model.compacted {
                    prop_assert_eq!(got.unwrap_err(), EtcdError::Compacted);
                    continue;
                }
                let got = got.unwrap();
                let read_at = if at == 0 { model.rev } else { at };
                let expected: Vec<Row> = (0u8..9)
                    .filter_map(|k| model.at(&key(k), read_at).map(|(m, c, ver, val)| (key(k), m, c, ver, val)))
                    .collect();
                let actual: Vec<Row> = got
                    .kvs
                    .iter()
                    .map(|kv| (kv.key.clone(), kv.mod_revision, kv.create_revision, kv.version, kv.value.clone()))
                    .collect();
                prop_assert_eq!(actual, expected, "range at {} after {:?}", at, ops);
                prop_assert_eq!(got.count, got.kvs.len() as i64);
                // Current and oldest readable revision: enough for sorts, and keeps the test quick.
                if at == 0 || at == model.compacted.max(1) {
                    check_limited_sorts(&store, at, &got.kvs)?;
                }
            }
        }
    }
}
