//! Debian's etcdctl (v3 API) against a one-member cluster: KV, txn, compaction, watch, leases,
//! membership, status, health and snapshots. Skipped when /usr/bin/etcdctl is missing.

use crate::common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

const ETCDCTL: &str = "/usr/bin/etcdctl";
/// Longest any single etcdctl run may take.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// etcdctl pointed at one member.
struct Etcdctl {
    endpoint: String,
}

/// What one run printed.
#[derive(Debug)]
struct Out {
    success: bool,
    stdout: String,
    stderr: String,
}

/// etcdctl, or `None` (and a note) when it is not installed.
fn etcdctl(cluster: &common::Cluster) -> Option<Etcdctl> {
    if !Path::new(ETCDCTL).exists() {
        ultracloud_runtime::prerequisite::missing(&format!("{ETCDCTL} is not installed"));
        return None;
    }
    Some(Etcdctl { endpoint: cluster.members[0].endpoint() })
}

impl Etcdctl {
    /// The same member addressed as host:port instead of a URL.
    fn bare(&self) -> Etcdctl {
        Etcdctl { endpoint: self.endpoint.trim_start_matches("http://").to_owned() }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(ETCDCTL);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint))
            .arg("--dial-timeout=5s")
            .arg("--command-timeout=20s")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs etcdctl with `args` (and `stdin`), failing the test after [`RUN_DEADLINE`].
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = self.command(args);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let input = stdin.map(str::to_owned);
        let what = format!("etcdctl {args:?}");
        tokio::task::spawn_blocking(move || {
            let mut child = cmd.spawn().expect("etcdctl starts");
            if let Some(input) = input {
                let mut pipe = child.stdin.take().unwrap();
                pipe.write_all(input.as_bytes()).unwrap();
            }
            let mut out_pipe = child.stdout.take().unwrap();
            let mut err_pipe = child.stderr.take().unwrap();
            let out = std::thread::spawn(move || {
                let mut s = String::new();
                out_pipe.read_to_string(&mut s).unwrap();
                s
            });
            let err = std::thread::spawn(move || {
                let mut s = String::new();
                err_pipe.read_to_string(&mut s).unwrap();
                s
            });
            let deadline = Instant::now() + RUN_DEADLINE;
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{what} did not finish within {RUN_DEADLINE:?}");
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            Out { success: status.success(), stdout: out.join().unwrap(), stderr: err.join().unwrap() }
        })
        .await
        .unwrap()
    }

    /// Runs and expects success; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None).await;
        assert!(out.success, "etcdctl {args:?} failed: {out:?}");
        out.stdout
    }

    /// Runs and expects failure; returns stderr.
    async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args, None).await;
        assert!(!out.success, "etcdctl {args:?} should fail: {out:?}");
        out.stderr
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-w", "json"]);
        let out = self.ok(&all).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("etcdctl {args:?}: not JSON ({e}): {out}"))
    }
}

/// Non-empty output lines.
fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.is_empty()).collect()
}

