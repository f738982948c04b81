//! The internal planes on the wire, as real processes on loopback: flaredb (three nodes, Raft
//! between them over mutual TLS) and chainfire admit only certificates of the cluster CA in an
//! allowed role; no certificate, another CA's, a worker's, and plain HTTP are all refused, and
//! etcdctl keeps working with `--cacert/--cert/--key`.
//!
//! A test binary of its own: this process installs a TLS identity (process-wide by design).

use crate::flaredb_support;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flaredb_support::FCluster;
use ultracloud_tls::{CertAuthority, ClusterTls, IssueRequest, Role};

const BIN: &str = env!("CARGO_BIN_EXE_ultracloud");

/// A CA and one holder per role (plus a stranger from another CA) in `dir`.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Self {
        let ca = CertAuthority::create("test CA").unwrap();
        ca.save(&dir.join("ca")).unwrap();
        let issue = |ca: &CertAuthority, name: &str, role: Role| {
            let mut req = IssueRequest::new(name, role);
            req.ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
            ca.issue(&req, &dir.join(name)).unwrap();
        };
        issue(&ca, "node", Role::ControlPlane);
        issue(&ca, "worker", Role::Worker);
        issue(&ca, "operator", Role::Admin);
        issue(&CertAuthority::create("another CA").unwrap(), "stranger", Role::ControlPlane);
        Self { dir: dir.to_path_buf() }
    }

    fn holder(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn client(&self, name: &str) -> reqwest::Client {
        ClusterTls::load(&self.holder(name)).unwrap().http_client_builder().unwrap().build().unwrap()
    }

    fn trusting_only(&self) -> reqwest::Client {
        let config = ultracloud_tls::trust_only(&self.dir.join("ca/ca.pem")).unwrap();
        reqwest::Client::builder().use_preconfigured_tls(config).build().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_planes_admit_only_cluster_certificates_in_their_roles() {
    let _heavy = crate::HEAVY.read().await;
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    // This process is the operator: its flaredb client presents the admin certificate.
    ultracloud_tls::client::install_dir(&pki.holder("operator")).unwrap();

    // flaredb: three nodes whose Raft and placement traffic is mutual TLS.
    let tls_flag = format!("--tls-dir={}", pki.holder("node").display());
    let cluster = FCluster::start(3, &["--heartbeat-ms=300", &tls_flag]);
    let c = cluster.ready().await;
    c.put(b"wire/k", b"v").await.unwrap();
    c.transact(async |t| {
        t.put(b"wire/a", b"1");
        t.put(b"wire/b", b"2");
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(c.get(b"wire/b").await.unwrap(), Some(b"2".to_vec()));
    let map = cluster.wait_regions(&c, 30, "3 voters", |r| r.regions.iter().all(|g| g.desc.voters.len() == 3)).await;
    assert!(!map.regions.is_empty());

    let addr = &cluster.nodes[0].addr;
    let status = format!("https://{addr}/v1/status");
    let internal = format!("https://{addr}/internal/heartbeat");
    let ok = pki.client("node").get(&status).send().await.unwrap();
    assert_eq!(ok.status(), 200, "a control-plane node reads");
    assert_eq!(pki.client("operator").get(&status).send().await.unwrap().status(), 200, "an operator reads");
    let r = pki.client("worker").get(&status).send().await.unwrap();
    assert_eq!(r.status(), 403, "a worker's certificate is the cluster's but not of a client role");
    assert!(r.text().await.unwrap().contains("worker (worker)"));
    let r = pki.client("operator").post(&internal).json(&serde_json::json!({})).send().await.unwrap();
    assert_eq!(r.status(), 403, "the Raft and placement routes are for control-plane peers only");
    assert!(pki.trusting_only().get(&status).send().await.is_err(), "no client certificate: no handshake");
    assert!(pki.client("stranger").get(&status).send().await.is_err(), "another CA's certificate");
    let plain = reqwest::Client::new().get(format!("http://{addr}/v1/status")).send().await.unwrap();
    assert_eq!(plain.status(), 400, "plain HTTP to a TLS port is told so");
    assert!(plain.text().await.unwrap().contains("tls_required"));
    // The Rust client of a process without a certificate gets a clear, final refusal.
    let refused = Command::new(BIN)
        .args(["db", "--endpoints", addr, "get", "wire/k"])
        .env_remove("ULTRACLOUD_TLS_DIR")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refused"), "{refused:?}");
    let worker = Command::new(BIN)
        .args(["db", "--endpoints", addr, "--tls-dir"])
        .arg(pki.holder("worker"))
        .args(["get", "wire/k"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&worker.stderr).contains("403"), "{worker:?}");

    chainfire_admits_only_cluster_certificates(&pki).await;
}

async fn chainfire_admits_only_cluster_certificates(pki: &Pki) {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (ultracloud_runtime::test_port::free_port(), ultracloud_runtime::test_port::free_port());
    let log = std::fs::File::create(dir.path().join("chainfire.log")).unwrap();
    let mut child = Command::new(BIN)
        .arg("chainfire")
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg(format!("--listen-client-urls=https://127.0.0.1:{client}"))
        .arg(format!("--listen-peer-urls=https://127.0.0.1:{peer}"))
        .arg(format!("--tls-dir={}", pki.holder("node").display()))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{client}");
    let opts = || etcd_client_options();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut etcd = loop {
        let last = match ultracloud_harness::probe::etcd_connect(&addr, opts()).await {
            Ok(mut c) => match c.put("wire", "ok", None).await {
                Ok(_) => break c,
                Err(e) => e.to_string(),
            },
            Err(e) => format!("{e:#}"),
        };
        assert!(
            Instant::now() < deadline,
            "chainfire over TLS never answered: {last}\n{}",
            std::fs::read_to_string(dir.path().join("chainfire.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let got = etcd.get("wire", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"ok");

    // etcdctl with an operator's certificate works; without one, or with a worker's, it does not.
    let etcdctl = |holder: Option<&str>, args: &[&str]| {
        let mut cmd = Command::new("etcdctl");
        cmd.arg(format!("--endpoints=https://{addr}"))
            .arg(format!("--cacert={}", pki.dir.join("ca/ca.pem").display()))
            .arg("--command-timeout=3s");
        if let Some(h) = holder {
            cmd.arg(format!("--cert={}", pki.holder(h).join("cert.pem").display()));
            cmd.arg(format!("--key={}", pki.holder(h).join("key.pem").display()));
        }
        cmd.args(args).output()
    };
    match etcdctl(Some("operator"), &["get", "wire"]) {
        Ok(out) => {
            assert!(out.status.success(), "{out:?}");
            assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
            // A per-member command sends the https:// URL as its HTTP/2 authority.
            let status = etcdctl(Some("operator"), &["endpoint", "status"]).unwrap();
            assert!(status.status.success(), "{status:?}");
            assert!(String::from_utf8_lossy(&status.stdout).contains(&format!("https://{addr}")), "{status:?}");
            let none = etcdctl(None, &["get", "wire"]).unwrap();
            assert!(!none.status.success(), "no client certificate");
            let worker = etcdctl(Some("worker"), &["get", "wire"]).unwrap();
            assert!(!worker.status.success());
            assert!(String::from_utf8_lossy(&worker.stderr).contains("PermissionDenied"), "{worker:?}");
        }
        Err(_) => ultracloud_runtime::prerequisite::missing("etcdctl is not installed (apt-get install etcd-client)"),
    }
    let plain = etcd_client::Client::connect([format!("http://{addr}")], Some(opts())).await;
    let refused = match plain {
        Ok(mut c) => c.get("wire", None).await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "plain gRPC to a TLS port");

    // etcd's /health and the runtime's /metrics on the client URL: public to any cluster
    // certificate, a worker's included; nothing without one.
    let health = pki.client("worker").get(format!("https://{addr}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health, serde_json::json!({"health": "true", "reason": ""}));
    let metrics = pki.client("worker").get(format!("https://{addr}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("chainfire_raft_term"));
    assert!(pki.trusting_only().get(format!("https://{addr}/health")).send().await.is_err(), "no certificate");
    let _ = child.kill();
    let _ = child.wait();
}

fn etcd_client_options() -> etcd_client::ConnectOptions {
    etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_secs(2)).with_timeout(Duration::from_secs(3))
}
