//! Multi-member behaviour on 127.0.0.1: replication, linearizable reads on followers, leader
//! loss under load, catching up from the log and from a snapshot, membership changes, and
//! watches across a leader change.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Cluster, eventually};
use etcd_client::{GetOptions, WatchOptions};

async fn value(c: &mut etcd_client::Client, key: &str, serializable: bool) -> Option<String> {
    let opts = if serializable { Some(GetOptions::new().with_serializable()) } else { None };
    let r = c.get(key, opts).await.ok()?;
    r.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_replicate_and_read_linearizably_on_followers() {
    let cluster = Cluster::start(3).await;
    let mut c0 = cluster.members[0].client().await;
    let mut c2 = cluster.members[2].client().await;
    for i in 0..20 {
        c0.put(format!("k{i}"), format!("v{i}"), None).await.unwrap();
        // A linearizable read on another member right after the write must see it.
        assert_eq!(value(&mut c2, &format!("k{i}"), false).await.as_deref(), Some(format!("v{i}").as_str()));
    }
    let members = eventually("3 named members with client URLs", Duration::from_secs(10), || {
        let mut c = c2.clone();
        async move {
            let list = c.member_list().await.ok()?;
            let ok = list.members().len() == 3
                && list
                    .members()
                    .iter()
                    .all(|m| !m.name().is_empty() && !m.client_urls().is_empty() && !m.is_learner());
            ok.then(|| list.members().iter().map(|m| m.name().to_owned()).collect::<BTreeSet<_>>())
        }
    })
    .await;
    assert_eq!(members, BTreeSet::from(["m0".to_owned(), "m1".to_owned(), "m2".to_owned()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_loss_under_writes_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let endpoints: Vec<String> = cluster.endpoints();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut writers = Vec::new();
    for w in 0..4 {
        let endpoints = endpoints.clone();
        let tx = tx.clone();
        writers.push(tokio::spawn(async move {
            let mut client = etcd_client::Client::connect(endpoints, None).await.unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            for i in 0..60 {
                let key = format!("w{w}-{i}");
                while tokio::time::Instant::now() < deadline {
                    if client.put(key.clone(), "x", None).await.is_ok() {
                        let _ = tx.send(key.clone());
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    drop(tx);
    // Let some writes land, then take the leader down while writers keep going.
    eventually("20 acknowledged writes", Duration::from_secs(20), || {
        let n = cluster.members[leader].node().mvcc.revisions().unwrap().current;
        async move { (n > 20).then_some(()) }
    })
    .await;
    let old_leader = cluster.members[leader].node().id;
    cluster.members[leader].kill().await;
    let new_leader = cluster.wait_leader(Duration::from_secs(10)).await;
    assert_ne!(cluster.members[new_leader].node().id, old_leader, "a new leader took over");
    for w in writers {
        w.await.unwrap();
    }
    let mut acked = Vec::new();
    while let Some(k) = rx.recv().await {
        acked.push(k);
    }
    assert!(acked.len() >= 200, "writes continued after the failover: {} acknowledged", acked.len());
    let mut c = cluster.members[new_leader].client().await;
    let all = c.get("w", Some(GetOptions::new().with_prefix().with_keys_only())).await.unwrap();
    let stored: BTreeSet<Vec<u8>> = all.kvs().iter().map(|kv| kv.key().to_vec()).collect();
    for k in &acked {
        assert!(stored.contains(k.as_bytes()), "acknowledged write {k} was lost");
    }
}

async fn catch_up_after_restart(snapshot_count: u64, via_snapshot: bool) {
    let mut cluster = Cluster::start_with(3, |c| {
        c.snapshot_count = snapshot_count;
        c.snapshot_catchup_entries = 0;
    })
    .await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let lagging = (leader + 1) % 3;
    let lagging_last = cluster.members[lagging].node().raft.metrics().borrow().last_log_index.unwrap_or(0);
    cluster.members[lagging].kill().await;
    let live = (lagging + 1) % 3;
    let mut c = cluster.members[live].client().await;
    for i in 0..150 {
        c.put(format!("c{i:03}"), format!("{i}"), None).await.unwrap();
    }
    if via_snapshot {
        let leader_node = cluster.members[leader].node();
        eventually("the leader to purge the entries the member misses", Duration::from_secs(20), || {
            let purged = leader_node.raft.metrics().borrow().purged.map_or(0, |l| l.index);
            async move { (purged > lagging_last).then_some(()) }
        })
        .await;
    } else {
        let purged = cluster.members[leader].node().raft.metrics().borrow().purged.map_or(0, |l| l.index);
        assert_eq!(purged, 0, "no snapshot yet: the member catches up from the log");
    }
    cluster.members[lagging].start().await;
    let mut lc = cluster.members[lagging].client().await;
    eventually("the restarted member to have every key", Duration::from_secs(30), || {
        let mut lc = lc.clone();
        async move {
            let r = lc.get("c", Some(GetOptions::new().with_prefix().with_serializable())).await.ok()?;
            (r.count() == 150).then_some(())
        }
    })
    .await;
    assert_eq!(value(&mut lc, "c149", true).await.as_deref(), Some("149"));
    let revs = cluster.members[lagging].node().mvcc.revisions().unwrap();
    let leader_revs = cluster.members[live].node().mvcc.revisions().unwrap();
    assert_eq!(revs.current, leader_revs.current, "same revision everywhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_member_catches_up_from_the_log() {
    catch_up_after_restart(10_000, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_member_catches_up_from_a_snapshot() {
    // Snapshots every 20 entries, with the log purged right behind them, force a snapshot install.
    catch_up_after_restart(20, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_add_join_promote_and_remove() {
    let cluster = Cluster::start(3).await;
    let mut c = cluster.members[0].client().await;
    c.put("before-join", "1", None).await.unwrap();
    let (client_port, peer_port) = (common::free_port(), common::free_port());
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let added = c.member_add([peer_url.clone()], None).await.unwrap();
    let new_id = added.member().unwrap().id();
    assert_ne!(new_id, 0);

    let mut config = common::test_config("m3", client_port, peer_port);
    config.initial_cluster_token = cluster.token.clone();
    config.initial_cluster_state = ultracloud_chainfire::config::ClusterState::Existing;
    let mut initial: Vec<String> =
        cluster.members.iter().map(|m| format!("{}={}", m.name, m.config.listen_peer_urls[0])).collect();
    initial.push(format!("m3={peer_url}"));
    config.initial_cluster = initial.join(",");
    let dir = tempfile::tempdir().unwrap();
    let mut joiner = common::Member {
        name: "m3".into(),
        config,
        dir: dir.path().to_owned(),
        stop: tokio_util::sync::CancellationToken::new(),
        running: None,
    };
    joiner.start().await;
    assert_eq!(joiner.node().id, new_id, "the joiner learned its ID from the cluster");
    let mut jc = joiner.client().await;
    eventually("the joiner to be promoted and named", Duration::from_secs(20), || {
        let mut c = c.clone();
        async move {
            let list = c.member_list().await.ok()?;
            let m = list.members().iter().find(|m| m.id() == new_id)?;
            (!m.is_learner() && m.name() == "m3" && list.members().len() == 4).then_some(())
        }
    })
    .await;
    assert_eq!(value(&mut jc, "before-join", false).await.as_deref(), Some("1"));

    c.member_remove(new_id).await.unwrap();
    let list = c.member_list().await.unwrap();
    assert_eq!(list.members().len(), 3);
    assert!(!list.members().iter().any(|m| m.id() == new_id));
    joiner.kill().await;
    c.put("after-remove", "1", None).await.unwrap();
    let unknown = c.member_remove(new_id).await.unwrap_err();
    assert!(unknown.to_string().contains("member not found"), "{unknown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_on_a_follower_survives_a_leader_change() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let mut wc = cluster.members[follower].client().await;
    let mut stream = wc.watch("wl/", Some(WatchOptions::new().with_prefix())).await.unwrap();
    let mut c = cluster.members[other].client().await;
    for i in 0..10 {
        c.put(format!("wl/{i:02}"), "a", None).await.unwrap();
    }
    cluster.members[leader].kill().await;
    cluster.wait_leader(Duration::from_secs(10)).await;
    for i in 10..20 {
        loop {
            if c.put(format!("wl/{i:02}"), "b", None).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < 20 {
        let msg = tokio::time::timeout_at(deadline, stream.message()).await.expect("events within 20 s");
        let resp = msg.unwrap().expect("stream open");
        for e in resp.events() {
            let kv = e.kv().unwrap();
            seen.push((String::from_utf8_lossy(kv.key()).into_owned(), kv.mod_revision()));
        }
    }
    let keys: Vec<String> = seen.iter().map(|(k, _)| k.clone()).collect();
    let expected: Vec<String> = (0..20).map(|i| format!("wl/{i:02}")).collect();
    assert_eq!(keys, expected, "every event once, in order");
    assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "revisions increase");
}
