//! The Lease API through the etcd-client crate against a one-member cluster: grant, time to
//! live, list, keep-alive, revoke and expiry (with the DELETE events they cause).

use crate::common;

use std::time::{Duration, Instant};

use common::assert_status;
use etcd_client::{
    Client, EventType, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp, WatchOptions,
    WatchStream,
};
use tonic::Code;

const NOT_FOUND: &str = "etcdserver: requested lease not found";

/// The next watch events (skipping empty responses), as (type, key, mod revision).
async fn next_events(w: &mut WatchStream, n: usize) -> Vec<(EventType, String, i64)> {
    let mut out = Vec::new();
    while out.len() < n {
        let resp = tokio::time::timeout(Duration::from_secs(15), w.message())
            .await
            .expect("watch events within the deadline")
            .unwrap()
            .expect("watch stream open");
        assert!(!resp.canceled(), "{resp:?}");
        for e in resp.events() {
            let kv = e.kv().unwrap();
            out.push((e.event_type(), kv.key_str().unwrap().to_owned(), kv.mod_revision()));
        }
    }
    assert_eq!(out.len(), n, "{out:?}");
    out
}

async fn watch_prefix(c: &mut Client, prefix: &str) -> WatchStream {
    let mut w = c.watch(prefix, Some(WatchOptions::new().with_prefix())).await.unwrap();
    let created = w.message().await.unwrap().unwrap();
    assert!(created.created());
    w
}

async fn keys_under(c: &mut Client, prefix: &str) -> Vec<String> {
    let resp = c.get(prefix, Some(GetOptions::new().with_prefix())).await.unwrap();
    resp.kvs().iter().map(|kv| kv.key_str().unwrap().to_owned()).collect()
}

