//! Garbage collection against the real gateway, flaredb and three storage nodes: after
//! deletes, overwrites, a copy whose source is deleted, an aborted upload and an orphaned
//! record, a pass leaves on every node exactly the blocks that objects and uploads in
//! progress still reference — and every object still reads back whole.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use ultracloud_lightningstor::BlockId;
use ultracloud_lightningstor::client::NodeClient;
use ultracloud_lightningstor::client::s3::{S3Client, S3Key};
use ultracloud_lightningstor::data::Cluster;
use ultracloud_lightningstor::gateway::gc::{Collector, Pass};
use ultracloud_lightningstor::gateway::meta::ObjectMeta;

use crate::gateway::{World, aws_missing, aws_ok};

/// The gateway's block size in these tests.
const BLOCK: usize = 1024 * 1024;

/// `len` pseudo-random bytes from `seed` (no two blocks of any object alike).
fn noise(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// The names of `data`'s blocks.
fn blocks_of(data: &[u8]) -> Vec<BlockId> {
    data.chunks(BLOCK).map(BlockId::of).collect()
}

async fn held(node: &NodeClient) -> BTreeSet<BlockId> {
    node.list(None, 10_000).await.unwrap().items.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_keeps_exactly_the_referenced_blocks_and_every_object_reads_back() {
    if aws_missing() {
        return;
    }
    let w = World::start().await;
    let acme = w.project_key("acme", "web").await;
    let s3 = S3Client::new(&w.s3, S3Key { access_key_id: acme.0.clone(), secret_access_key: acme.1.clone() }).unwrap();
    s3.create_bucket("gcb").await.unwrap();

    let keep = noise(1, 2 * BLOCK + 1000);
    let gone = noise(2, BLOCK + 10);
    let (old, new) = (noise(3, BLOCK + 20), noise(4, BLOCK / 2));
    let source = noise(5, BLOCK + 30);
    s3.put_object("gcb", "keep", keep.clone()).await.unwrap();
    s3.put_object("gcb", "gone", gone.clone()).await.unwrap();
    s3.delete_object("gcb", "gone").await.unwrap();
    s3.put_object("gcb", "over", old.clone()).await.unwrap();
    s3.put_object("gcb", "over", new.clone()).await.unwrap();
    // A copy shares its source's blocks: deleting the source must not free them.
    s3.put_object("gcb", "source", source.clone()).await.unwrap();
    aws_ok(&w, &acme, &["s3api", "copy-object", "--bucket", "gcb", "--key", "copy", "--copy-source", "gcb/source"]);
    s3.delete_object("gcb", "source").await.unwrap();

    // Under versioning, an overwritten version keeps its blocks until it is deleted.
    let (older, newer) = (noise(9, 700), noise(10, 800));
    aws_ok(&w, &acme, &["s3api", "create-bucket", "--bucket", "gcv"]);
    let on = ["s3api", "put-bucket-versioning", "--bucket", "gcv", "--versioning-configuration", "Status=Enabled"];
    aws_ok(&w, &acme, &on);
    s3.put_object("gcv", "v", older.clone()).await.unwrap();
    s3.put_object("gcv", "v", newer.clone()).await.unwrap();

    // An aborted upload's part is garbage; a part of an upload in progress is not.
    let dir = tempfile::tempdir().unwrap();
    let (aborted_part, open_part) = (noise(6, 1000), noise(7, 2000));
    for (name, part) in [("aborted", &aborted_part), ("open", &open_part)] {
        let created = aws_ok(&w, &acme, &["s3api", "create-multipart-upload", "--bucket", "gcb", "--key", name]);
        let upload: serde_json::Value = serde_json::from_str(&created).unwrap();
        let id = upload["UploadId"].as_str().unwrap().to_owned();
        let file = dir.path().join(name);
        std::fs::write(&file, part).unwrap();
        let file = file.to_str().unwrap();
        let ids = ["--bucket", "gcb", "--key", name, "--upload-id", &id];
        aws_ok(&w, &acme, &[&["s3api", "upload-part", "--part-number", "1", "--body", file][..], &ids].concat());
        if name == "aborted" {
            aws_ok(&w, &acme, &[&["s3api", "abort-multipart-upload"][..], &ids].concat());
        }
    }

    // A record left under a bucket ID that no longer exists (a PUT that raced the bucket's
    // deletion), pointing at a block the nodes hold: invisible, so both are garbage.
    let orphan_data = noise(8, 500);
    let nodes: Vec<NodeClient> = w.members.iter().map(|m| NodeClient::new(&m.url).unwrap()).collect();
    for n in &nodes {
        n.put(orphan_data.to_vec()).await.unwrap();
    }
    let orphan = ObjectMeta {
        key: "x".into(),
        size: 500,
        etag: "0".repeat(32),
        content_type: None,
        metadata: Default::default(),
        modified_ms: 0,
        blocks: vec![ultracloud_lightningstor::client::BlockRef { id: BlockId::of(&orphan_data), len: 500 }],
        tags: Default::default(),
        version_id: None,
        delete_marker: false,
        checksum: None,
    };
    let db = ultracloud_flaredb::Client::new(vec![w.s.db.to_string()]).unwrap();
    db.put(b"lightningstor/object/bgone/x", &serde_json::to_vec(&orphan).unwrap()).await.unwrap();

    let live: BTreeSet<BlockId> =
        [&keep, &new, &source, &open_part, &older, &newer].iter().flat_map(|d| blocks_of(d)).collect();
    let garbage: BTreeSet<BlockId> =
        [&gone, &old, &aborted_part, &orphan_data].iter().flat_map(|d| blocks_of(d)).collect();
    for n in &nodes {
        let before = held(n).await;
        assert!(before.is_superset(&live) && before.is_superset(&garbage), "three copies of everything so far");
    }

    let cluster = std::sync::Arc::new(Cluster::new(w.members.clone(), 3, BLOCK).unwrap());
    // With an hour's grace nothing this young goes: an in-flight PUT's blocks look just so.
    let patient = Collector::new(db.clone(), cluster.clone(), Duration::from_secs(3600));
    let Pass::Ran(first) = patient.pass().await.unwrap() else { panic!("no other collector runs") };
    assert_eq!((first.deleted, first.kept_recent), (0, 3 * garbage.len() as u64), "{first:?}");
    assert_eq!(first.orphans_removed, 1, "{first:?}");
    assert!(db.get(b"lightningstor/object/bgone/x").await.unwrap().is_none(), "the orphan record went");

    // Another collector's live lease makes a pass wait its turn.
    let lease = serde_json::json!({"holder": "someone-else", "until_ms": ultracloud_runtime::clock::now_ms() + 60_000});
    db.put(b"lightningstor/gc/lease", &serde_json::to_vec(&lease).unwrap()).await.unwrap();
    let eager = Collector::new(db.clone(), cluster, Duration::ZERO);
    assert!(matches!(eager.pass().await.unwrap(), Pass::Busy { holder, .. } if holder == "someone-else"));
    db.delete(b"lightningstor/gc/lease").await.unwrap();

    tokio::time::sleep(Duration::from_millis(20)).await;
    let Pass::Ran(second) = eager.pass().await.unwrap() else { panic!("the lease is free") };
    assert_eq!(
        (second.deleted, second.kept_recent, second.nodes_swept),
        (3 * garbage.len() as u64, 0, 3),
        "{second:?}"
    );
    assert_eq!(second.live_blocks, live.len() as u64, "{second:?}");
    assert!(second.errors.is_empty(), "{second:?}");
    for n in &nodes {
        assert_eq!(held(n).await, live, "each node keeps exactly the referenced blocks");
    }
    assert_eq!(s3.get_object("gcb", "keep").await.unwrap(), keep);
    assert_eq!(s3.get_object("gcb", "over").await.unwrap(), new);
    assert_eq!(s3.get_object("gcb", "copy").await.unwrap(), source, "the copy outlived its source");
    assert_eq!(s3.get_object("gcv", "v").await.unwrap(), newer);
    assert_eq!(second.versions, 1, "the older version was marked: {second:?}");
    assert_eq!(Collector::last(&db).await.unwrap(), Some(second), "the last report is kept for operators");
}
