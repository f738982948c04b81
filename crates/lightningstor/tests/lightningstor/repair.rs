//! Repair workers of storage nodes on loopback ports: copies restored to a node that missed
//! them, handed-off copies moved home, nothing dropped while a holder is unreachable.

use bytes::Bytes;
use ultracloud_lightningstor::BlockId;
use ultracloud_lightningstor::blocks::BlockStore;
use ultracloud_lightningstor::client::NodeClient;
use ultracloud_lightningstor::data::{Cluster, StorageNode};
use ultracloud_lightningstor::layout::Member;
use ultracloud_lightningstor::repair::Repairer;

/// Storage nodes that know each other (`dead` extra members that never answer).
struct Nodes {
    _dirs: Vec<tempfile::TempDir>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    clients: Vec<NodeClient>,
    cluster: Cluster,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

async fn nodes(live: usize, dead: usize, copies: usize) -> Nodes {
    let mut listeners = Vec::new();
    let mut members = Vec::new();
    for i in 0..live {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        members.push(member(&format!("n{i}"), format!("http://{}", l.local_addr().unwrap())));
        listeners.push(l);
    }
    for i in 0..dead {
        let port = ultracloud_runtime::test_port::free_port();
        members.push(member(&format!("dead{i}"), format!("http://127.0.0.1:{port}")));
    }
    let mut dirs = Vec::new();
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path(), true).unwrap();
        let cluster = Cluster::new(members.clone(), copies, 1 << 20).unwrap();
        let repair = Repairer::new(&format!("n{i}"), cluster, store.clone());
        let router = ultracloud_lightningstor::node::router(store, Some(repair), 1 << 20, false);
        tasks.push(tokio::spawn(async move { axum::serve(listener, router).await.unwrap() }));
        clients.push(NodeClient::new(&members[i].url).unwrap());
        dirs.push(dir);
    }
    Nodes { _dirs: dirs, tasks, clients, cluster: Cluster::new(members, copies, 1 << 20).unwrap() }
}

fn member(name: &str, url: String) -> StorageNode {
    StorageNode { member: Member { id: name.into(), zone: String::new(), weight: 1 }, url }
}

fn index(name: &str) -> usize {
    name.trim_start_matches('n').parse().unwrap()
}

#[tokio::test]
async fn a_node_that_missed_writes_gets_its_copies_back() {
    let n = nodes(3, 0, 3).await;
    // Ten blocks written while n2 was away: only n0 and n1 have them.
    for i in 0..10u32 {
        let data = format!("written while n2 was down {i}").into_bytes();
        n.clients[0].put(data.clone()).await.unwrap();
        n.clients[1].put(data).await.unwrap();
    }
    assert_eq!(n.clients[2].status().await.unwrap().blocks, 0);
    let report = n.clients[0].repair().await.unwrap();
    assert_eq!((report.scanned, report.copied, report.dropped, report.deferred), (10, 10, 0, 0), "{report:?}");
    assert_eq!(n.clients[2].status().await.unwrap().blocks, 10);
    let again = n.clients[1].repair().await.unwrap();
    assert_eq!((again.copied, again.dropped), (0, 0), "nothing left to do: {again:?}");
    let status = n.clients[0].repair_status().await.unwrap();
    assert!(status.enabled && !status.running && status.passes == 1);
    assert_eq!(status.last.unwrap().copied, 10);
}

#[tokio::test]
async fn handed_off_copies_move_home_and_leave() {
    let n = nodes(4, 0, 2).await;
    // For each block, put it only on a node that is not one of its two holders (as a write
    // around failed holders would have).
    let mut placed = Vec::new();
    for i in 0..12u32 {
        let data = Bytes::from(format!("handed off {i}"));
        let id = BlockId::of(&data);
        let holders: Vec<usize> = n.cluster.holders(&id).into_iter().map(index).collect();
        let stranger = (0..4).find(|k| !holders.contains(k)).unwrap();
        n.clients[stranger].put(data.to_vec()).await.unwrap();
        placed.push((id, stranger, holders));
    }
    for k in 0..4 {
        n.clients[k].repair().await.unwrap();
    }
    for (id, stranger, holders) in placed {
        assert!(!n.clients[stranger].has(id).await.unwrap(), "{id} left {stranger}");
        for h in holders {
            assert!(n.clients[h].has(id).await.unwrap(), "{id} reached its holder n{h}");
        }
    }
}

#[tokio::test]
async fn nothing_is_dropped_while_a_holder_cannot_be_reached() {
    let n = nodes(2, 1, 3).await;
    let data = b"one copy only".to_vec();
    let id = n.clients[0].put(data).await.unwrap().id;
    let report = n.clients[0].repair().await.unwrap();
    assert_eq!((report.copied, report.deferred, report.dropped), (1, 1, 0), "{report:?}");
    assert!(report.errors.iter().any(|e| e.contains("dead0")), "{:?}", report.errors);
    assert!(n.clients[0].has(id).await.unwrap() && n.clients[1].has(id).await.unwrap());
}
