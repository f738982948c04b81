//! chainfire as real processes: SIGKILL the leader under a write load and check that no
//! acknowledged write is lost, a new leader serves, and the killed member restarts and catches up.

use crate::ports;
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ultracloud_chainfire::client::Client;
use ultracloud_chainfire::pb::etcdserverpb::StatusRequest;
use ultracloud_chainfire::pb::etcdserverpb::maintenance_client::MaintenanceClient;

const BIN: &str = env!("CARGO_BIN_EXE_ultracloud");

use ports::stable_port as free_port;

struct Proc(Option<Child>);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Member {
    name: String,
    client: String,
    args: Vec<String>,
    log: std::path::PathBuf,
    proc: Proc,
}

impl Member {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child =
            Command::new(BIN).arg("chainfire").args(&self.args).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.proc = Proc(Some(child));
    }

    fn sigkill(&mut self) {
        if let Some(mut c) = self.proc.0.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

async fn leader_of(endpoint: &str) -> Option<u64> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned()).ok()?.connect().await.ok()?;
    let s = MaintenanceClient::new(channel).status(StatusRequest {}).await.ok()?.into_inner();
    (s.leader != 0).then_some(s.leader)
}

async fn member_id(endpoint: &str) -> Option<u64> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned()).ok()?.connect().await.ok()?;
    let s = MaintenanceClient::new(channel).status(StatusRequest {}).await.ok()?.into_inner();
    s.header.map(|h| h.member_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_loses_no_acknowledged_write() {
    let _heavy = crate::HEAVY.write().await;
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial: Vec<String> =
        ports.iter().enumerate().map(|(i, (_, p))| format!("n{i}=http://127.0.0.1:{p}")).collect();
    let mut members: Vec<Member> = ports
        .iter()
        .enumerate()
        .map(|(i, (c, p))| Member {
            name: format!("n{i}"),
            client: format!("http://127.0.0.1:{c}"),
            // etcd's flags only (no admin port): three members on one host must not collide.
            args: vec![
                format!("--name=n{i}"),
                format!("--data-dir={}", dir.path().join(format!("n{i}")).display()),
                format!("--listen-client-urls=http://127.0.0.1:{c}"),
                format!("--listen-peer-urls=http://127.0.0.1:{p}"),
                format!("--initial-cluster={}", initial.join(",")),
                "--initial-cluster-token=crash-test".into(),
                "--heartbeat-interval=50".into(),
                "--election-timeout=300".into(),
            ],
            log: dir.path().join(format!("n{i}.log")),
            proc: Proc(None),
        })
        .collect();
    for m in &mut members {
        m.spawn();
    }
    let endpoints: Vec<String> = members.iter().map(|m| m.client.clone()).collect();

    // Wait for a leader, and find which process it is.
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader_idx = loop {
        if let Some(l) = leader_of(&endpoints[0]).await {
            let mut found = None;
            for (i, e) in endpoints.iter().enumerate() {
                if member_id(e).await == Some(l) {
                    found = Some(i);
                }
            }
            if let Some(i) = found {
                break i;
            }
        }
        assert!(Instant::now() < deadline, "no leader; logs in {}", dir.path().display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Health and metrics on every member's client URL, as etcd serves them.
    let http = reqwest::Client::new();
    for e in &endpoints {
        let health: serde_json::Value = http.get(format!("{e}/health")).send().await.unwrap().json().await.unwrap();
        assert_eq!(health["health"], "true", "{e}: {health}");
        let metrics = http.get(format!("{e}/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("chainfire_is_leader"), "{e}: {metrics}");
    }

    // Writers over all endpoints record every acknowledged key.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut writers = Vec::new();
    for w in 0..4 {
        let client = Client::connect(&endpoints).unwrap();
        let tx = tx.clone();
        writers.push(tokio::spawn(async move {
            let stop = Instant::now() + Duration::from_secs(25);
            for i in 0..100 {
                let key = format!("crash/{w}/{i:03}");
                while Instant::now() < stop {
                    if client.put(key.clone(), "v", 0).await.is_ok() {
                        let _ = tx.send(key.clone());
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    drop(tx);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let killed_at = Instant::now();
    members[leader_idx].sigkill();

    // A new leader among the survivors.
    let survivor = endpoints[(leader_idx + 1) % 3].clone();
    let old_id_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = leader_of(&survivor).await
            && member_id(&endpoints[(leader_idx + 1) % 3]).await.is_some()
        {
            let mut is_survivor = false;
            for (i, e) in endpoints.iter().enumerate() {
                if i != leader_idx && member_id(e).await == Some(l) {
                    is_survivor = true;
                }
            }
            if is_survivor {
                break;
            }
        }
        assert!(Instant::now() < old_id_deadline, "no new leader after SIGKILL");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("new leader after {:?}", killed_at.elapsed());
    for w in writers {
        w.await.unwrap();
    }
    let mut acked = BTreeSet::new();
    while let Some(k) = rx.recv().await {
        acked.insert(k);
    }
    assert!(acked.len() >= 300, "writes continued after the failover: {}", acked.len());

    let reader = Client::connect(&[survivor]).unwrap();
    let (kvs, _) = reader.get_prefix("crash/").await.unwrap();
    let stored: BTreeSet<String> = kvs.iter().map(|kv| String::from_utf8(kv.key.clone()).unwrap()).collect();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");

    // The killed member restarts from its data dir and catches up.
    members[leader_idx].spawn();
    let restarted = Client::connect(&[members[leader_idx].client.clone()]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((kvs, _)) = restarted.get_prefix("crash/").await
            && kvs.len() == stored.len()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not catch up; log {}",
            members[leader_idx].name,
            members[leader_idx].log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
