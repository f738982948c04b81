//! The Watch API through the etcd-client crate against a one-member cluster: key, prefix and
//! range watches, replay from the past, prev_kv, filters, compaction, progress, volume.

use crate::common;

use std::time::{Duration, Instant};

use etcd_client::{
    Client, EventType, GetOptions, Txn, TxnOp, WatchFilterType, WatchOptions, WatchResponse, WatchStream,
};

/// How long any single expected watch response may take.
const WAIT: Duration = Duration::from_secs(10);

/// A received event, flattened: (type, key, value, mod revision).
type Ev = (EventType, String, String, i64);

/// The next response on the stream, failing after [`WAIT`].
async fn next(stream: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("a watch response within the deadline")
        .expect("the watch stream does not fail")
        .expect("the watch stream stays open")
}

/// Opens a watch and consumes its `created` response; returns the stream and watch ID.
async fn watch(c: &mut Client, key: &str, opts: Option<WatchOptions>) -> (WatchStream, i64) {
    let mut stream = c.watch(key, opts).await.unwrap();
    let created = next(&mut stream).await;
    assert!(created.created(), "first response confirms the watch: {created:?}");
    assert!(!created.canceled(), "{created:?}");
    assert!(created.events().is_empty());
    (stream, created.watch_id())
}

fn flatten(resp: &WatchResponse) -> Vec<Ev> {
    resp.events()
        .iter()
        .map(|e| {
            let kv = e.kv().expect("events carry a kv");
            (e.event_type(), kv.key_str().unwrap().to_owned(), kv.value_str().unwrap().to_owned(), kv.mod_revision())
        })
        .collect()
}

/// Receives exactly `n` events (failing on a timeout or on more events in the last response).
async fn events(stream: &mut WatchStream, id: i64, n: usize) -> Vec<Ev> {
    let mut out = Vec::new();
    while out.len() < n {
        let resp = next(stream).await;
        assert!(!resp.canceled(), "watch canceled: {resp:?}");
        if resp.events().is_empty() {
            continue; // progress notification
        }
        assert_eq!(resp.watch_id(), id);
        let revs: Vec<i64> = resp.events().iter().map(|e| e.kv().unwrap().mod_revision()).collect();
        assert!(
            resp.header().unwrap().revision() >= *revs.iter().max().unwrap(),
            "header revision {} below event revisions {revs:?}",
            resp.header().unwrap().revision()
        );
        out.extend(flatten(&resp));
    }
    assert_eq!(out.len(), n, "more events than expected: {out:?}");
    out
}

fn put_ev(key: &str, value: &str, rev: i64) -> Ev {
    (EventType::Put, key.to_owned(), value.to_owned(), rev)
}

fn del_ev(key: &str, rev: i64) -> Ev {
    (EventType::Delete, key.to_owned(), String::new(), rev)
}

async fn put(c: &mut Client, key: &str, value: &str) -> i64 {
    c.put(key, value, None).await.unwrap().header().unwrap().revision()
}

