//! Crashes around the S3 gateway: a gateway killed in the middle of a PUT leaves the old object
//! whole (or none), never a torn one; a storage node killed between the parts of a multipart
//! upload leaves an upload that completes on the nodes left and reads back whole.

use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt;
use reqwest::Method;
use ultracloud_lightningstor::blocks::BlockStore;
use ultracloud_lightningstor::client::NodeClient;
use ultracloud_lightningstor::client::s3::{S3Client, S3Key};
use ultracloud_lightningstor::data::StorageNode;
use ultracloud_lightningstor::gateway::serve;
use ultracloud_lightningstor::layout::Member;

use crate::gateway::World;
use crate::process::Process;

/// A storage node in its own process (fsync on, 1 MiB blocks at most).
fn node(dir: std::path::PathBuf) -> Process {
    Process::spawn(move |listener| async move {
        let store = BlockStore::open(&dir, true).unwrap();
        let router = ultracloud_lightningstor::node::router(store, None, 1024 * 1024, false);
        let _ = axum::serve(listener, router).await;
    })
}

/// `size` bytes of pattern `seed` (period 256: every 1 MiB block of it is the same block).
fn bytes(seed: u8, size: usize) -> Bytes {
    Bytes::from((0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<_>>())
}

/// Blocks held by all the nodes together.
async fn blocks_held(nodes: &[StorageNode]) -> u64 {
    let mut n = 0;
    for s in nodes {
        n += NodeClient::new(&s.url).unwrap().status().await.map(|st| st.blocks).unwrap_or(0);
    }
    n
}

fn xml_field(xml: &str, field: &str) -> String {
    let start = xml.find(&format!("<{field}>")).unwrap() + field.len() + 2;
    let end = xml[start..].find(&format!("</{field}>")).unwrap() + start;
    xml[start..end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_gateways_and_nodes_leave_whole_objects_or_none() {
    let w = World::start().await;
    let acme = w.project_key("acme", "web").await;
    let key = S3Key { access_key_id: acme.0.clone(), secret_access_key: acme.1.clone() };
    let mut nodes = Vec::new();
    let mut members = Vec::new();
    for i in 0..3 {
        let p = node(w.s.dir.path().join(format!("crash-node{i}")));
        members.push(StorageNode {
            member: Member { id: format!("crash{i}"), zone: String::new(), weight: 1 },
            url: p.url(),
        });
        nodes.push(p);
    }
    // The observer: a gateway on this runtime over the same nodes, flaredb and iam.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let observer = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, w.gateway(members.clone()), tokio_util::sync::CancellationToken::new()));
    let obs = S3Client::new(&observer, key.clone()).unwrap();
    obs.create_bucket("crash").await.unwrap();
    let v1 = bytes(1, 3 << 20);
    obs.put_object("crash", "doc", v1.clone()).await.unwrap();

    // A gateway killed after 2 of 6 MiB of a PUT over `doc`, and of a PUT of a new key.
    for (target, seed) in [("doc", 10), ("fresh", 20)] {
        let service = w.gateway(members.clone());
        let mut doomed = Process::spawn(move |l| serve(l, service, tokio_util::sync::CancellationToken::new()));
        let client = S3Client::new(&doomed.url(), key.clone()).unwrap();
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let before = blocks_held(&members).await;
        let put = tokio::spawn(async move {
            client.put_object_stream("crash", target, reqwest::Body::wrap_stream(rx), 6 << 20).await
        });
        tx.send(Ok(bytes(seed, 1 << 20))).await.unwrap();
        tx.send(Ok(bytes(seed + 1, 1 << 20))).await.unwrap();
        tx.send(Ok(bytes(seed + 2, 1000))).await.unwrap();
        // Both full blocks are on the nodes (three copies each) before the kill.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while blocks_held(&members).await < before + 6 {
            if put.is_finished() {
                panic!("the PUT ended early: {:?}", put.await.unwrap());
            }
            if std::time::Instant::now() > deadline {
                for s in &members {
                    eprintln!("{}: {:?}", s.url, NodeClient::new(&s.url).unwrap().status().await);
                }
                panic!("the first blocks never landed (before {before})");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        doomed.kill();
        drop(tx);
        assert!(put.await.unwrap().is_err(), "a PUT through a killed gateway is not acknowledged");
        match target {
            "doc" => assert_eq!(obs.get_object("crash", "doc").await.unwrap(), v1, "the old object, whole"),
            _ => assert_eq!(obs.get_object("crash", "fresh").await.unwrap_err().code(), "NoSuchKey", "no object"),
        }
    }

    // A multipart upload with a storage node killed between its parts.
    let created = obs.request(Method::POST, "crash", Some("mp"), &[("uploads", "")], Bytes::new()).await.unwrap();
    let upload = xml_field(&created.text().await.unwrap(), "UploadId");
    let (p1, p2) = (bytes(5, 5 << 20), bytes(6, 1 << 20));
    let part = |n: &'static str, body: Bytes| {
        let (obs, upload) = (obs.clone(), upload.clone());
        async move {
            let r = obs
                .request(Method::PUT, "crash", Some("mp"), &[("partNumber", n), ("uploadId", &upload)], body)
                .await
                .unwrap();
            r.headers()["etag"].to_str().unwrap().to_owned()
        }
    };
    let e1 = part("1", p1.clone()).await;
    nodes[2].kill();
    let e2 = part("2", p2.clone()).await;
    let list = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{e1}</ETag></Part>\
         <Part><PartNumber>2</PartNumber><ETag>{e2}</ETag></Part></CompleteMultipartUpload>"
    );
    obs.request(Method::POST, "crash", Some("mp"), &[("uploadId", &upload)], Bytes::from(list)).await.unwrap();
    let got = obs.get_object("crash", "mp").await.unwrap();
    assert_eq!(got, [p1, p2].concat(), "the upload reads back whole from the two nodes left");
    assert_eq!(obs.get_object("crash", "doc").await.unwrap(), v1);
}