/// Standard base64 (etcdctl's JSON shows keys and values so).
fn b64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn header_revision(v: &Value) -> i64 {
    v["header"]["revision"].as_i64().unwrap_or_else(|| panic!("no header revision in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_put_get_del() {
    let cluster = common::Cluster::start(1).await;
    let Some(ctl) = etcdctl(&cluster) else { return };

    assert_eq!(ctl.ok(&["put", "a", "1"]).await.trim(), "OK");
    assert_eq!(lines(&ctl.ok(&["put", "a", "2", "--prev-kv"]).await), ["OK", "a", "1"]);
    for (k, v) in [("a/x", "ax"), ("a/y", "ay"), ("b", "vb"), ("c", "vc")] {
        ctl.ok(&["put", k, v]).await;
    }
    // Revisions: a=1@2, a=2@3, a/x@4, a/y@5, b@6, c@7.
    assert_eq!(lines(&ctl.ok(&["get", "a"]).await), ["a", "2"]);
    assert_eq!(lines(&ctl.ok(&["get", "a/", "--prefix"]).await), ["a/x", "ax", "a/y", "ay"]);
    assert_eq!(lines(&ctl.ok(&["get", "b", "--from-key"]).await), ["b", "vb", "c", "vc"]);
    assert_eq!(lines(&ctl.ok(&["get", "a/x", "b"]).await), ["a/x", "ax", "a/y", "ay"], "[a/x, b) is half-open");
    assert_eq!(lines(&ctl.ok(&["get", "a", "--prefix", "--limit=2"]).await), ["a", "2", "a/x", "ax"]);
    assert_eq!(lines(&ctl.ok(&["get", "a", "--rev=2"]).await), ["a", "1"]);
    assert!(ctl.ok(&["get", "a/x", "--rev=3"]).await.trim().is_empty(), "a/x did not exist at revision 3");
    assert_eq!(lines(&ctl.ok(&["get", "a", "--prefix", "--keys-only"]).await), ["a", "a/x", "a/y"]);
    assert_eq!(
        lines(&ctl.ok(&["get", "", "--from-key", "--keys-only", "--sort-by=MODIFY", "--order=DESCEND"]).await),
        ["c", "b", "a/y", "a/x", "a"]
    );
    assert_eq!(
        lines(&ctl.ok(&["get", "", "--from-key", "--keys-only", "--sort-by=KEY", "--order=DESCEND"]).await),
        ["c", "b", "a/y", "a/x", "a"]
    );
    assert_eq!(
        lines(&ctl.ok(&["get", "", "--from-key", "--keys-only", "--sort-by=CREATE", "--order=ASCEND"]).await),
        ["a", "a/x", "a/y", "b", "c"]
    );
    assert_eq!(lines(&ctl.ok(&["get", "a", "--print-value-only"]).await), ["2"]);

    // JSON output with revisions.
    let j = ctl.json(&["get", "a"]).await;
    assert_eq!(header_revision(&j), 7);
    assert_eq!(j["count"], 1);
    let kv = &j["kvs"][0];
    assert_eq!(kv["key"], b64(b"a"));
    assert_eq!(kv["value"], b64(b"2"));
    assert_eq!(
        (kv["create_revision"].as_i64(), kv["mod_revision"].as_i64(), kv["version"].as_i64()),
        (Some(2), Some(3), Some(2))
    );
    let j = ctl.json(&["get", "a", "--prefix", "--limit=1"]).await;
    assert_eq!((j["count"].as_i64(), j["more"].as_bool()), (Some(3), Some(true)));
    let j = ctl.json(&["get", "a", "--rev=2"]).await;
    assert_eq!(j["kvs"][0]["mod_revision"], 2);
    assert_eq!(header_revision(&j), 7, "the header shows the current revision");
    let j = ctl.json(&["put", "d", "vd"]).await;
    assert_eq!(header_revision(&j), 8);
    let member_id = j["header"]["member_id"].as_u64().unwrap();
    assert_eq!(member_id, cluster.members[0].node().id);

    // Deletes.
    assert_eq!(ctl.ok(&["del", "d"]).await.trim(), "1");
    assert_eq!(ctl.ok(&["del", "nothing"]).await.trim(), "0");
    assert_eq!(lines(&ctl.ok(&["del", "a/", "--prefix", "--prev-kv"]).await), ["2", "a/x", "ax", "a/y", "ay"]);
    assert_eq!(lines(&ctl.ok(&["del", "b", "c\x01"]).await), ["2"]);
    let j = ctl.json(&["get", "", "--from-key"]).await;
    assert_eq!(j["kvs"].as_array().unwrap().len(), 1, "{j}");
    assert_eq!(j["kvs"][0]["key"], b64(b"a"));
    assert_eq!(header_revision(&j), 11, "put d, del d, del a/, del [b, c\\x01); deleting nothing is no revision");

    // Errors reach the user.
    let err = ctl.fails(&["get", "a", "--rev=100"]).await;
    assert!(err.contains("required revision is a future revision"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_txn_and_compaction() {
    let cluster = common::Cluster::start(1).await;
    let Some(ctl) = etcdctl(&cluster) else { return };
    ctl.ok(&["put", "k1", "v1"]).await; // 2
    ctl.ok(&["put", "k2", "v2"]).await; // 3
    ctl.ok(&["put", "k1", "v1b"]).await; // 4

    let script = "value(\"k1\") = \"v1b\"\nversion(\"k1\") = \"2\"\ncreate(\"k2\") = \"3\"\nmod(\"k2\") < \"4\"\n\n\
                  put k3 \"from txn\"\nget k2\ndel k1\n\nput k3 \"wrong branch\"\n\n";
    let out = ctl.run(&["txn"], Some(script)).await;
    assert!(out.success, "{out:?}");
    assert_eq!(lines(&out.stdout), ["SUCCESS", "OK", "k2", "v2", "1"]);
    let j = ctl.json(&["get", "k3"]).await;
    assert_eq!(header_revision(&j), 5, "one revision for the txn");
    assert_eq!(j["kvs"][0]["value"], b64(b"from txn"));
    assert!(ctl.ok(&["get", "k1"]).await.trim().is_empty());

    let failing = "mod(\"k2\") > \"3\"\n\nput k4 \"no\"\n\nput k4 \"yes\"\nget k3\n\n";
    let out = ctl.run(&["txn"], Some(failing)).await;
    assert!(out.success, "{out:?}");
    assert_eq!(lines(&out.stdout), ["FAILURE", "OK", "k3", "from txn"]);
    assert_eq!(lines(&ctl.ok(&["get", "k4"]).await), ["k4", "yes"]);
    let j = ctl.json(&["get", "k4"]).await;
    assert_eq!(j["kvs"][0]["mod_revision"], 6);

    // A read-only txn changes no revision.
    let out = ctl.run(&["txn"], Some("\nget k4\n\n\n")).await;
    assert!(out.success, "{out:?}");
    assert_eq!(lines(&out.stdout), ["SUCCESS", "k4", "yes"]);
    assert_eq!(header_revision(&ctl.json(&["get", "k4"]).await), 6);

    // Compaction.
    assert_eq!(ctl.ok(&["compaction", "5"]).await.trim(), "compacted revision 5");
    let err = ctl.fails(&["get", "k2", "--rev=4"]).await;
    assert!(err.contains("required revision has been compacted"), "{err}");
    assert_eq!(lines(&ctl.ok(&["get", "k2", "--rev=5"]).await), ["k2", "v2"]);
    assert!(ctl.ok(&["get", "k1", "--rev=5"]).await.trim().is_empty(), "k1 was deleted before the compact revision");
    let err = ctl.fails(&["compaction", "5"]).await;
    assert!(err.contains("required revision has been compacted"), "{err}");
    assert_eq!(lines(&ctl.ok(&["get", "", "--from-key", "--keys-only"]).await), ["k2", "k3", "k4"]);
}

/// A long-running etcdctl (watch), killed by PID when done with or when the test fails.
struct Watcher(std::process::Child);

impl Watcher {
    fn kill(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Collects a child's stdout in the background.
fn collect_stdout(child: &mut std::process::Child) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stdout.take().unwrap();
    let sink = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_watch() {
    let cluster = common::Cluster::start(1).await;
    let Some(ctl) = etcdctl(&cluster) else { return };
    ctl.ok(&["put", "w/old", "before"]).await; // 2
    ctl.ok(&["put", "unwatched", "x"]).await; // 3

    // One watcher replays from revision 2; the other is live (started before our puts, so
    // it is given a start revision too, to not race its registration).
    let mut replay =
        Watcher(ctl.command(&["watch", "--prefix", "w/", "--rev=2"]).stdin(Stdio::null()).spawn().unwrap());
    let mut prev =
        Watcher(ctl.command(&["watch", "w/a", "--prev-kv", "--rev=4"]).stdin(Stdio::null()).spawn().unwrap());
    let replay_out = collect_stdout(&mut replay.0);
    let prev_out = collect_stdout(&mut prev.0);

    ctl.ok(&["put", "w/a", "1"]).await; // 4
    ctl.ok(&["put", "other", "no"]).await; // 5
    ctl.ok(&["put", "w/a", "2"]).await; // 6
    ctl.ok(&["del", "w/a"]).await; // 7
    ctl.ok(&["put", "w/b", "done"]).await; // 8

    let expected =
        ["PUT", "w/old", "before", "PUT", "w/a", "1", "PUT", "w/a", "2", "DELETE", "w/a", "PUT", "w/b", "done"];
    let got = common::eventually("etcdctl watch output", Duration::from_secs(20), || {
        let out = replay_out.lock().unwrap().clone();
        async move { (lines(&out).len() >= expected.len()).then_some(out) }
    })
    .await;
    // Events with prev_kv print the previous key and value before the event's own.
    let prev_expected = ["PUT", "w/a", "1", "PUT", "w/a", "1", "w/a", "2", "DELETE", "w/a", "2", "w/a"];
    let got_prev = common::eventually("etcdctl watch --prev-kv output", Duration::from_secs(20), || {
        let out = prev_out.lock().unwrap().clone();
        async move { (lines(&out).len() >= prev_expected.len()).then_some(out) }
    })
    .await;
    for watcher in [&mut replay, &mut prev] {
        let pid = watcher.0.id();
        assert!(watcher.0.try_wait().unwrap().is_none(), "etcdctl watch (pid {pid}) runs until killed");
        watcher.kill();
    }
    assert_eq!(lines(&got), expected, "raw: {got:?}");
    assert_eq!(lines(&got_prev), prev_expected, "raw: {got_prev:?}");
    // Nothing more arrived after the last expected event.
    assert_eq!(lines(&replay_out.lock().unwrap()).len(), expected.len());
}

/// The lease ID in etcdctl's "lease <hex> granted with TTL(..)" line.
fn lease_id(line: &str) -> String {
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("lease"), "{line}");
    words.next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_leases() {
    let cluster = common::Cluster::start(1).await;
    let Some(ctl) = etcdctl(&cluster) else { return };
    let out = ctl.ok(&["lease", "grant", "100"]).await;
    assert!(out.trim().ends_with("granted with TTL(100s)"), "{out}");
    let id = lease_id(&out);
    let other = lease_id(&ctl.ok(&["lease", "grant", "50"]).await);
    assert_ne!(id, other);
    assert!(u64::from_str_radix(&id, 16).is_ok(), "hex lease ID: {id}");

    ctl.ok(&["put", "lk1", "v", &format!("--lease={id}")]).await;
    ctl.ok(&["put", "lk2", "v", &format!("--lease={id}")]).await;
    ctl.ok(&["put", "free", "v"]).await;
    let j = ctl.json(&["get", "lk1"]).await;
    assert_eq!(j["kvs"][0]["lease"].as_u64(), Some(u64::from_str_radix(&id, 16).unwrap()));

    let ttl = ctl.ok(&["lease", "timetolive", &id, "--keys"]).await;
    assert!(ttl.contains(&format!("lease {id} granted with TTL(100s)")), "{ttl}");
    assert!(ttl.contains("attached keys([lk1 lk2])"), "{ttl}");
    let ttl = ctl.ok(&["lease", "timetolive", &id]).await;
    assert!(!ttl.contains("attached keys"), "{ttl}");
    let j = ctl.json(&["lease", "timetolive", &id, "--keys"]).await;
    assert_eq!(j["granted-ttl"].as_i64().or(j["grantedTTL"].as_i64()).or(j["granted_ttl"].as_i64()), Some(100), "{j}");

    let ka = ctl.ok(&["lease", "keep-alive", "--once", &id]).await;
    assert_eq!(ka.trim(), format!("lease {id} keepalived with TTL(100)"));

    let list = lines_owned(&ctl.ok(&["lease", "list"]).await);
    assert_eq!(list[0], "found 2 leases");
    let mut ids = list[1..].to_vec();
    ids.sort();
    let mut want = vec![id.clone(), other.clone()];
    want.sort();
    assert_eq!(ids, want);

    let revoked = ctl.ok(&["lease", "revoke", &id]).await;
    assert_eq!(revoked.trim(), format!("lease {id} revoked"));
    assert_eq!(lines(&ctl.ok(&["get", "", "--from-key", "--keys-only"]).await), ["free"]);
    let gone = ctl.ok(&["lease", "timetolive", &id]).await;
    assert!(gone.contains("already expired"), "{gone}");
    let err = ctl.fails(&["lease", "revoke", &id]).await;
    assert!(err.contains("requested lease not found"), "{err}");
    let err = ctl.fails(&["put", "x", "v", &format!("--lease={id}")]).await;
    assert!(err.contains("requested lease not found"), "{err}");
    assert_eq!(lines_owned(&ctl.ok(&["lease", "list"]).await), ["found 1 leases".to_owned(), other]);
}

fn lines_owned(s: &str) -> Vec<String> {
    lines(s).into_iter().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_cluster_status_health_snapshot() {
    let cluster = common::Cluster::start(1).await;
    let Some(ctl) = etcdctl(&cluster) else { return };
    let m = &cluster.members[0];
    let node = m.node();
    // The member publishes its name and client URLs shortly after start.
    let members = common::eventually("member attributes", Duration::from_secs(10), || {
        let ctl = &ctl;
        async move {
            let j = ctl.json(&["member", "list"]).await;
            (j["members"][0]["name"] == "m0").then_some(j)
        }
    })
    .await;
    let list = members["members"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{members}");
    assert_eq!(list[0]["ID"].as_u64(), Some(node.id));
    assert_eq!(list[0]["peerURLs"][0], m.config.listen_peer_urls[0]);
    assert_eq!(list[0]["clientURLs"][0], m.endpoint());
    assert_eq!(members["header"]["cluster_id"].as_u64(), Some(node.cluster_id));
    let simple = ctl.ok(&["member", "list"]).await;
    assert!(simple.contains(&format!("{:x}, started, m0, {}", node.id, m.config.listen_peer_urls[0])), "{simple}");

    ctl.ok(&["put", "s", "1"]).await;
    // Per-member commands (status, hashkv, defrag, snapshot) with host:port endpoints; with
    // URLs in `per_member_commands_with_url_endpoints`.
    let bare = ctl.bare();
    let status = bare.json(&["endpoint", "status"]).await;
    let st = &status[0];
    assert_eq!(st["Endpoint"], bare.endpoint);
    let s = &st["Status"];
    assert_eq!(s["leader"].as_u64(), Some(node.id), "{status}");
    assert_eq!(s["header"]["member_id"].as_u64(), Some(node.id));
    assert_eq!(header_revision(s), 2);
    assert!(s["raftIndex"].as_u64().unwrap() > 0, "{status}");
    assert!(s["raftTerm"].as_u64().unwrap() > 0, "{status}");
    assert!(s["dbSize"].as_i64().unwrap() > 0, "{status}");
    assert!(s["version"].as_str().unwrap().starts_with("3."), "{status}");

    let hashkv = bare.json(&["endpoint", "hashkv"]).await;
    assert_eq!(header_revision(&hashkv[0]["HashKV"]), 2, "{hashkv}");
    assert!(hashkv[0]["HashKV"]["hash"].as_u64().unwrap() > 0, "{hashkv}");
    let defrag = bare.ok(&["defrag"]).await;
    assert!(defrag.contains("Finished defragmenting etcd member"), "{defrag}");

    let health = ctl.run(&["endpoint", "health"], None).await;
    assert!(health.success, "{health:?}");
    let said = format!("{}{}", health.stdout, health.stderr);
    assert!(said.contains(&format!("{} is healthy", m.endpoint())), "{said}");

    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("snap.db");
    let out = bare.run(&["snapshot", "save", path.to_str().unwrap()], None).await;
    assert!(out.success, "{out:?}");
    assert!(format!("{}{}", out.stdout, out.stderr).contains("Snapshot saved at"), "{out:?}");
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 32, "snapshot file has content: {size} bytes");
    // The server still serves after streaming a snapshot.
    assert_eq!(lines(&ctl.ok(&["get", "s"]).await), ["s", "1"]);
}

/// etcdctl 3.4 dials each endpoint of a per-member command with the endpoint URL as the HTTP/2
/// `:authority` ("http://127.0.0.1:port"), which the HTTP/2 stack would reset as malformed; the
/// client listener rewrites it (see `server::authority`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_member_commands_with_url_endpoints() {
    let cluster = common::Cluster::start(1).await;
    let Some(ctl) = etcdctl(&cluster) else { return };
    ctl.ok(&["put", "k", "v"]).await;
    let status = ctl.json(&["endpoint", "status"]).await;
    assert_eq!(status[0]["Status"]["leader"].as_u64(), Some(cluster.members[0].node().id));
    let hashkv = ctl.json(&["endpoint", "hashkv"]).await;
    assert!(hashkv[0]["HashKV"]["hash"].as_u64().is_some(), "{hashkv}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.db");
    let out = ctl.run(&["snapshot", "save", path.to_str().unwrap()], None).await;
    assert!(out.success, "{out:?}");
}