async fn ttl_of(c: &mut Client, id: i64) -> i64 {
    c.lease_time_to_live(id, None).await.unwrap().ttl()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_with_chosen_and_server_ids_and_list() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;

    let explicit = c.lease_grant(30, Some(LeaseGrantOptions::new().with_id(0x1234))).await.unwrap();
    assert_eq!((explicit.id(), explicit.ttl()), (0x1234, 30));
    assert!(explicit.error().is_empty());
    assert_status(
        c.lease_grant(30, Some(LeaseGrantOptions::new().with_id(0x1234))).await,
        Code::FailedPrecondition,
        "etcdserver: lease already exists",
    );

    let a = c.lease_grant(60, None).await.unwrap();
    let b = c.lease_grant(60, None).await.unwrap();
    assert!(a.id() > 0 && b.id() > 0, "server-chosen IDs are positive: {} {}", a.id(), b.id());
    assert_ne!(a.id(), b.id());
    assert_ne!(a.id(), 0x1234);
    assert_eq!(a.ttl(), 60);

    // Below the minimum TTL the server grants its minimum (2 s).
    let short = c.lease_grant(1, None).await.unwrap();
    assert_eq!(short.ttl(), 2);
    let ttl = c.lease_time_to_live(short.id(), None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 2);
    assert_status(c.lease_grant(9_000_000_001, None).await, Code::OutOfRange, "etcdserver: too large lease TTL");

    let mut listed: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
    listed.sort_unstable();
    let mut expected = vec![0x1234, a.id(), b.id(), short.id()];
    expected.sort_unstable();
    assert_eq!(listed, expected);

    // Granting does not change the key-value revision.
    assert_eq!(c.get("x", None).await.unwrap().header().unwrap().revision(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_to_live_reports_ttls_and_keys() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let id = c.lease_grant(100, None).await.unwrap().id();
    c.put("t/b", "1", Some(PutOptions::new().with_lease(id))).await.unwrap();
    c.put("t/a", "2", Some(PutOptions::new().with_lease(id))).await.unwrap();
    c.put("t/c", "3", None).await.unwrap();

    let with_keys = c.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert_eq!(with_keys.id(), id);
    assert_eq!(with_keys.granted_ttl(), 100);
    assert!((95..=100).contains(&with_keys.ttl()), "ttl {}", with_keys.ttl());
    let mut keys = with_keys.keys().to_vec();
    keys.sort();
    assert_eq!(keys, [b"t/a".to_vec(), b"t/b".to_vec()]);
    let without = c.lease_time_to_live(id, None).await.unwrap();
    assert!(without.keys().is_empty(), "keys only when asked for");
    assert_eq!(without.granted_ttl(), 100);

    // Moving a key to another lease, or off leases, detaches it.
    let other = c.lease_grant(100, None).await.unwrap().id();
    c.put("t/a", "2", Some(PutOptions::new().with_lease(other))).await.unwrap();
    c.put("t/b", "1", None).await.unwrap();
    let moved = c.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert!(moved.keys().is_empty(), "{:?}", moved.keys());
    let to = c.lease_time_to_live(other, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert_eq!(to.keys(), [b"t/a".to_vec()]);
    // Deleting a key detaches it too.
    c.delete("t/a", None).await.unwrap();
    let emptied = c.lease_time_to_live(other, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert!(emptied.keys().is_empty());
    // Revoking the original lease now deletes nothing.
    c.lease_revoke(id).await.unwrap();
    assert_eq!(keys_under(&mut c, "t/").await, ["t/b", "t/c"]);

    // An unknown lease reports TTL -1.
    let unknown = c.lease_time_to_live(0x7777, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert_eq!((unknown.id(), unknown.ttl()), (0x7777, -1));
    assert!(unknown.keys().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_extends_the_ttl() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let id = c.lease_grant(4, None).await.unwrap().id();
    c.put("ka", "v", Some(PutOptions::new().with_lease(id))).await.unwrap();

    // Wait until the lease has run down a bit.
    let before = common::eventually("the lease TTL to run down", Duration::from_secs(10), || {
        let mut c = c.clone();
        async move {
            let ttl = ttl_of(&mut c, id).await;
            (ttl <= 2).then_some(ttl)
        }
    })
    .await;
    assert!(before > 0, "lease still alive: {before}");

    let (mut keeper, mut responses) = c.lease_keep_alive(id).await.unwrap();
    assert_eq!(keeper.id(), id);
    keeper.keep_alive().await.unwrap();
    let resp = responses.message().await.unwrap().unwrap();
    assert_eq!((resp.id(), resp.ttl()), (id, 4));
    let after = ttl_of(&mut c, id).await;
    assert!(after > before && after <= 4, "keep-alive renewed the TTL: {before} -> {after}");

    // Keep renewing a short lease for longer than its TTL: the key survives.
    let short = c.lease_grant(2, None).await.unwrap().id();
    c.put("ka-short", "v", Some(PutOptions::new().with_lease(short))).await.unwrap();
    let (mut keeper, mut responses) = c.lease_keep_alive(short).await.unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    let mut tick = tokio::time::interval(Duration::from_millis(400));
    let mut renewals = 0;
    while Instant::now() < until {
        tick.tick().await;
        keeper.keep_alive().await.unwrap();
        let resp = responses.message().await.unwrap().unwrap();
        assert_eq!(resp.ttl(), 2);
        renewals += 1;
    }
    assert!(renewals >= 10, "{renewals}");
    assert_eq!(c.get("ka-short", None).await.unwrap().kvs().len(), 1, "renewed lease kept its key");
    assert!(ttl_of(&mut c, short).await > 0);

    // Keep-alive of an unknown lease fails.
    let err = c.lease_keep_alive(0x4242).await.unwrap_err();
    assert!(matches!(err, etcd_client::Error::LeaseKeepAliveError(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_deletes_attached_keys_with_delete_events() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let mut w = watch_prefix(&mut c, "lk/").await;
    let id = c.lease_grant(100, None).await.unwrap().id();
    let keep = c.lease_grant(100, None).await.unwrap().id();
    let r1 = c.put("lk/a", "1", Some(PutOptions::new().with_lease(id))).await.unwrap().header().unwrap().revision();
    let r2 = c.put("lk/b", "2", Some(PutOptions::new().with_lease(id))).await.unwrap().header().unwrap().revision();
    let r3 = c.put("lk/c", "3", None).await.unwrap().header().unwrap().revision();
    let r4 = c.put("lk/d", "4", Some(PutOptions::new().with_lease(keep))).await.unwrap().header().unwrap().revision();

    let revoked = c.lease_revoke(id).await.unwrap();
    let rev = revoked.header().unwrap().revision();
    assert_eq!(rev, r4 + 1, "one revision for all the revoked keys");
    let got = next_events(&mut w, 6).await;
    assert_eq!(
        got,
        [
            (EventType::Put, "lk/a".to_owned(), r1),
            (EventType::Put, "lk/b".to_owned(), r2),
            (EventType::Put, "lk/c".to_owned(), r3),
            (EventType::Put, "lk/d".to_owned(), r4),
            (EventType::Delete, "lk/a".to_owned(), rev),
            (EventType::Delete, "lk/b".to_owned(), rev),
        ]
    );
    assert_eq!(keys_under(&mut c, "lk/").await, ["lk/c", "lk/d"]);
    assert_eq!(ttl_of(&mut c, id).await, -1);
    let listed: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
    assert_eq!(listed, [keep]);

    assert_status(c.lease_revoke(id).await, Code::NotFound, NOT_FOUND);
    // A lease without keys revokes without a new revision.
    let empty = c.lease_grant(100, None).await.unwrap().id();
    assert_eq!(c.lease_revoke(empty).await.unwrap().header().unwrap().revision(), rev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_deletes_keys_with_delete_events() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let mut w = watch_prefix(&mut c, "ex/").await;
    let long = c.lease_grant(100, None).await.unwrap().id();
    let start = Instant::now();
    let id = c.lease_grant(2, None).await.unwrap().id();
    let r1 = c.put("ex/a", "1", Some(PutOptions::new().with_lease(id))).await.unwrap().header().unwrap().revision();
    let r2 = c.put("ex/b", "2", Some(PutOptions::new().with_lease(id))).await.unwrap().header().unwrap().revision();
    c.put("ex/c", "3", Some(PutOptions::new().with_lease(long))).await.unwrap();
    assert_eq!(keys_under(&mut c, "ex/").await, ["ex/a", "ex/b", "ex/c"]);

    let gone_at = common::eventually("the lease to expire", Duration::from_secs(15), || {
        let mut c = c.clone();
        async move { (c.get("ex/a", None).await.unwrap().kvs().is_empty()).then(Instant::now) }
    })
    .await;
    let lived = gone_at - start;
    assert!(lived >= Duration::from_millis(1900), "expired too early, after {lived:?}");
    assert_eq!(keys_under(&mut c, "ex/").await, ["ex/c"], "only the expired lease's keys go");
    assert_eq!(ttl_of(&mut c, id).await, -1);
    assert!(!c.leases().await.unwrap().leases().iter().any(|l| l.id() == id));

    let got = next_events(&mut w, 5).await;
    let del_rev = got[3].2;
    assert!(del_rev > r2);
    assert_eq!(
        got.iter().map(|(t, k, _)| (*t, k.as_str())).collect::<Vec<_>>(),
        [
            (EventType::Put, "ex/a"),
            (EventType::Put, "ex/b"),
            (EventType::Put, "ex/c"),
            (EventType::Delete, "ex/a"),
            (EventType::Delete, "ex/b"),
        ]
    );
    assert_eq!(got[0].2, r1);
    assert_eq!(got[4].2, del_rev, "both keys go in one revision");
    assert_status(c.lease_revoke(id).await, Code::NotFound, NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_leases_are_rejected() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    assert_status(c.lease_revoke(0x5555).await, Code::NotFound, NOT_FOUND);
    assert_status(c.put("k", "v", Some(PutOptions::new().with_lease(0x5555))).await, Code::NotFound, NOT_FOUND);
    let txn = Txn::new().and_then([TxnOp::put("k", "v", Some(PutOptions::new().with_lease(0x5555)))]);
    assert_status(c.txn(txn).await, Code::NotFound, NOT_FOUND);
    assert!(c.get("k", None).await.unwrap().kvs().is_empty());
    assert_eq!(c.get("k", None).await.unwrap().header().unwrap().revision(), 1, "nothing was written");

    // Once revoked, a lease cannot be used either.
    let id = c.lease_grant(100, None).await.unwrap().id();
    c.put("k", "v", Some(PutOptions::new().with_lease(id))).await.unwrap();
    c.lease_revoke(id).await.unwrap();
    assert_status(c.put("k", "v", Some(PutOptions::new().with_lease(id))).await, Code::NotFound, NOT_FOUND);
    assert!(c.get("k", None).await.unwrap().kvs().is_empty());
}
