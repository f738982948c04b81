//! Test clusters of chainfire members running in this process on 127.0.0.1.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use ultracloud_chainfire::config::{ChainfireConfig, ClusterState};
use ultracloud_chainfire::node::Node;
use ultracloud_chainfire::server::{self, Running};

pub use ultracloud_runtime::test_port::free_port;

/// One member and how to stop it.
pub struct Member {
    pub name: String,
    pub config: ChainfireConfig,
    pub dir: PathBuf,
    pub stop: CancellationToken,
    pub running: Option<Running>,
}

impl Member {
    pub fn node(&self) -> Arc<Node> {
        self.running.as_ref().expect("member is running").node.clone()
    }

    pub fn endpoint(&self) -> String {
        self.config.listen_client_urls[0].clone()
    }

    pub async fn start(&mut self) {
        self.stop = CancellationToken::new();
        let running = server::start(self.config.clone(), &self.dir, self.stop.clone(), axum::Router::new())
            .await
            .expect("member starts");
        self.running = Some(running);
    }

    /// Stops the member (listeners and Raft); its data dir stays.
    pub async fn kill(&mut self) {
        self.stop.cancel();
        if let Some(r) = self.running.take() {
            r.wait().await;
        }
    }

    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint()], None).await.expect("client connects")
    }
}

/// A cluster of members with their own temp dirs.
pub struct Cluster {
    pub members: Vec<Member>,
    pub token: String,
    _dir: tempfile::TempDir,
}

/// Fast Raft timings for tests.
pub fn test_config(name: &str, client: u16, peer: u16) -> ChainfireConfig {
    ChainfireConfig {
        name: name.into(),
        listen_client_urls: vec![format!("http://127.0.0.1:{client}")],
        listen_peer_urls: vec![format!("http://127.0.0.1:{peer}")],
        heartbeat_interval_ms: 50,
        election_timeout_ms: 300,
        ..Default::default()
    }
}

impl Cluster {
    /// Starts `n` members forming a new cluster and waits for a leader.
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, |_| {}).await
    }

    /// Like [`Cluster::start`], letting the test adjust each member's config.
    pub async fn start_with(n: usize, tweak: impl Fn(&mut ChainfireConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token = format!("test-{}", rand_token());
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}")).collect();
        let mut members = Vec::new();
        for (i, (c, p)) in ports.iter().enumerate() {
            let mut config = test_config(&format!("m{i}"), *c, *p);
            config.initial_cluster = initial.join(",");
            config.initial_cluster_token = token.clone();
            config.initial_cluster_state = ClusterState::New;
            tweak(&mut config);
            let mdir = dir.path().join(format!("m{i}"));
            std::fs::create_dir_all(&mdir).unwrap();
            members.push(Member {
                name: format!("m{i}"),
                config,
                dir: mdir,
                stop: CancellationToken::new(),
                running: None,
            });
        }
        for m in &mut members {
            m.start().await;
        }
        let cluster = Self { members, token, _dir: dir };
        cluster.wait_leader(Duration::from_secs(20)).await;
        cluster
    }

    /// Waits until every running member knows the same leader; returns its index.
    pub async fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let leaders: Vec<Option<u64>> =
                self.members.iter().filter(|m| m.running.is_some()).map(|m| m.node().leader()).collect();
            if let Some(Some(l)) = leaders.first()
                && leaders.iter().all(|x| *x == Some(*l))
                && let Some(idx) = self.members.iter().position(|m| m.running.is_some() && m.node().id == *l)
            {
                return idx;
            }
            assert!(Instant::now() < deadline, "no common leader within {timeout:?}: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().filter(|m| m.running.is_some()).map(Member::endpoint).collect()
    }
}

fn rand_token() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Polls `f` until it returns `Some`, failing after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The gRPC status inside an etcd-client error (panics on any other kind of error).
pub fn grpc_status(err: &etcd_client::Error) -> &tonic::Status {
    match err {
        etcd_client::Error::GRpcStatus(status) => status,
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

/// Asserts that `result` failed with exactly this gRPC code and message.
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, etcd_client::Error>, code: tonic::Code, message: &str) {
    let err = result.expect_err("expected an error");
    let status = grpc_status(&err);
    assert_eq!((status.code(), status.message()), (code, message), "unexpected status: {status:?}");
}
