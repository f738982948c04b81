//! The data path over three and four storage nodes on loopback ports: objects as streams of
//! blocks, any range read back, writes around a dead node, reads around a rotten copy.

use bytes::Bytes;
use ultracloud_lightningstor::data::{Cluster, DataError, StorageNode};
use ultracloud_lightningstor::layout::Member;

use crate::node::{Served, serve};

fn node(name: &str, url: String) -> StorageNode {
    StorageNode { member: Member { id: name.into(), zone: String::new(), weight: 1 }, url }
}

/// A URL where nothing listens (a node that is down).
fn dead_url() -> String {
    format!("http://127.0.0.1:{}", ultracloud_runtime::test_port::free_port())
}

fn body_of(data: &[u8], chunk: usize) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        data.chunks(chunk).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    futures::stream::iter(chunks)
}

async fn read_all(
    cluster: &Cluster,
    blocks: &[ultracloud_lightningstor::data::BlockRef],
    start: u64,
    end: u64,
) -> Vec<u8> {
    use futures::StreamExt;
    let mut out = Vec::new();
    let mut s = std::pin::pin!(cluster.read_range(blocks.to_vec(), start, end));
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[tokio::test]
async fn objects_stream_in_blocks_and_any_range_reads_back() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut served: Vec<Served> = Vec::new();
    for d in &dirs {
        served.push(serve(d.path()).await);
    }
    let nodes = served.iter().enumerate().map(|(i, s)| node(&format!("n{i}"), s.url())).collect();
    let cluster = Cluster::new(nodes, 3, 64 * 1024).unwrap();

    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let blocks = cluster.write_stream(body_of(&data, 10_000)).await.unwrap();
    assert_eq!(blocks.len(), 16, "1,000,000 bytes in 64 KiB blocks");
    assert_eq!(blocks.iter().map(|b| b.len).sum::<u64>(), 1_000_000);
    for s in &served {
        assert_eq!(s.client().status().await.unwrap().blocks, 16, "three copies: every node holds every block");
    }
    let len = data.len() as u64;
    for (start, end) in [(0, len), (100, 200), (65_000, 70_000), (len - 1, len), (0, 0), (131_072, 196_608)] {
        let got = read_all(&cluster, &blocks, start, end).await;
        assert_eq!(got, data[start as usize..end as usize], "range {start}..{end}");
    }
    let empty = cluster.write_stream(body_of(&[], 1)).await.unwrap();
    assert!(empty.is_empty(), "an empty object has no blocks");
    assert!(read_all(&cluster, &empty, 0, 0).await.is_empty());
}

#[tokio::test]
async fn writes_go_around_a_dead_node_and_reads_around_a_rotten_copy() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut served: Vec<Served> = Vec::new();
    for d in &dirs {
        served.push(serve(d.path()).await);
    }
    let mut nodes: Vec<StorageNode> = served.iter().enumerate().map(|(i, s)| node(&format!("n{i}"), s.url())).collect();
    nodes.push(node("down", dead_url()));
    let cluster = Cluster::new(nodes, 3, 4096).unwrap();

    let mut written = Vec::new();
    for i in 0..24u32 {
        let data = Bytes::from(format!("object {i}").repeat(50));
        let w = cluster.write_block(data.clone()).await.unwrap();
        assert_eq!(w.on.len(), 3, "three copies even with a node down: {:?}", w.on);
        assert!(!w.on.contains(&"down".to_owned()));
        written.push((w.id, data));
    }
    // Rot one copy of every block on n0: every read still returns the right bytes.
    for (id, _) in &written {
        let name = id.to_string();
        std::fs::write(dirs[0].path().join("blocks").join(&name[..2]).join(&name), b"rot").unwrap();
    }
    for (id, data) in &written {
        assert_eq!(&cluster.read_block(*id).await.unwrap(), data);
    }

    // Two of three nodes down: a majority of copies is impossible, and the error says why.
    let lonely =
        Cluster::new(vec![node("a", served[1].url()), node("b", dead_url()), node("c", dead_url())], 3, 4096).unwrap();
    match lonely.write_block(Bytes::from_static(b"nowhere to go")).await {
        Err(DataError::TooFewCopies { written, needed, errors, .. }) => {
            assert_eq!((written, needed), (1, 2));
            assert_eq!(errors.len(), 2, "{errors:?}");
        }
        other => panic!("expected TooFewCopies, got {other:?}"),
    }
    let missing = ultracloud_lightningstor::BlockId::of(b"never written");
    assert!(matches!(lonely.read_block(missing).await, Err(DataError::Unreadable { .. })));
}
