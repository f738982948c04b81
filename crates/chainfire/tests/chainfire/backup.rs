//! Backup with the Maintenance snapshot API, restore into a new cluster.

use crate::common;

use tokio_stream::StreamExt;
use ultracloud_chainfire::backup::{RestoreError, restore};
use ultracloud_chainfire::client::Client;
use ultracloud_chainfire::pb::etcdserverpb::SnapshotRequest;
use ultracloud_chainfire::pb::etcdserverpb::maintenance_client::MaintenanceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_restore_into_a_new_cluster_keeps_keys_and_revisions() {
    let mut old = common::Cluster::start(1).await;
    let client = Client::connect(&old.endpoints()).unwrap();
    for i in 0..50 {
        client.put(format!("b/{i:02}"), format!("{i}"), 0).await.unwrap();
    }
    client.delete("b/00").await.unwrap();
    let revision = client.put("b/last", "x", 0).await.unwrap();

    let channel = tonic::transport::Endpoint::from_shared(old.members[0].endpoint()).unwrap().connect().await.unwrap();
    let mut stream = MaintenanceClient::new(channel).snapshot(SnapshotRequest {}).await.unwrap().into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend(chunk.unwrap().blob);
    }
    old.members[0].kill().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.db");
    std::fs::write(&file, &bytes).unwrap();

    // A damaged file is refused.
    let mut damaged = bytes.clone();
    damaged[10] ^= 0xff;
    std::fs::write(dir.path().join("bad.db"), &damaged).unwrap();
    let err = restore(&dir.path().join("bad.db"), &dir.path().join("never")).unwrap_err();
    assert!(matches!(err, RestoreError::Corrupt { .. }), "{err}");

    // Restore into the data dir of a fresh one-member cluster, then start it.
    let mut new = common::Cluster::start_with(1, |_| {}).await;
    new.members[0].kill().await;
    let data = new.members[0].dir.clone();
    let err = restore(&file, &data).unwrap_err();
    assert!(matches!(err, RestoreError::NotEmpty(_)), "a used data dir is refused: {err}");
    std::fs::remove_dir_all(&data).unwrap();
    let revs = restore(&file, &data).unwrap();
    assert_eq!(revs.current, revision);
    new.members[0].start().await;
    new.wait_leader(std::time::Duration::from_secs(10)).await;

    let restored = Client::connect(&new.endpoints()).unwrap();
    let (kvs, _) = restored.get_prefix("b/").await.unwrap();
    assert_eq!(kvs.len(), 50, "49 numbered keys and b/last");
    assert!(restored.get("b/00").await.unwrap().is_none(), "deleted keys stay deleted");
    assert_eq!(restored.get("b/07").await.unwrap().unwrap().value, b"7");
    let next = restored.put("b/new", "y", 0).await.unwrap();
    assert_eq!(next, revision + 1, "revisions continue from the backup");
}
