//! The platform client: kept-alive leases, resuming watches, leader election.

use crate::common;

use std::time::Duration;

use common::Cluster;
use tokio_stream::StreamExt;
use ultracloud_chainfire::client::Client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_keep_alive_holds_keys_past_their_ttl_and_revoke_deletes_them() {
    let cluster = Cluster::start(1).await;
    let client = Client::connect(&cluster.endpoints()).unwrap();
    let lease = client.lease(2).await.unwrap();
    client.put("held", "1", lease.id).await.unwrap();
    // Well past the TTL, the keep-alives hold the key.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(client.get("held").await.unwrap().is_some());
    lease.revoke().await.unwrap();
    assert!(client.get("held").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_across_a_member_restart_without_loss_or_repeat() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let watched = (leader + 1) % 3;
    // The watch talks to one member only, which we restart mid-stream.
    let client = Client::connect(&[cluster.members[watched].endpoint()]).unwrap();
    let writer = Client::connect(&[cluster.members[leader].endpoint()]).unwrap();
    // The watch starts at the first write's revision: "from now" (0) would race the write, as
    // the watch is made by a task of its own (seen failing under CI load).
    let start = writer.put("r/00", "x", 0).await.unwrap();
    let mut events = Box::pin(client.watch("r/", ultracloud_chainfire::client::prefix_end(b"r/"), start));
    let first = tokio::time::timeout(Duration::from_secs(10), events.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.kv.unwrap().key, b"r/00");
    for i in 1..10 {
        writer.put(format!("r/{i:02}"), "x", 0).await.unwrap();
    }
    cluster.members[watched].kill().await;
    for i in 10..20 {
        writer.put(format!("r/{i:02}"), "x", 0).await.unwrap();
    }
    cluster.members[watched].start().await;
    let mut keys = vec![];
    while keys.len() < 19 {
        let e = tokio::time::timeout(Duration::from_secs(20), events.next()).await.unwrap().unwrap().unwrap();
        keys.push(String::from_utf8(e.kv.unwrap().key).unwrap());
    }
    let expected: Vec<String> = (1..20).map(|i| format!("r/{i:02}")).collect();
    assert_eq!(keys, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_has_one_leader_and_hands_over() {
    let cluster = Cluster::start(1).await;
    let a = Client::connect(&cluster.endpoints()).unwrap();
    let b = Client::connect(&cluster.endpoints()).unwrap();
    let lease_a = a.lease(5).await.unwrap();
    let lease_b = b.lease(5).await.unwrap();
    let lead_a = a.campaign("scheduler", "a", &lease_a).await.unwrap();
    let campaign_b = tokio::spawn(async move {
        let leadership = b.campaign("scheduler", "b", &lease_b).await.unwrap();
        (leadership, lease_b)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!campaign_b.is_finished(), "b must wait while a leads");
    a.resign(lead_a.clone()).await.unwrap();
    let (lead_b, _lease_b) =
        tokio::time::timeout(Duration::from_secs(10), campaign_b).await.expect("b leads after a resigns").unwrap();
    assert!(lead_b.revision > lead_a.revision, "fencing tokens increase");
}