async fn del(c: &mut Client, key: &str) -> i64 {
    c.delete(key, None).await.unwrap().header().unwrap().revision()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_watch_sees_only_its_key() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let (mut w, id) = watch(&mut c, "k", None).await;

    let r1 = put(&mut c, "k", "v1").await;
    put(&mut c, "k2", "no").await;
    put(&mut c, "j", "no").await;
    let r2 = put(&mut c, "k", "v2").await;
    let r3 = del(&mut c, "k").await;
    del(&mut c, "k").await; // deletes nothing: no event
    let r4 = put(&mut c, "k", "sentinel").await;
    let got = events(&mut w, id, 4).await;
    assert_eq!(got, [put_ev("k", "v1", r1), put_ev("k", "v2", r2), del_ev("k", r3), put_ev("k", "sentinel", r4)]);

    // Version and create revision are in the event's kv.
    let r5 = put(&mut c, "k", "v3").await;
    let resp = next(&mut w).await;
    let kv = resp.events()[0].kv().unwrap();
    assert_eq!((kv.version(), kv.create_revision(), kv.mod_revision()), (2, r4, r5));

    // Canceling the watch is confirmed, and nothing more arrives for it: the next event on
    // the stream is a sentinel of another watcher, written after the canceled key.
    w.cancel(id).await.unwrap();
    let canceled = next(&mut w).await;
    assert!(canceled.canceled());
    assert_eq!(canceled.watch_id(), id);
    w.watch("sentinel", None).await.unwrap();
    let created = next(&mut w).await;
    assert!(created.created());
    assert_ne!(created.watch_id(), id);
    put(&mut c, "k", "after cancel").await;
    let s = put(&mut c, "sentinel", "s").await;
    let resp = next(&mut w).await;
    assert_eq!(resp.watch_id(), created.watch_id(), "no events after cancel: {resp:?}");
    assert_eq!(flatten(&resp), [put_ev("sentinel", "s", s)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_and_range_watches() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let (mut pw, pid) = watch(&mut c, "p/", Some(WatchOptions::new().with_prefix())).await;
    let (mut rw, rid) = watch(&mut c, "r0", Some(WatchOptions::new().with_range("r2"))).await;
    let (mut fw, fid) = watch(&mut c, "y", Some(WatchOptions::new().with_from_key())).await;

    let a = put(&mut c, "p/a", "1").await;
    put(&mut c, "p", "outside").await;
    put(&mut c, "pa", "outside").await;
    let r0 = put(&mut c, "r0", "in").await;
    let r1x = put(&mut c, "r1x", "in").await;
    put(&mut c, "r2", "out").await;
    put(&mut c, "r", "out").await;
    let b = put(&mut c, "p/b/c", "2").await;
    let da = del(&mut c, "p/a").await;
    let z = put(&mut c, "zz", "from").await;
    // One txn touching several watched keys: one revision, events in op order.
    let t = c
        .txn(Txn::new().and_then([
            TxnOp::put("p/z", "3", None),
            TxnOp::put("r1", "in", None),
            TxnOp::put("p/y", "4", None),
            TxnOp::delete("r0", None),
        ]))
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();

    assert_eq!(
        events(&mut pw, pid, 5).await,
        [
            put_ev("p/a", "1", a),
            put_ev("p/b/c", "2", b),
            del_ev("p/a", da),
            put_ev("p/z", "3", t),
            put_ev("p/y", "4", t)
        ]
    );
    assert_eq!(
        events(&mut rw, rid, 4).await,
        [put_ev("r0", "in", r0), put_ev("r1x", "in", r1x), put_ev("r1", "in", t), del_ev("r0", t)]
    );
    assert_eq!(events(&mut fw, fid, 1).await, [put_ev("zz", "from", z)]);

    // Sentinels: the next event of each watch is the sentinel, so nothing extra was queued.
    let s = put(&mut c, "p/s", "s").await;
    assert_eq!(events(&mut pw, pid, 1).await, [put_ev("p/s", "s", s)]);
    let s = put(&mut c, "r1", "s").await;
    assert_eq!(events(&mut rw, rid, 1).await, [put_ev("r1", "s", s)]);
    let s = put(&mut c, "y", "s").await;
    assert_eq!(events(&mut fw, fid, 1).await, [put_ev("y", "s", s)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_the_past_replays_then_goes_live() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let r1 = put(&mut c, "h/a", "1").await;
    let r2 = put(&mut c, "h/b", "1").await;
    put(&mut c, "x", "unrelated").await;
    let r3 = put(&mut c, "h/a", "2").await;
    let r4 = del(&mut c, "h/b").await;
    let r5 = c
        .txn(Txn::new().and_then([
            TxnOp::put("h/c", "c", None),
            TxnOp::put("x", "y", None),
            TxnOp::put("h/d", "d", None),
        ]))
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let history = vec![
        put_ev("h/a", "1", r1),
        put_ev("h/b", "1", r2),
        put_ev("h/a", "2", r3),
        del_ev("h/b", r4),
        put_ev("h/c", "c", r5),
        put_ev("h/d", "d", r5),
    ];

    let opts = || WatchOptions::new().with_prefix();
    let (mut all, all_id) = watch(&mut c, "h/", Some(opts().with_start_revision(r1))).await;
    assert_eq!(events(&mut all, all_id, 6).await, history);
    let (mut mid, mid_id) = watch(&mut c, "h/", Some(opts().with_start_revision(r3))).await;
    assert_eq!(events(&mut mid, mid_id, 4).await, history[2..]);
    // Starting at revision 1 (before anything) replays everything too.
    let (mut one, one_id) = watch(&mut c, "h/", Some(opts().with_start_revision(1))).await;
    assert_eq!(events(&mut one, one_id, 6).await, history);
    // A start revision in the future waits for it.
    let (mut future, future_id) = watch(&mut c, "h/", Some(opts().with_start_revision(r5 + 2))).await;

    // Live events follow without repeating the replayed ones.
    let l1 = put(&mut c, "h/e", "live").await;
    let l2 = put(&mut c, "h/a", "3").await;
    let live = vec![put_ev("h/e", "live", l1), put_ev("h/a", "3", l2)];
    assert_eq!(l1, r5 + 1);
    assert_eq!(events(&mut all, all_id, 2).await, live);
    assert_eq!(events(&mut mid, mid_id, 2).await, live);
    assert_eq!(events(&mut one, one_id, 2).await, live);
    assert_eq!(events(&mut future, future_id, 1).await, live[1..]);

    // Several watchers on one stream, one replaying, keep their events apart.
    all.watch("x", Some(WatchOptions::new().with_start_revision(r1).with_watch_id(77))).await.unwrap();
    let mut x_events = Vec::new();
    let deadline = Instant::now() + WAIT;
    while x_events.len() < 2 {
        assert!(Instant::now() < deadline, "x replay incomplete: {x_events:?}");
        let resp = next(&mut all).await;
        if resp.created() {
            assert_eq!(resp.watch_id(), 77);
            continue;
        }
        assert_eq!(resp.watch_id(), 77, "h/ watcher has nothing new: {resp:?}");
        x_events.extend(flatten(&resp));
    }
    assert_eq!(x_events, [put_ev("x", "unrelated", r2 + 1), put_ev("x", "y", r5)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prev_kv_live_and_replayed() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let start = put(&mut c, "other", "o").await + 1;
    let (mut w, id) = watch(&mut c, "k", Some(WatchOptions::new().with_prev_key())).await;
    put(&mut c, "k", "v1").await;
    put(&mut c, "k", "v2").await;
    del(&mut c, "k").await;
    put(&mut c, "k", "v3").await;

    let check = |resps: Vec<WatchResponse>| {
        let evs: Vec<_> = resps.iter().flat_map(|r| r.events().to_vec()).collect();
        assert_eq!(evs.len(), 4, "{evs:?}");
        let prev: Vec<Option<&[u8]>> = evs.iter().map(|e| e.prev_kv().map(etcd_client::KeyValue::value)).collect();
        assert_eq!(prev, [None, Some(&b"v1"[..]), Some(&b"v2"[..]), None]);
        let prev_mod = evs[2].prev_kv().unwrap().mod_revision();
        assert_eq!(prev_mod, evs[1].kv().unwrap().mod_revision());
    };
    let mut live = Vec::new();
    while live.iter().map(|r: &WatchResponse| r.events().len()).sum::<usize>() < 4 {
        let r = next(&mut w).await;
        assert_eq!(r.watch_id(), id);
        live.push(r);
    }
    check(live);

    let (mut replay, rid) =
        watch(&mut c, "k", Some(WatchOptions::new().with_prev_key().with_start_revision(start))).await;
    let mut replayed = Vec::new();
    while replayed.iter().map(|r: &WatchResponse| r.events().len()).sum::<usize>() < 4 {
        let r = next(&mut replay).await;
        assert_eq!(r.watch_id(), rid);
        replayed.push(r);
    }
    check(replayed);

    // Without prev_kv, events carry none.
    let (mut plain, pid) = watch(&mut c, "k", None).await;
    put(&mut c, "k", "v4").await;
    let r = next(&mut plain).await;
    assert_eq!(r.watch_id(), pid);
    assert!(r.events()[0].prev_kv().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noput_and_nodelete_filters() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let prefix = || WatchOptions::new().with_prefix();
    let (mut deletes, did) = watch(&mut c, "f/", Some(prefix().with_filters([WatchFilterType::NoPut]))).await;
    let (mut puts, pid) = watch(&mut c, "f/", Some(prefix().with_filters([WatchFilterType::NoDelete]))).await;
    let (mut nothing, nid) =
        watch(&mut c, "f/", Some(prefix().with_filters([WatchFilterType::NoPut, WatchFilterType::NoDelete]))).await;
    // The same stream also watches a sentinel key, written last.
    nothing.watch("g", Some(WatchOptions::new().with_watch_id(nid + 100))).await.unwrap();
    assert!(next(&mut nothing).await.created());

    let p1 = put(&mut c, "f/a", "1").await;
    let p2 = put(&mut c, "f/b", "2").await;
    let d1 = del(&mut c, "f/a").await;
    let p3 = put(&mut c, "f/a", "3").await;
    let d2 = c.delete("f/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
    let d2 = d2.header().unwrap().revision();
    let p4 = put(&mut c, "f/z", "sentinel").await;

    assert_eq!(events(&mut deletes, did, 3).await, [del_ev("f/a", d1), del_ev("f/a", d2), del_ev("f/b", d2)]);
    assert_eq!(
        events(&mut puts, pid, 4).await,
        [put_ev("f/a", "1", p1), put_ev("f/b", "2", p2), put_ev("f/a", "3", p3), put_ev("f/z", "sentinel", p4)]
    );
    // The delete-only watcher got nothing for the sentinel put: a delete is next.
    let d3 = del(&mut c, "f/z").await;
    assert_eq!(events(&mut deletes, did, 1).await, [del_ev("f/z", d3)]);
    // The watcher filtering both saw nothing: the sentinel's event is the first to arrive.
    let g = put(&mut c, "g", "sentinel").await;
    assert_eq!(events(&mut nothing, nid + 100, 1).await, [put_ev("g", "sentinel", g)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_compacted_revision_is_canceled() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let r1 = put(&mut c, "c", "1").await;
    let r2 = put(&mut c, "c", "2").await;
    let r3 = put(&mut c, "c", "3").await;
    let r4 = put(&mut c, "c", "4").await;
    c.compact(r3, None).await.unwrap();

    for start in [r1, r2] {
        let mut stream = c.watch("c", Some(WatchOptions::new().with_start_revision(start))).await.unwrap();
        let deadline = Instant::now() + WAIT;
        let canceled = loop {
            assert!(Instant::now() < deadline, "no cancellation for start {start}");
            let resp = next(&mut stream).await;
            assert!(resp.events().is_empty(), "no events from a compacted start: {resp:?}");
            if resp.canceled() {
                break resp;
            }
            assert!(resp.created());
        };
        assert_eq!(canceled.compact_revision(), r3, "{canceled:?}");
        assert!(canceled.cancel_reason().contains("required revision has been compacted"), "{canceled:?}");
    }

    // At the compacted revision itself, history is still there.
    let (mut w, id) = watch(&mut c, "c", Some(WatchOptions::new().with_start_revision(r3))).await;
    assert_eq!(events(&mut w, id, 2).await, [put_ev("c", "3", r3), put_ev("c", "4", r4)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_requests_and_notifications() {
    let cluster = common::Cluster::start_with(1, |cfg| cfg.watch_progress_notify_interval_secs = 1).await;
    let mut c = cluster.members[0].client().await;
    let (mut w, _id) = watch(&mut c, "quiet", None).await;
    for i in 0..3 {
        put(&mut c, "noise", &i.to_string()).await;
    }
    let current = c.get("quiet", None).await.unwrap().header().unwrap().revision();
    w.request_progress().await.unwrap();
    let progress = next(&mut w).await;
    assert!(progress.events().is_empty());
    assert!(!progress.canceled() && !progress.created());
    assert_eq!(progress.header().unwrap().revision(), current);

    // A watcher asking for progress notifications gets them periodically without events.
    let (mut pn, pn_id) = watch(&mut c, "quiet", Some(WatchOptions::new().with_progress_notify())).await;
    let started = Instant::now();
    let notified = next(&mut pn).await;
    assert!(notified.events().is_empty(), "{notified:?}");
    assert_eq!(notified.watch_id(), pn_id);
    assert_eq!(notified.header().unwrap().revision(), current);
    assert!(started.elapsed() < Duration::from_secs(5), "notification took {:?}", started.elapsed());
    // The other watcher did not ask for notifications: a put is its next response.
    let r = put(&mut c, "quiet", "now").await;
    let resp = next(&mut w).await;
    assert_eq!(flatten(&resp), [put_ev("quiet", "now", r)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_events_arrive_in_order_exactly_once() {
    const WRITERS: usize = 10;
    const PER_WRITER: usize = 200;
    const TOTAL: usize = WRITERS * PER_WRITER;
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let first = put(&mut c, "m-start", "x").await + 1;
    let (mut w, id) = watch(&mut c, "m/", Some(WatchOptions::new().with_prefix())).await;

    let mut tasks = Vec::new();
    for t in 0..WRITERS {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..PER_WRITER {
                let key = format!("m/{t}/{i:04}");
                revs.push((
                    c.put(key.clone(), format!("{t}-{i}"), None).await.unwrap().header().unwrap().revision(),
                    key,
                ));
            }
            revs
        }));
    }
    let mut expected: Vec<(i64, String)> = Vec::new();
    for t in tasks {
        expected.extend(t.await.unwrap());
    }
    expected.sort();
    assert_eq!(expected.len(), TOTAL);
    let last = expected.last().unwrap().0;
    assert_eq!((expected[0].0, last), (first, first + TOTAL as i64 - 1), "one revision per put");

    let check = |got: Vec<Ev>| {
        assert_eq!(got.len(), TOTAL);
        for (i, (ev, (rev, key))) in got.iter().zip(&expected).enumerate() {
            assert_eq!((ev.0, &ev.1, ev.3), (EventType::Put, key, *rev), "event {i}");
            let (t, n) = key.trim_start_matches("m/").split_once('/').unwrap();
            assert_eq!(ev.2, format!("{t}-{}", n.parse::<usize>().unwrap()));
        }
    };
    check(events(&mut w, id, TOTAL).await);

    // Replaying the same history from the store (across catch-up batches) gives the same.
    let (mut replay, rid) =
        watch(&mut c, "m/", Some(WatchOptions::new().with_prefix().with_start_revision(first))).await;
    check(events(&mut replay, rid, TOTAL).await);

    // And both streams continue live with nothing left over.
    let s = put(&mut c, "m/sentinel", "s").await;
    assert_eq!(s, last + 1);
    assert_eq!(events(&mut w, id, 1).await, [put_ev("m/sentinel", "s", s)]);
    assert_eq!(events(&mut replay, rid, 1).await, [put_ev("m/sentinel", "s", s)]);
    let got = c.get("m/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    assert_eq!(got.count(), TOTAL as i64 + 1);
}

/// Replay reads the store in batches of 1000 events; one revision may hold more (a range
/// delete, a lease revoke) and must still be delivered whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_with_more_events_than_a_catch_up_batch_is_replayed_whole() {
    const KEYS: usize = 1200;
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    for chunk in 0..KEYS / 100 {
        let ops: Vec<TxnOp> = (0..100).map(|i| TxnOp::put(format!("big/{:05}", chunk * 100 + i), "v", None)).collect();
        c.txn(Txn::new().and_then(ops)).await.unwrap();
    }
    let (mut live, live_id) = watch(&mut c, "big/", Some(WatchOptions::new().with_prefix())).await;
    let del = c.delete("big/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
    assert_eq!(del.deleted(), KEYS as i64);
    let rev = del.header().unwrap().revision();
    let expected: Vec<Ev> = (0..KEYS).map(|i| del_ev(&format!("big/{i:05}"), rev)).collect();
    assert_eq!(events(&mut live, live_id, KEYS).await, expected);

    let (mut replay, replay_id) =
        watch(&mut c, "big/", Some(WatchOptions::new().with_prefix().with_start_revision(rev))).await;
    let s = put(&mut c, "big/sentinel", "s").await;
    assert_eq!(events(&mut replay, replay_id, KEYS).await, expected);
    assert_eq!(events(&mut replay, replay_id, 1).await, [put_ev("big/sentinel", "s", s)]);
}

/// etcd's promise: a progress response at revision R means every event up to R was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_responses_never_overtake_events() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let (mut w, id) = watch(&mut c, "race/", Some(WatchOptions::new().with_prefix())).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for t in 0..3 {
        let mut c = c.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.put(format!("race/{t}"), n.to_string(), None).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut progressed = 0;
    let mut seen = 0;
    let mut violation = None;
    while Instant::now() < deadline && violation.is_none() {
        w.request_progress().await.unwrap();
        loop {
            let resp = next(&mut w).await;
            if resp.events().is_empty() {
                progressed = progressed.max(resp.header().unwrap().revision());
                break;
            }
            assert_eq!(resp.watch_id(), id);
            for e in resp.events() {
                let rev = e.kv().unwrap().mod_revision();
                assert!(rev > seen, "events in order, once: {rev} after {seen}");
                seen = rev;
                if rev <= progressed {
                    violation = Some((rev, progressed));
                }
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for t in writers {
        total += t.await.unwrap();
    }
    assert_eq!(violation, None, "event at revision .0 arrived after a progress response at .1");
    assert!(total > 100, "the writers made progress: {total}");
}

/// One stream holds at most `MAX_WATCHERS_PER_STREAM` watchers: the next is canceled with a
/// reason naming the limit, and the stream and its watchers go on working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stream_holds_a_bounded_number_of_watchers() {
    use ultracloud_chainfire::server::watch::MAX_WATCHERS_PER_STREAM;
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let (mut w, first) = watch(&mut c, "bound/0", None).await;
    for i in 1..MAX_WATCHERS_PER_STREAM {
        w.watch(format!("bound/{i}"), None).await.unwrap();
    }
    for _ in 1..MAX_WATCHERS_PER_STREAM {
        let created = next(&mut w).await;
        assert!(created.created() && !created.canceled(), "{created:?}");
    }
    w.watch("bound/one-too-many", None).await.unwrap();
    let refused = next(&mut w).await;
    assert!(refused.canceled(), "{refused:?}");
    assert!(refused.cancel_reason().contains("too many watches"), "{}", refused.cancel_reason());
    let rev = put(&mut c, "bound/0", "still watched").await;
    assert_eq!(events(&mut w, first, 1).await, vec![put_ev("bound/0", "still watched", rev)]);
}
