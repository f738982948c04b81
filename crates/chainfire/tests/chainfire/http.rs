//! Plain HTTP on the client URL, as etcd serves it: `/health` for scripts and load balancers,
//! the caller's routes beside it, a JSON 404 for anything else — and gRPC on the same port.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common;

/// `GET path` over HTTP/1.1 on a fresh connection: the status and the body.
async fn get(endpoint: &str, path: &str) -> (u16, String) {
    let addr = endpoint.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut answer)).await.unwrap().unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The JSON object in a (possibly chunked) HTTP/1.1 body.
fn json_in(body: &str) -> serde_json::Value {
    let start = body.find('{').unwrap_or(0);
    let end = body.rfind('}').map_or(body.len(), |e| e + 1);
    serde_json::from_str(&body[start..end]).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_grpc_share_the_client_port() {
    let mut cluster = common::Cluster::start(3).await;
    let endpoint = cluster.members[0].endpoint();
    let (status, body) = get(&endpoint, "/health").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_in(&body), serde_json::json!({"health": "true", "reason": ""}));
    let (status, body) = get(&endpoint, "/no-such-thing").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(json_in(&body)["error"]["code"], "not_found", "{body}");
    // gRPC on the same port.
    let mut client = cluster.members[0].client().await;
    client.put("k", "v", None).await.unwrap();

    // Without a quorum the member says why, as etcd does.
    for m in &mut cluster.members[1..] {
        m.kill().await;
    }
    let (status, body) = get(&endpoint, "/health").await;
    assert_eq!(status, 503, "{body}");
    let health = json_in(&body);
    assert_eq!(health["health"], "false", "{body}");
    let reason = health["reason"].as_str().unwrap();
    assert!(reason == "RAFT NO LEADER" || reason.starts_with("QGET ERROR"), "{body}");
}
