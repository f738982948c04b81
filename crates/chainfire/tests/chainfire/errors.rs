//! Bad requests get etcd's gRPC errors, and malformed traffic on the client port (garbage
//! bytes, broken HTTP/2, broken gRPC framing) never takes the server down.

use crate::common;

use std::time::{Duration, Instant};

use common::{assert_status, grpc_status};
use etcd_client::{Client, Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;
use ultracloud_chainfire::pb::etcdserverpb::{RangeRequest, RangeResponse};

const MIB: usize = 1024 * 1024;

/// The server still reads and writes: a put, then a get of it.
async fn still_serving(c: &mut Client, key: &str) {
    let rev = c.put(key, "alive", None).await.unwrap().header().unwrap().revision();
    let got = c.get(key, None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"alive");
    assert_eq!(got.kvs()[0].mod_revision(), rev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let before = c.put("small", "v", None).await.unwrap().header().unwrap().revision();

    // Above max_request_bytes (1.5 MiB) but within the gRPC limit: etcd's own error.
    let big = vec![b'x'; 1536 * 1024 + 100];
    assert_status(c.put("big", big.clone(), None).await, Code::InvalidArgument, "etcdserver: request is too large");
    let txn = Txn::new().and_then([TxnOp::put("big", big, None)]);
    assert_status(c.txn(txn).await, Code::InvalidArgument, "etcdserver: request is too large");
    // Just below the limit is fine.
    let fits = vec![b'y'; 1536 * 1024 - 1024];
    c.put("fits", fits.clone(), None).await.unwrap();
    assert_eq!(c.get("fits", None).await.unwrap().kvs()[0].value(), &fits[..]);

    // Above the gRPC message limit (max_request_bytes + 512 KiB): a gRPC error, not a crash.
    for size in [2 * MIB + 1024, 3 * MIB] {
        let err = c.put("huge", vec![b'z'; size], None).await.unwrap_err();
        let status = grpc_status(&err);
        assert!(
            matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
            "size {size}: unexpected status {status:?}"
        );
    }
    assert!(c.get("big", None).await.unwrap().kvs().is_empty());
    assert!(c.get("huge", None).await.unwrap().kvs().is_empty());
    let rev = c.get("small", None).await.unwrap().header().unwrap().revision();
    assert_eq!(rev, before + 1, "only the fitting put was written");
    still_serving(&mut c, "after-oversized").await;
    // A fresh connection works too.
    let mut fresh = cluster.members[0].client().await;
    still_serving(&mut fresh, "after-oversized-fresh").await;
}

/// A range without a limit whose answer would pass `MAX_RANGE_RESPONSE_BYTES` is refused with
/// a clear error (rather than loaded whole into memory), and the same range with a limit pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlimited_range_larger_than_one_answer_is_refused() {
    use ultracloud_chainfire::mvcc::range::MAX_RANGE_RESPONSE_BYTES;
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let value = vec![b'v'; MIB];
    let n = MAX_RANGE_RESPONSE_BYTES / MIB + 1;
    for i in 0..n {
        c.put(format!("wide/{i:03}"), value.clone(), None).await.unwrap();
    }
    let everything = GetOptions::new().with_prefix();
    assert_status(
        c.get("wide/", Some(everything)).await,
        Code::ResourceExhausted,
        "etcdserver: range response is too large; ask with a limit",
    );
    let page = c.get("wide/", Some(GetOptions::new().with_prefix().with_limit(3))).await.unwrap();
    assert_eq!(page.kvs().len(), 3);
    assert!(page.more());
    assert_eq!(page.count(), n as i64);
    let keys = c.get("wide/", Some(GetOptions::new().with_prefix().with_keys_only())).await.unwrap();
    assert_eq!(keys.kvs().len(), n, "keys alone fit in one answer");
    still_serving(&mut c, "after-wide").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_keys_are_rejected() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    const MSG: &str = "etcdserver: key is not provided";
    assert_status(c.put("", "v", None).await, Code::InvalidArgument, MSG);
    assert_status(c.get("", None).await, Code::InvalidArgument, MSG);
    assert_status(c.delete("", None).await, Code::InvalidArgument, MSG);
    assert_status(c.txn(Txn::new().and_then([TxnOp::put("", "v", None)])).await, Code::InvalidArgument, MSG);
    assert_status(c.txn(Txn::new().and_then([TxnOp::get("", None)])).await, Code::InvalidArgument, MSG);
    assert_status(c.txn(Txn::new().or_else([TxnOp::delete("", None)])).await, Code::InvalidArgument, MSG);
    assert_status(
        c.txn(Txn::new().when([Compare::version("", CompareOp::Equal, 0)])).await,
        Code::InvalidArgument,
        MSG,
    );
    // A watch on no key is created and canceled at once with the reason.
    let mut w = c.watch("", None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let canceled = loop {
        assert!(Instant::now() < deadline, "no cancellation of the empty-key watch");
        let resp = tokio::time::timeout(Duration::from_secs(10), w.message()).await.unwrap().unwrap().unwrap();
        if resp.canceled() {
            break resp;
        }
    };
    assert_eq!(canceled.cancel_reason(), MSG);
    assert_eq!(c.get("x", None).await.unwrap().header().unwrap().revision(), 1, "nothing was written");
    // All keys (key "\0", range end "\0") is not an empty key.
    c.put("k", "v", None).await.unwrap();
    assert_eq!(c.get("", Some(GetOptions::new().with_all_keys())).await.unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_limits_and_duplicate_keys() {
    let cluster = common::Cluster::start(1).await;
    let mut c = cluster.members[0].client().await;
    let puts = |n: usize| (0..n).map(|i| TxnOp::put(format!("t/{i:03}"), "v", None)).collect::<Vec<_>>();

    const TOO_MANY: &str = "etcdserver: too many operations in txn request";
    assert_status(c.txn(Txn::new().and_then(puts(129))).await, Code::InvalidArgument, TOO_MANY);
    assert_status(c.txn(Txn::new().or_else(puts(200))).await, Code::InvalidArgument, TOO_MANY);
    let compares: Vec<Compare> = (0..129).map(|i| Compare::version(format!("c{i}"), CompareOp::Equal, 0)).collect();
    assert_status(c.txn(Txn::new().when(compares)).await, Code::InvalidArgument, TOO_MANY);
    assert!(c.get("t/", Some(GetOptions::new().with_prefix())).await.unwrap().kvs().is_empty());
    // Exactly 128 is allowed, and writes all in one revision.
    let r = c.txn(Txn::new().and_then(puts(128))).await.unwrap();
    let rev = r.header().unwrap().revision();
    let all = c.get("t/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(all.count(), 128);
    assert!(all.kvs().iter().all(|kv| kv.mod_revision() == rev));

    const DUP: &str = "etcdserver: duplicate key given in txn request";
    let twice = Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]);
    assert_status(c.txn(twice).await, Code::InvalidArgument, DUP);
    let put_and_delete = Txn::new()
        .and_then([TxnOp::put("d/x", "1", None), TxnOp::delete("d/", Some(DeleteOptions::new().with_prefix()))]);
    assert_status(c.txn(put_and_delete).await, Code::InvalidArgument, DUP);
    let nested = Txn::new()
        .and_then([TxnOp::put("d", "1", None), TxnOp::txn(Txn::new().and_then([TxnOp::put("d", "2", None)]))]);
    assert_status(c.txn(nested).await, Code::InvalidArgument, DUP);
    assert!(c.get("d", Some(GetOptions::new().with_prefix())).await.unwrap().kvs().is_empty(), "nothing written");
    assert_eq!(c.get("d", None).await.unwrap().header().unwrap().revision(), rev);

    // The same key in different branches, or put and read, is fine.
    let branches = Txn::new()
        .when([Compare::version("d", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("d", "then", None), TxnOp::get("d", None)])
        .or_else([TxnOp::put("d", "else", None)]);
    assert!(c.txn(branches).await.unwrap().succeeded());
    let two_deletes = Txn::new().and_then([TxnOp::delete("d", None), TxnOp::delete("d", None)]);
    assert!(c.txn(two_deletes).await.unwrap().succeeded(), "deleting twice is not a duplicate write");
    still_serving(&mut c, "after-txn-errors").await;
}

/// Reads whatever the server sends until it closes the connection or `wait` passes.
async fn drain(stream: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

fn client_addr(cluster: &common::Cluster) -> std::net::SocketAddr {
    cluster.members[0].running.as_ref().unwrap().client_addrs[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_client_port_is_survived() {
    let cluster = common::Cluster::start(1).await;
    let addr = client_addr(&cluster);
    let mut c = cluster.members[0].client().await;
    still_serving(&mut c, "before").await;

    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let payloads: Vec<Vec<u8>> = vec![
        random(64),
        random(70_000),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".iter().copied().chain(random(512)).collect(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\x09\x00\x00\x00\x00\x01".to_vec(),
        vec![0u8; 4096],
    ];
    let mut closed = 0;
    for payload in &payloads {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // The server may close before reading everything; a failed write is fine.
        let _ = s.write_all(payload).await;
        let _ = s.flush().await;
        let (_, was_closed) = drain(&mut s, Duration::from_secs(5)).await;
        closed += usize::from(was_closed);
        still_serving(&mut c, "between-garbage").await;
    }
    assert_eq!(closed, payloads.len(), "the server hangs up on garbage");
    // Plain HTTP is answered (as etcd does: /health, /metrics), with a JSON 404 here.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let (answer, was_closed) = drain(&mut s, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(was_closed && answer.starts_with("HTTP/1.1 404"), "{answer}");

    // Many connections at once that send half a preface and hang up.
    let mut tasks = Vec::new();
    for i in 0..50 {
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let _ = s.write_all(&b"PRI * HTTP/2.0\r\n"[..(i % 16) + 1]).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    still_serving(&mut c, "after-garbage").await;
    let mut fresh = cluster.members[0].client().await;
    still_serving(&mut fresh, "after-garbage-fresh").await;
}

// --- a minimal hand-written HTTP/2 client, to send what no real client would -----------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK string literal without Huffman coding (short strings only).
fn hpack_str(s: &str) -> Vec<u8> {
    assert!(s.len() < 127);
    let mut out = vec![u8::try_from(s.len()).unwrap()];
    out.extend_from_slice(s.as_bytes());
    out
}

/// The request headers of a gRPC call to `path`.
fn grpc_headers(path: &str, authority: &str) -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http (static table)
    block.push(0x04); // :path, literal without indexing, name from the static table
    block.extend(hpack_str(path));
    block.push(0x01); // :authority
    block.extend(hpack_str(authority));
    for (name, value) in [("content-type", "application/grpc"), ("te", "trailers")] {
        block.push(0x00); // literal without indexing, new name
        block.extend(hpack_str(name));
        block.extend(hpack_str(value));
    }
    block
}

/// What the server answered on stream 1.
#[derive(Debug, Default)]
struct Answer {
    data: Vec<u8>,
    ended: bool,
    reset: bool,
    goaway: bool,
}

/// Sends `frames` after the preface and our settings; collects the answer on stream 1.
async fn exchange(addr: std::net::SocketAddr, frames: &[Vec<u8>]) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    for f in frames {
        out.extend_from_slice(f);
    }
    s.write_all(&out).await.unwrap();
    let mut answer = Answer::default();
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            match (kind, stream) {
                (SETTINGS, 0) if flags & ACK == 0 => {
                    let _ = s.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
                }
                (GOAWAY, 0) => answer.goaway = true,
                (DATA, 1) => {
                    answer.data.extend_from_slice(&payload);
                    answer.ended |= flags & END_STREAM != 0;
                }
                (HEADERS, 1) => answer.ended |= flags & END_STREAM != 0,
                (RST_STREAM, 1) => answer.reset = true,
                _ => {}
            }
        }
        if answer.ended || answer.reset || answer.goaway {
            return answer;
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return answer,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no answer on stream 1 within the deadline: {answer:?}"),
        }
    }
}

/// A gRPC length-prefixed message.
fn grpc_message(compressed: bool, declared_len: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend_from_slice(&declared_len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_grpc_frames_over_http2() {
    let cluster = common::Cluster::start(1).await;
    let addr = client_addr(&cluster);
    let mut c = cluster.members[0].client().await;
    let rev = c.put("x", "value", None).await.unwrap().header().unwrap().revision();
    let headers = frame(HEADERS, END_HEADERS, 1, &grpc_headers("/etcdserverpb.KV/Range", &addr.to_string()));

    // Control: a well-formed Range request over the hand-written client gets its answer.
    let req = RangeRequest { key: b"x".to_vec(), ..Default::default() }.encode_to_vec();
    let good = grpc_message(false, u32::try_from(req.len()).unwrap(), &req);
    let answer = exchange(addr, &[headers.clone(), frame(DATA, END_STREAM, 1, &good)]).await;
    assert!(answer.ended && !answer.reset, "{answer:?}");
    assert!(answer.data.len() > 5, "a response message: {answer:?}");
    let resp = RangeResponse::decode(&answer.data[5..]).unwrap();
    assert_eq!(resp.kvs[0].value, b"value");
    assert_eq!(resp.header.unwrap().revision, rev);

    // Broken messages: each gets an error (no response message), never a crash.
    let broken: Vec<(&str, Vec<u8>)> = vec![
        ("truncated body", grpc_message(false, 1000, &req)),
        ("truncated prefix", vec![0, 0, 0]),
        ("invalid protobuf", grpc_message(false, 6, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff])),
        ("compressed without an encoding", grpc_message(true, u32::try_from(req.len()).unwrap(), &req)),
        ("declared length above the limit", grpc_message(false, u32::MAX, &[0; 16])),
    ];
    for (what, body) in &broken {
        let answer = exchange(addr, &[headers.clone(), frame(DATA, END_STREAM, 1, body)]).await;
        assert!(answer.ended || answer.reset || answer.goaway, "{what}: the stream was answered: {answer:?}");
        assert!(answer.data.is_empty(), "{what}: no response message for a broken request: {answer:?}");
        still_serving(&mut c, "between-broken").await;
    }

    // Broken HTTP/2 itself: DATA on stream 0, and HEADERS with a garbage header block.
    let answer = exchange(addr, &[frame(DATA, 0, 0, b"nope")]).await;
    assert!(answer.goaway, "connection error for DATA on stream 0: {answer:?}");
    let answer = exchange(addr, &[frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0xff, 0xff, 0xff, 0xff])]).await;
    assert!(answer.goaway || answer.reset, "compression error for a garbage header block: {answer:?}");

    still_serving(&mut c, "after-broken").await;
    let mut fresh = cluster.members[0].client().await;
    still_serving(&mut fresh, "after-broken-fresh").await;
}
