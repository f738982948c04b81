//! The KV API through the etcd-client crate against a one-member cluster.

use crate::common;

use common::assert_status;
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, KeyValue, LeaseTimeToLiveOptions, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse,
};
use tonic::Code;

const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

/// The current revision, as a linearizable read reports it.
async fn revision(c: &mut Client) -> i64 {
    c.get("\0", None).await.unwrap().header().unwrap().revision()
}

/// Keys of `kvs` as strings.
fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key_str().unwrap()).collect()
}

/// (key, value) pairs of `kvs` as strings.
fn pairs(kvs: &[KeyValue]) -> Vec<(&str, &str)> {
    kvs.iter().map(|kv| (kv.key_str().unwrap(), kv.value_str().unwrap())).collect()
}

/// Puts and returns the revision of the write.
async fn put(c: &mut Client, key: &str, value: &str) -> i64 {
    c.put(key, value, None).await.unwrap().header().unwrap().revision()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_revisions_and_prev_kv() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let r1 = c.put("a", "1", None).await.unwrap();
    let rev1 = r1.header().unwrap().revision();
    assert_eq!(rev1, 2, "etcd's first write is revision 2");
    let r2 = c.put("a", "2", Some(PutOptions::new().with_prev_key())).await.unwrap();
    assert_eq!(r2.prev_key().unwrap().value(), b"1");
    let got = c.get("a", None).await.unwrap();
    let kv = &got.kvs()[0];
    assert_eq!((kv.value(), kv.create_revision(), kv.mod_revision(), kv.version()), (&b"2"[..], 2, 3, 2));
    let old = c.get("a", Some(GetOptions::new().with_revision(2))).await.unwrap();
    assert_eq!(old.kvs()[0].value(), b"1");
    let future = c.get("a", Some(GetOptions::new().with_revision(100))).await.unwrap_err();
    assert!(future.to_string().contains("required revision is a future revision"), "{future}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_lease_ignore_lease_and_ignore_value() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let l1 = c.lease_grant(100, None).await.unwrap().id();
    let l2 = c.lease_grant(100, None).await.unwrap().id();
    assert_ne!(l1, l2);

    // A put without prev_kv answers no previous value even when there is one.
    c.put("k", "v1", Some(PutOptions::new().with_lease(l1))).await.unwrap();
    let r = c.put("k", "v2", Some(PutOptions::new().with_ignore_lease())).await.unwrap();
    assert!(r.prev_key().is_none(), "prev_kv was not asked for");
    let kv = c.get("k", None).await.unwrap().kvs()[0].clone();
    assert_eq!((kv.value(), kv.lease(), kv.version()), (&b"v2"[..], l1, 2), "ignore_lease keeps the lease");

    let r = c.put("k", "", Some(PutOptions::new().with_ignore_value().with_lease(l2).with_prev_key())).await.unwrap();
    assert_eq!(r.prev_key().unwrap().value(), b"v2");
    assert_eq!(r.prev_key().unwrap().lease(), l1);
    let kv = c.get("k", None).await.unwrap().kvs()[0].clone();
    assert_eq!((kv.value(), kv.lease(), kv.version()), (&b"v2"[..], l2, 3), "ignore_value keeps the value");
    // The key moved from l1 to l2.
    let t1 = c.lease_time_to_live(l1, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    let t2 = c.lease_time_to_live(l2, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert!(t1.keys().is_empty(), "{:?}", t1.keys());
    assert_eq!(t2.keys(), [b"k".to_vec()]);

    // A plain put detaches the lease.
    c.put("k", "v3", None).await.unwrap();
    assert_eq!(c.get("k", None).await.unwrap().kvs()[0].lease(), 0);

    let before = revision(&mut c).await;
    assert_status(
        c.put("missing", "", Some(PutOptions::new().with_ignore_value())).await,
        Code::InvalidArgument,
        "etcdserver: key not found",
    );
    assert_status(
        c.put("missing", "x", Some(PutOptions::new().with_ignore_lease())).await,
        Code::InvalidArgument,
        "etcdserver: key not found",
    );
    assert_status(
        c.put("k", "x", Some(PutOptions::new().with_ignore_value())).await,
        Code::InvalidArgument,
        "etcdserver: value is provided",
    );
    assert_status(
        c.put("k", "x", Some(PutOptions::new().with_ignore_lease().with_lease(l1))).await,
        Code::InvalidArgument,
        "etcdserver: lease is provided",
    );
    assert_eq!(revision(&mut c).await, before, "rejected puts do not bump the revision");
    assert!(c.get("missing", None).await.unwrap().kvs().is_empty());
}

/// Writes a, a/1, a/2, b, c (in that order, one revision each) and returns their revisions.
async fn seed(c: &mut Client) -> Vec<i64> {
    let mut revs = Vec::new();
    for (k, v) in [("a", "va"), ("a/1", "z"), ("a/2", "y"), ("b", "x"), ("c", "w")] {
        revs.push(put(c, k, v).await);
    }
    revs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_single_prefix_from_key_and_range() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    seed(&mut c).await;

    let one = c.get("a", None).await.unwrap();
    assert_eq!(pairs(one.kvs()), [("a", "va")]);
    assert_eq!(one.count(), 1);
    let none = c.get("a/3", None).await.unwrap();
    assert!(none.kvs().is_empty());
    assert_eq!((none.count(), none.more()), (0, false));

    let prefix = c.get("a/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(pairs(prefix.kvs()), [("a/1", "z"), ("a/2", "y")]);
    assert_eq!(prefix.count(), 2);
    let prefix_a = c.get("a", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(keys(prefix_a.kvs()), ["a", "a/1", "a/2"]);

    let from = c.get("a/2", Some(GetOptions::new().with_from_key())).await.unwrap();
    assert_eq!(keys(from.kvs()), ["a/2", "b", "c"]);
    let all = c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
    assert_eq!(keys(all.kvs()), ["a", "a/1", "a/2", "b", "c"]);

    // [a/1, b) is half-open.
    let range = c.get("a/1", Some(GetOptions::new().with_range("b"))).await.unwrap();
    assert_eq!(keys(range.kvs()), ["a/1", "a/2"]);
    let range = c.get("a/1", Some(GetOptions::new().with_range("b\0"))).await.unwrap();
    assert_eq!(keys(range.kvs()), ["a/1", "a/2", "b"]);
    // An end at or before the start selects nothing.
    let empty = c.get("b", Some(GetOptions::new().with_range("a"))).await.unwrap();
    assert!(empty.kvs().is_empty());
    assert_eq!(empty.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_limit_revision_keys_only_count_only() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let revs = seed(&mut c).await;

    let limited = c.get("", Some(GetOptions::new().with_all_keys().with_limit(2))).await.unwrap();
    assert_eq!(keys(limited.kvs()), ["a", "a/1"]);
    assert!(limited.more());
    assert_eq!(limited.count(), 5, "count is of the whole range, not the page");
    let exact = c.get("", Some(GetOptions::new().with_all_keys().with_limit(5))).await.unwrap();
    assert_eq!(exact.kvs().len(), 5);
    assert!(!exact.more());
    let prefix_limited = c.get("a/", Some(GetOptions::new().with_prefix().with_limit(1))).await.unwrap();
    assert_eq!((keys(prefix_limited.kvs()), prefix_limited.more(), prefix_limited.count()), (vec!["a/1"], true, 2));

    // Overwrite and delete, then read the past.
    let r_over = put(&mut c, "a/1", "z2").await;
    let r_del = c.delete("b", None).await.unwrap().header().unwrap().revision();
    assert_eq!(r_del, r_over + 1);
    let at = |rev| GetOptions::new().with_all_keys().with_revision(rev);
    let at_seed_1 = c.get("", Some(at(revs[1]))).await.unwrap();
    assert_eq!(pairs(at_seed_1.kvs()), [("a", "va"), ("a/1", "z")]);
    assert_eq!(at_seed_1.header().unwrap().revision(), r_del, "the header has the current revision");
    let before_del = c.get("", Some(at(r_over))).await.unwrap();
    assert_eq!(pairs(before_del.kvs()), [("a", "va"), ("a/1", "z2"), ("a/2", "y"), ("b", "x"), ("c", "w")]);
    let now = c.get("", Some(at(r_del))).await.unwrap();
    assert_eq!(keys(now.kvs()), ["a", "a/1", "a/2", "c"]);
    let kv = &c.get("a/1", Some(GetOptions::new().with_revision(revs[4]))).await.unwrap().kvs()[0].clone();
    assert_eq!((kv.value(), kv.mod_revision(), kv.create_revision(), kv.version()), (&b"z"[..], revs[1], revs[1], 1));
    let limited_past = c.get("", Some(at(revs[4]).with_limit(3))).await.unwrap();
    assert_eq!(
        (keys(limited_past.kvs()), limited_past.more(), limited_past.count()),
        (vec!["a", "a/1", "a/2"], true, 5)
    );
    assert!(c.get("", Some(at(1))).await.unwrap().kvs().is_empty(), "revision 1 is the empty store");

    let keys_only = c.get("a", Some(GetOptions::new().with_prefix().with_keys_only())).await.unwrap();
    assert_eq!(keys(keys_only.kvs()), ["a", "a/1", "a/2"]);
    assert!(keys_only.kvs().iter().all(|kv| kv.value().is_empty()));
    assert_eq!(keys_only.kvs()[1].mod_revision(), r_over, "keys-only keeps the metadata");
    assert_eq!(keys_only.kvs()[1].version(), 2);

    let count_only = c.get("", Some(GetOptions::new().with_all_keys().with_count_only())).await.unwrap();
    assert!(count_only.kvs().is_empty());
    assert_eq!(count_only.count(), 4);
    let count_prefix = c.get("a/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    assert_eq!(count_prefix.count(), 2);

    // Mod/create revision filters.
    let recent = c.get("", Some(GetOptions::new().with_all_keys().with_min_mod_revision(revs[4]))).await.unwrap();
    assert_eq!(keys(recent.kvs()), ["a/1", "c"]);
    let early = c.get("", Some(GetOptions::new().with_all_keys().with_max_create_revision(revs[1]))).await.unwrap();
    assert_eq!(keys(early.kvs()), ["a", "a/1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_sorted() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    seed(&mut c).await;
    // Make mod order differ from key order: a/2 is now the newest, then a.
    put(&mut c, "a", "vb").await;
    put(&mut c, "a/2", "y2").await;
    let all = GetOptions::new().with_all_keys();

    let by_mod_desc = c.get("", Some(all.clone().with_sort(SortTarget::Mod, SortOrder::Descend))).await.unwrap();
    assert_eq!(keys(by_mod_desc.kvs()), ["a/2", "a", "c", "b", "a/1"]);
    let mods: Vec<i64> = by_mod_desc.kvs().iter().map(KeyValue::mod_revision).collect();
    assert!(mods.windows(2).all(|w| w[0] > w[1]), "{mods:?}");
    let by_mod_asc = c.get("", Some(all.clone().with_sort(SortTarget::Mod, SortOrder::Ascend))).await.unwrap();
    assert_eq!(keys(by_mod_asc.kvs()), ["a/1", "b", "c", "a", "a/2"]);
    let by_create = c.get("", Some(all.clone().with_sort(SortTarget::Create, SortOrder::Descend))).await.unwrap();
    assert_eq!(keys(by_create.kvs()), ["c", "b", "a/2", "a/1", "a"]);
    let by_key_desc = c.get("", Some(all.clone().with_sort(SortTarget::Key, SortOrder::Descend))).await.unwrap();
    assert_eq!(keys(by_key_desc.kvs()), ["c", "b", "a/2", "a/1", "a"]);
    let by_value = c.get("", Some(all.clone().with_sort(SortTarget::Value, SortOrder::Ascend))).await.unwrap();
    assert_eq!(keys(by_value.kvs()), ["a", "c", "b", "a/2", "a/1"]);
    let by_version = c.get("", Some(all.clone().with_sort(SortTarget::Version, SortOrder::Descend))).await.unwrap();
    // Ties (a and a/2 have version 2, the rest 1) may come in any order.
    let mut newer = keys(&by_version.kvs()[..2]);
    newer.sort_unstable();
    assert_eq!(newer, ["a", "a/2"]);
    assert!(by_version.kvs()[..2].iter().all(|kv| kv.version() == 2));
    assert!(by_version.kvs()[2..].iter().all(|kv| kv.version() == 1));

    // Sorting happens before the limit, like etcd: the newest two.
    let newest =
        c.get("", Some(all.clone().with_sort(SortTarget::Mod, SortOrder::Descend).with_limit(2))).await.unwrap();
    assert_eq!((keys(newest.kvs()), newest.more(), newest.count()), (vec!["a/2", "a"], true, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_key_prefix_range_and_prev_kv() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    seed(&mut c).await;
    put(&mut c, "d/1", "1").await;
    put(&mut c, "d/2", "2").await;
    let start = put(&mut c, "e", "3").await;

    let one = c.delete("a", Some(DeleteOptions::new().with_prev_key())).await.unwrap();
    assert_eq!(one.deleted(), 1);
    assert_eq!(pairs(one.prev_kvs()), [("a", "va")]);
    assert_eq!(one.header().unwrap().revision(), start + 1);

    let prefix = c.delete("a/", Some(DeleteOptions::new().with_prefix())).await.unwrap();
    assert_eq!(prefix.deleted(), 2);
    assert!(prefix.prev_kvs().is_empty(), "prev_kv was not asked for");
    assert_eq!(prefix.header().unwrap().revision(), start + 2, "one revision for the whole range");

    let range = c.delete("b", Some(DeleteOptions::new().with_range("d/2").with_prev_key())).await.unwrap();
    assert_eq!(range.deleted(), 3);
    assert_eq!(pairs(range.prev_kvs()), [("b", "x"), ("c", "w"), ("d/1", "1")]);
    let after = start + 3;
    assert_eq!(range.header().unwrap().revision(), after);

    let left = c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
    assert_eq!(keys(left.kvs()), ["d/2", "e"]);

    // Deleting nothing does not bump the revision.
    for opts in [None, Some(DeleteOptions::new().with_prefix()), Some(DeleteOptions::new().with_range("b"))] {
        let nothing = c.delete("a", opts).await.unwrap();
        assert_eq!(nothing.deleted(), 0);
        assert_eq!(nothing.header().unwrap().revision(), after);
    }
    assert_eq!(revision(&mut c).await, after);

    // Deleted keys are gone at the current revision but readable before it; a re-created
    // key starts a new life.
    let old = c.get("a", Some(GetOptions::new().with_revision(start))).await.unwrap();
    assert_eq!(pairs(old.kvs()), [("a", "va")]);
    let again = put(&mut c, "a", "new").await;
    let kv = c.get("a", None).await.unwrap().kvs()[0].clone();
    assert_eq!((kv.create_revision(), kv.version()), (again, 1));

    let from = c.delete("d", Some(DeleteOptions::new().with_from_key())).await.unwrap();
    assert_eq!(from.deleted(), 2);
    assert_eq!(keys(c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap().kvs()), ["a"]);
}

/// The single range response of a txn op.
fn range_of(op: &TxnOpResponse) -> Vec<(String, String)> {
    match op {
        TxnOpResponse::Get(g) => {
            g.kvs().iter().map(|kv| (kv.key_str().unwrap().to_owned(), kv.value_str().unwrap().to_owned())).collect()
        }
        other => panic!("expected a range response, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_compares_and_branches() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let r_k = put(&mut c, "k", "v1").await;
    let r_k2 = put(&mut c, "k", "v2").await;

    // Each compare target, each answering true, then each answering false.
    let truths = [
        Compare::value("k", CompareOp::Equal, "v2"),
        Compare::value("k", CompareOp::Greater, "v1"),
        Compare::version("k", CompareOp::Equal, 2),
        Compare::create_revision("k", CompareOp::Equal, r_k),
        Compare::mod_revision("k", CompareOp::Equal, r_k2),
        Compare::mod_revision("k", CompareOp::Less, r_k2 + 1),
        Compare::version("nope", CompareOp::Equal, 0),
        Compare::create_revision("nope", CompareOp::Equal, 0),
        Compare::value("k", CompareOp::NotEqual, "v1"),
    ];
    let lies = [
        Compare::value("k", CompareOp::Equal, "v1"),
        Compare::version("k", CompareOp::Greater, 2),
        Compare::create_revision("k", CompareOp::Equal, r_k2),
        Compare::mod_revision("k", CompareOp::Less, r_k2),
        Compare::version("nope", CompareOp::Greater, 0),
        Compare::value("nope", CompareOp::Equal, ""),
    ];
    for cmp in truths {
        let t = Txn::new().when([cmp.clone()]).and_then([TxnOp::get("k", None)]).or_else([TxnOp::get("nope", None)]);
        let r = c.txn(t).await.unwrap();
        assert!(r.succeeded(), "{cmp:?}");
        assert_eq!(range_of(&r.op_responses()[0]), [("k".to_owned(), "v2".to_owned())], "{cmp:?}");
    }
    for cmp in lies {
        let t = Txn::new().when([cmp.clone()]).and_then([TxnOp::get("k", None)]).or_else([TxnOp::get("nope", None)]);
        let r = c.txn(t).await.unwrap();
        assert!(!r.succeeded(), "{cmp:?}");
        assert!(range_of(&r.op_responses()[0]).is_empty(), "{cmp:?}");
    }
    // Read-only txns did not bump the revision.
    assert_eq!(revision(&mut c).await, r_k2);

    // All compares must hold.
    let mixed = Txn::new()
        .when([Compare::value("k", CompareOp::Equal, "v2"), Compare::version("k", CompareOp::Equal, 1)])
        .and_then([TxnOp::put("k", "then", None)])
        .or_else([TxnOp::put("k", "else", None)]);
    let r = c.txn(mixed).await.unwrap();
    assert!(!r.succeeded());
    assert_eq!(c.get("k", None).await.unwrap().kvs()[0].value(), b"else");
    assert_eq!(r.header().unwrap().revision(), r_k2 + 1);

    // A compare over a range holds only if it holds for every key in it.
    put(&mut c, "p/1", "x").await;
    let r_p2 = put(&mut c, "p/2", "x").await;
    let all_x = Txn::new().when([Compare::value("p/", CompareOp::Equal, "x").with_prefix()]);
    assert!(c.txn(all_x.clone()).await.unwrap().succeeded());
    put(&mut c, "p/3", "y").await;
    assert!(!c.txn(all_x).await.unwrap().succeeded());
    let newer = Txn::new().when([Compare::mod_revision("p/", CompareOp::Greater, r_p2).with_prefix()]);
    assert!(!c.txn(newer).await.unwrap().succeeded(), "p/1 and p/2 are not newer than r_p2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_writes_share_one_revision_and_reads_see_them() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    put(&mut c, "gone", "g").await;
    let before = put(&mut c, "x", "0").await;

    let t = Txn::new().when([Compare::version("x", CompareOp::Equal, 1)]).and_then([
        TxnOp::get("x", None),
        TxnOp::put("x", "1", Some(PutOptions::new().with_prev_key())),
        TxnOp::put("y", "2", None),
        TxnOp::get("", Some(GetOptions::new().with_all_keys())),
        TxnOp::delete("gone", Some(DeleteOptions::new().with_prev_key())),
        TxnOp::get("gone", None),
        TxnOp::txn(
            Txn::new()
                .when([Compare::value("y", CompareOp::Equal, "2")])
                .and_then([TxnOp::put("z", "3", None), TxnOp::get("z", None)])
                .or_else([TxnOp::put("z", "wrong", None)]),
        ),
    ]);
    let r = c.txn(t).await.unwrap();
    assert!(r.succeeded());
    let rev = r.header().unwrap().revision();
    assert_eq!(rev, before + 1, "one revision for the whole txn");
    let ops = r.op_responses();
    assert_eq!(ops.len(), 7);
    assert_eq!(range_of(&ops[0]), [("x".to_owned(), "0".to_owned())], "a read before a write sees the old value");
    match &ops[1] {
        TxnOpResponse::Put(p) => assert_eq!(p.prev_key().unwrap().value(), b"0"),
        other => panic!("{other:?}"),
    }
    let all = range_of(&ops[3]);
    let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(all, [("gone", "g"), ("x", "1"), ("y", "2")], "reads see earlier writes of the same txn");
    match &ops[4] {
        TxnOpResponse::Delete(d) => {
            assert_eq!(d.deleted(), 1);
            assert_eq!(pairs(d.prev_kvs()), [("gone", "g")]);
        }
        other => panic!("{other:?}"),
    }
    assert!(range_of(&ops[5]).is_empty(), "a read after a delete in the same txn sees no key");
    match &ops[6] {
        TxnOpResponse::Txn(inner) => {
            assert!(inner.succeeded(), "nested compare sees the txn's own write of y");
            let inner_ops = inner.op_responses();
            assert_eq!(range_of(&inner_ops[1]), [("z".to_owned(), "3".to_owned())]);
            assert_eq!(inner.header().unwrap().revision(), rev);
        }
        other => panic!("{other:?}"),
    }

    // Every write of the txn carries the txn's revision.
    let now = c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
    assert_eq!(pairs(now.kvs()), [("x", "1"), ("y", "2"), ("z", "3")]);
    assert!(now.kvs().iter().all(|kv| kv.mod_revision() == rev), "{:?}", now.kvs());
    assert_eq!(now.kvs()[0].version(), 2);
    assert_eq!(now.header().unwrap().revision(), rev);

    // A txn whose taken branch writes nothing leaves the revision alone, even if the other
    // branch would have written.
    let ro = Txn::new()
        .when([Compare::value("x", CompareOp::Equal, "1")])
        .and_then([TxnOp::get("x", None), TxnOp::delete("nothing-here", None)])
        .or_else([TxnOp::put("x", "2", None)]);
    let r = c.txn(ro).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(r.header().unwrap().revision(), rev);
    let empty = c.txn(Txn::new()).await.unwrap();
    assert!(empty.succeeded(), "no compares means success");
    assert_eq!(empty.header().unwrap().revision(), rev);
    assert_eq!(revision(&mut c).await, rev);

    // A txn that fails validation changes nothing.
    let bad = Txn::new()
        .and_then([TxnOp::put("w", "1", None), TxnOp::put("q", "", Some(PutOptions::new().with_ignore_value()))]);
    assert_status(c.txn(bad).await, Code::InvalidArgument, "etcdserver: key not found");
    assert!(c.get("w", None).await.unwrap().kvs().is_empty(), "no partial txn");
    assert_eq!(revision(&mut c).await, rev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_reads_at_and_after_the_compacted_revision() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let r_a1 = put(&mut c, "a", "1").await; // 2
    let r_s = put(&mut c, "s", "stable").await; // 3
    let r_a2 = put(&mut c, "a", "2").await; // 4
    let r_d = put(&mut c, "d", "doomed").await; // 5
    let r_del = c.delete("d", None).await.unwrap().header().unwrap().revision(); // 6
    let r_a3 = put(&mut c, "a", "3").await; // 7
    let r_e = put(&mut c, "e", "1").await; // 8
    assert_eq!([r_a1, r_s, r_a2, r_d, r_del, r_a3, r_e], [2, 3, 4, 5, 6, 7, 8]);

    let resp = c.compact(r_del, None).await.unwrap();
    assert_eq!(resp.header().unwrap().revision(), r_e, "compaction does not bump the revision");
    assert_eq!(revision(&mut c).await, r_e);

    for rev in [1, r_a1, r_d] {
        assert_status(c.get("a", Some(GetOptions::new().with_revision(rev))).await, Code::OutOfRange, COMPACTED);
        assert_status(
            c.get("", Some(GetOptions::new().with_all_keys().with_revision(rev))).await,
            Code::OutOfRange,
            COMPACTED,
        );
    }
    let all_at = |rev| GetOptions::new().with_all_keys().with_revision(rev);
    let at_compact = c.get("", Some(all_at(r_del))).await.unwrap();
    assert_eq!(pairs(at_compact.kvs()), [("a", "2"), ("s", "stable")], "d was deleted before the compact revision");
    assert_eq!(at_compact.kvs()[0].mod_revision(), r_a2);
    assert!(c.get("d", Some(GetOptions::new().with_revision(r_del))).await.unwrap().kvs().is_empty());
    let a_at = c.get("a", Some(GetOptions::new().with_revision(r_del))).await.unwrap();
    assert_eq!(pairs(a_at.kvs()), [("a", "2")]);
    let after = c.get("", Some(all_at(r_a3))).await.unwrap();
    assert_eq!(pairs(after.kvs()), [("a", "3"), ("s", "stable")]);
    let now = c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
    assert_eq!(pairs(now.kvs()), [("a", "3"), ("e", "1"), ("s", "stable")]);
    // s's only version is below the compact revision; it stays readable, metadata intact.
    let s = c.get("s", None).await.unwrap().kvs()[0].clone();
    assert_eq!((s.create_revision(), s.mod_revision(), s.version()), (r_s, r_s, 1));
    let s_at = c.get("s", Some(GetOptions::new().with_revision(r_a3))).await.unwrap();
    assert_eq!(pairs(s_at.kvs()), [("s", "stable")]);
    let a = c.get("a", None).await.unwrap().kvs()[0].clone();
    assert_eq!((a.create_revision(), a.mod_revision(), a.version()), (r_a1, r_a3, 3));

    // The compacted revision cannot be compacted again, nor a future one.
    assert_status(c.compact(r_del, None).await, Code::OutOfRange, COMPACTED);
    assert_status(c.compact(r_a1, None).await, Code::OutOfRange, COMPACTED);
    assert_status(
        c.compact(r_e + 1, None).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    // A txn reading below the compact revision fails too.
    let t = Txn::new().and_then([TxnOp::get("a", Some(GetOptions::new().with_revision(r_a1)))]);
    assert_status(c.txn(t).await, Code::OutOfRange, COMPACTED);

    // Writes after the compaction continue the keys' histories.
    let r_a4 = put(&mut c, "a", "4").await;
    let r_d2 = put(&mut c, "d", "again").await;
    let a = c.get("a", None).await.unwrap().kvs()[0].clone();
    assert_eq!((a.create_revision(), a.version()), (r_a1, 4));
    let d = c.get("d", None).await.unwrap().kvs()[0].clone();
    assert_eq!((d.create_revision(), d.version()), (r_d2, 1));
    let at_a4 = c.get("", Some(all_at(r_a4))).await.unwrap();
    assert_eq!(pairs(at_a4.kvs()), [("a", "4"), ("e", "1"), ("s", "stable")]);

    // A second compaction further on.
    c.compact(r_a4, None).await.unwrap();
    assert_status(c.get("a", Some(GetOptions::new().with_revision(r_a3))).await, Code::OutOfRange, COMPACTED);
    let at_a4 = c.get("", Some(all_at(r_a4))).await.unwrap();
    assert_eq!(pairs(at_a4.kvs()), [("a", "4"), ("e", "1"), ("s", "stable")]);
    let now = c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap();
    assert_eq!(pairs(now.kvs()), [("a", "4"), ("d", "again"), ("e", "1"), ("s", "stable")]);
}
