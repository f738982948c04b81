//! A flaredb cluster of real `ultracloud flaredb` processes on 127.0.0.1 for tests: start,
//! SIGKILL, restart, join; everything is killed and deleted when the cluster is dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ultracloud_flaredb::Client;
use ultracloud_flaredb::api::RegionsResponse;

const BIN: &str = env!("CARGO_BIN_EXE_ultracloud");

use crate::ports::stable_port as free_port;

/// One node process.
pub struct FNode {
    pub name: String,
    pub addr: String,
    args: Vec<String>,
    log: std::path::PathBuf,
    child: Option<Child>,
}

impl FNode {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(BIN)
            .arg("flaredb")
            .args(&self.args)
            .env("ULTRACLOUD_LOG_LEVEL", "info,openraft=error")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL: what a crash looks like.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The node's log so far (for failure reports).
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for FNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster; dropped = every process killed and the directory removed.
pub struct FCluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<FNode>,
    extra: Vec<String>,
}

impl FCluster {
    /// `initial` nodes forming a cluster, each started with `extra` flags.
    pub fn start(initial: usize, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..initial).map(|_| free_port()).collect();
        let ic: Vec<String> = ports.iter().enumerate().map(|(i, p)| format!("n{}=127.0.0.1:{p}", i + 1)).collect();
        let mut c = Self { dir, nodes: Vec::new(), extra: extra.iter().map(|s| (*s).to_owned()).collect() };
        for (i, p) in ports.iter().enumerate() {
            let flag = format!("--initial-cluster={}", ic.join(","));
            c.add(&format!("n{}", i + 1), *p, &flag);
        }
        c
    }

    fn add(&mut self, name: &str, port: u16, cluster_flag: &str) {
        let data = self.dir.path().join(name);
        let mut args = vec![
            format!("--name={name}"),
            format!("--data-dir={}", data.display()),
            format!("--listen=127.0.0.1:{port}"),
            format!("--admin-listen=127.0.0.1:{}", free_port()),
            cluster_flag.to_owned(),
        ];
        args.extend(self.extra.iter().cloned());
        let mut node = FNode {
            name: name.to_owned(),
            addr: format!("127.0.0.1:{port}"),
            args,
            log: self.dir.path().join(format!("{name}.log")),
            child: None,
        };
        node.spawn();
        self.nodes.push(node);
    }

    /// Starts a node that joins through the first node.
    pub fn join(&mut self, name: &str) {
        let seed = self.nodes[0].addr.clone();
        self.add(name, free_port(), &format!("--join={seed}"));
    }

    pub fn restart(&mut self, i: usize) {
        self.nodes[i].kill();
        self.nodes[i].spawn();
    }

    /// A client of every node.
    pub fn client(&self) -> Client {
        Client::new(self.nodes.iter().map(|n| n.addr.clone()).collect()).unwrap()
    }

    /// Waits until a write goes through (the cluster elected its leaders).
    pub async fn ready(&self) -> Client {
        let c = self.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match c.put(b"__ready", b"1").await {
                Ok(()) => return c,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("waiting for the cluster: {e}");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => panic!("cluster not ready: {e}\n{}", self.logs()),
            }
        }
    }

    /// Polls the region map until `pred` holds (or panics after `secs`).
    pub async fn wait_regions(
        &self,
        c: &Client,
        secs: u64,
        what: &str,
        pred: impl Fn(&RegionsResponse) -> bool,
    ) -> RegionsResponse {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(r) = c.regions().await
                && pred(&r)
            {
                return r;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; regions: {:#?}\n{}", c.regions().await.ok(), self.logs());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The last lines of every node's log.
    pub fn logs(&self) -> String {
        self.nodes.iter().map(|n| format!("--- {} ---\n{}", n.name, n.log_tail())).collect::<Vec<_>>().join("\n")
    }

    pub fn node_id(&self, i: usize) -> u64 {
        ultracloud_flaredb::config::node_id(&self.nodes[i].name)
    }
}
