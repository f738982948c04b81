//! One storage node on a loopback port: blocks in and out, refusals, rot, restart.

use std::net::SocketAddr;
use std::path::Path;

use ultracloud_lightningstor::BlockId;
use ultracloud_lightningstor::blocks::BlockStore;
use ultracloud_lightningstor::client::NodeClient;

/// A storage node served on a loopback port; stopped when dropped.
pub struct Served {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> NodeClient {
        NodeClient::new(&self.url()).unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves a storage node on `dir` (fsync on, 1 MiB blocks at most).
pub async fn serve(dir: &Path) -> Served {
    let store = BlockStore::open(dir, true).unwrap();
    let router = ultracloud_lightningstor::node::router(store, None, 1024 * 1024, false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Served { addr, task }
}

#[tokio::test]
async fn blocks_round_trip_and_every_refusal_names_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path()).await;
    let (addr, node) = (served.addr, served.client());

    let data = vec![7u8; 300_000];
    let id = BlockId::of(&data);
    let stored = node.put(data.clone()).await.unwrap();
    assert!(stored.created);
    assert_eq!(stored.id, id);
    assert!(!node.put(data.clone()).await.unwrap().created, "the same bytes twice: stored once");
    assert_eq!(node.get(id).await.unwrap(), Some(data.clone()));
    assert!(node.has(id).await.unwrap());
    let status = node.status().await.unwrap();
    assert_eq!((status.blocks, status.bytes, status.fsync), (1, 300_000, true));

    // Raw HTTP for what the typed client never sends.
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{addr}{p}");
    let wrong = http.put(url(&format!("/v1/blocks/{}", BlockId::of(b"x")))).body(data.clone()).send().await.unwrap();
    assert_eq!(wrong.status(), 400);
    let body = wrong.text().await.unwrap();
    assert!(body.contains("block_mismatch") && body.contains("BLAKE3"), "{body}");
    let bad_name = http.get(url("/v1/blocks/not-a-hash")).send().await.unwrap();
    assert_eq!(bad_name.status(), 400);
    assert!(bad_name.text().await.unwrap().contains("64 hex digits"));
    let too_big = vec![1u8; 1024 * 1024 + 1];
    let big = http.put(url(&format!("/v1/blocks/{}", BlockId::of(&too_big)))).body(too_big).send().await.unwrap();
    assert_eq!(big.status(), 413);
    let bad_limit = http.get(url("/v1/blocks?limit=0")).send().await.unwrap();
    assert_eq!(bad_limit.status(), 400);
    assert!(bad_limit.text().await.unwrap().contains("limit 0"));
    let unknown = http.get(url("/v1/blocks?after=zz&limit=5")).send().await.unwrap();
    assert_eq!(unknown.status(), 400);

    // A missing block is absent, not an error; deleting it twice says so.
    let absent = BlockId::of(b"never stored");
    assert_eq!(node.get(absent).await.unwrap(), None);
    assert!(!node.has(absent).await.unwrap());
    assert!(node.delete(id).await.unwrap());
    assert!(!node.delete(id).await.unwrap());
    assert_eq!(node.status().await.unwrap().blocks, 0);
}

#[tokio::test]
async fn rot_is_refused_set_aside_and_found_by_scrub_and_blocks_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<BlockId> = {
        let served = serve(dir.path()).await;
        let node = served.client();
        let mut ids = Vec::new();
        for i in 0..20u32 {
            ids.push(node.put(format!("block number {i}").into_bytes()).await.unwrap().id);
        }
        ids
    };
    // A new process on the same directory (the old one's listener is gone).
    let served = serve(dir.path()).await;
    let node = served.client();
    assert_eq!(node.status().await.unwrap().blocks, 20, "counted on open");
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = node.list(after, 6).await.unwrap();
        listed.extend(page.items);
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(listed, sorted);

    // Flip a byte of one block on disk: a read refuses it, the next read finds nothing.
    let rotten = ids[4].to_string();
    let path = dir.path().join("blocks").join(&rotten[..2]).join(&rotten);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = node.get(ids[4]).await.unwrap_err().to_string();
    assert!(err.contains("corrupt"), "{err}");
    assert_eq!(node.get(ids[4]).await.unwrap(), None);
    // And a scrub finds the next one.
    let rotten = ids[9].to_string();
    std::fs::write(dir.path().join("blocks").join(&rotten[..2]).join(&rotten), b"rot").unwrap();
    let report = node.scrub().await.unwrap();
    assert_eq!((report.checked, report.corrupt), (19, vec![ids[9]]));
    let status = node.status().await.unwrap();
    assert_eq!((status.blocks, status.corrupt_found), (18, 2));
}
