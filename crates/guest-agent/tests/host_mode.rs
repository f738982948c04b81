//! Runs the real `ultracloud-guest` binary on the host (not PID 1: it only serves its API) and talks
//! HTTP to it, including requests meant to break it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the agent however the test ends.
struct Agent {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(files_dir: &std::path::Path) -> Agent {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ultracloud-guest"))
        .args(["--listen", "127.0.0.1:0", "--files-dir"])
        .arg(files_dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("ULTRACLOUD-GUEST-LISTENING addr=").unwrap().parse().unwrap();
    Agent { child, addr }
}

/// Sends raw bytes, returns (status, body).
fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    req.extend_from_slice(body);
    raw(addr, &req)
}

#[test]
fn serves_the_api_and_survives_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(dir.path());
    let a = agent.addr;

    assert_eq!(request(a, "GET", "/health", b""), (200, "{\"status\":\"ok\"}\n".into()));
    assert_eq!(request(a, "POST", "/visit", b"").1, "{\"visits\":1}\n");
    assert_eq!(request(a, "POST", "/visit", b"").1, "{\"visits\":2}\n");
    let state: serde_json::Value = serde_json::from_str(&request(a, "GET", "/state", b"").1).unwrap();
    assert_eq!(state["visits"], 2);
    let addrs: serde_json::Value = serde_json::from_str(&request(a, "GET", "/addrs", b"").1).unwrap();
    assert!(addrs["interfaces"].as_array().unwrap().iter().any(|i| i["name"] == "lo"));

    let big = vec![b'x'; 1024 * 1024];
    assert_eq!(request(a, "PUT", "/files/big.bin", &big).0, 200);
    assert_eq!(std::fs::read(dir.path().join("big.bin")).unwrap(), big);
    assert_eq!(request(a, "GET", "/files/big.bin", b"").1.len(), big.len());
    assert_eq!(request(a, "GET", "/files/missing", b"").0, 404);
    assert_eq!(request(a, "PUT", "/files/..", b"x").0, 400);
    assert_eq!(request(a, "GET", "/nope", b"").0, 404);

    // Garbage, oversized and stalled requests get answers or are dropped, never a crash.
    assert_eq!(raw(a, b"\x00\x01\x02\r\n\r\n").0, 400);
    assert_eq!(raw(a, b"PUT /files/x HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n").0, 413);
    assert_eq!(raw(a, b"PUT /files/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").0, 411);
    let mut huge = b"GET /health HTTP/1.1\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let mut s = TcpStream::connect(a).unwrap();
    let _ = s.write_all(&huge);
    drop(s);
    drop(TcpStream::connect(a).unwrap()); // connect and leave
    assert_eq!(request(a, "GET", "/health", b"").0, 200);
}

#[test]
fn exits_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = start(dir.path());
    let status = Command::new("kill").args(["-TERM", &agent.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "agent did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}
