//! `ultracloud lightningstor-node` as a process: bad flags refused by name, and blocks
//! acknowledged before a SIGKILL all there after the restart (and in `s3 admin status`); the
//! gateway's bad flags too.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ultracloud_lightningstor::BlockId;
use ultracloud_lightningstor::client::NodeClient;

use crate::ports::stable_port;

const BIN: &str = env!("CARGO_BIN_EXE_ultracloud");

/// The node process; killed when dropped, so a failing test leaves nothing running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &std::path::Path, port: u16, admin: u16) -> Proc {
    Proc(
        Command::new(BIN)
            .args(["lightningstor-node", "--name", "store1", "--data-dir"])
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--admin-listen", &format!("127.0.0.1:{admin}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn wait_ready(node: &NodeClient) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.status().await.is_err() {
        assert!(Instant::now() < deadline, "the storage node did not answer within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn the_gateway_refuses_bad_flags_by_name() {
    let _shared = crate::HEAVY.blocking_read();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN).arg("lightningstor").arg("--data-dir").arg(dir.path()).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for (args, named) in [
        (&["--listen", "0.0.0.0:18790"][..], "listen"),
        (&["--nodes", "store1"][..], "nodes"),
        (&["--nodes", "store1=ftp://x"][..], "nodes"),
        (&["--iam-endpoints", "127.0.0.1:8480"][..], "iam_endpoints"),
        (&["--block-bytes", "10"][..], "block_bytes"),
        (&["--replication", "0"][..], "replication"),
        (&["--domain", "not a domain"][..], "domain"),
    ] {
        let err = run(args);
        assert!(err.contains(named), "{args:?}: {err}");
    }
    // A missing key file is named, with who writes it.
    let key = dir.path().join("no-such-key");
    let err =
        run(&["--api-key-file", key.to_str().unwrap(), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]);
    assert!(err.contains("no-such-key"), "{err}");
}

#[test]
fn bad_flags_are_refused_by_name() {
    let _shared = crate::HEAVY.blocking_read();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out =
            Command::new(BIN).arg("lightningstor-node").arg("--data-dir").arg(dir.path()).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let open = run(&["--listen", "0.0.0.0:18780"]);
    assert!(open.contains("without TLS") && open.contains("listen"), "{open}");
    let tiny = run(&["--max-block-bytes", "10"]);
    assert!(tiny.contains("max_block_bytes"), "{tiny}");
    let name = run(&["--name", "Not_A_Name"]);
    assert!(name.contains("name"), "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_blocks_survive_a_sigkill() {
    let _shared = crate::HEAVY.read().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (stable_port(), stable_port());
    let node = NodeClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let child = start(dir.path(), port, admin);
    wait_ready(&node).await;

    // 64 writers at once; every one that was answered must be there after the crash.
    let writes = (0..64u32).map(|i| {
        let node = node.clone();
        async move { node.put(format!("block {i} ").repeat(1000 + i as usize).into_bytes()).await }
    });
    let acked: Vec<BlockId> = futures::future::join_all(writes).await.into_iter().map(|r| r.unwrap().id).collect();
    drop(child); // SIGKILL

    let _child = start(dir.path(), port, admin);
    wait_ready(&node).await;
    assert_eq!(node.status().await.unwrap().blocks, 64);
    // The operator's view: the node up with its 64 blocks; a node that is down fails the command.
    let status = |nodes: String| {
        Command::new(BIN).args(["s3", "admin", "status", "-o", "json", "--nodes", &nodes]).output().unwrap()
    };
    let out = status(format!("store1=http://127.0.0.1:{port}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((rows[0]["state"].as_str(), rows[0]["blocks"].as_u64()), (Some("up"), Some(64)), "{rows}");
    let out = status(format!("store1=http://127.0.0.1:{port},gone=http://127.0.0.1:{}", stable_port()));
    assert!(!out.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(rows[1]["state"].as_str().unwrap().starts_with("unreachable"), "{rows}");
    for (i, id) in acked.iter().enumerate() {
        let data = node.get(*id).await.unwrap().unwrap_or_else(|| panic!("block {i} lost"));
        assert_eq!(data, format!("block {i} ").repeat(1000 + i).into_bytes());
    }
}
