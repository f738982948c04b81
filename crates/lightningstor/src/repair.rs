//! A storage node's repair and rebalance worker.
//!
//! Each pass walks the node's own blocks. For every block it asks the block's designated
//! holders (the layout's first `copies` nodes) whether they have it and sends it to those that
//! do not — a node that was down, or a new node the layout now names. A copy on a node that is
//! no longer a designated holder (it took the copy for a failed node, or the layout changed) is
//! dropped, but only once every designated holder has confirmed it holds the block. So the
//! replication factor comes back after a loss or an addition without any metadata: the blocks
//! themselves say where they should be.
//!
//! Blocks that no object references any more are not this worker's business: the gateway's
//! garbage collection deletes them.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::api::BlockId;
use crate::blocks::BlockStore;
use crate::data::Cluster;

/// Blocks listed per page of a pass.
const PAGE: usize = 1000;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairReport {
    /// Blocks of this node looked at.
    pub scanned: u64,
    /// Copies sent to designated holders that lacked them.
    pub copied: u64,
    /// Copies dropped here after every designated holder confirmed theirs.
    pub dropped: u64,
    /// Blocks left for a later pass (a holder could not be reached), with the first reasons.
    pub deferred: u64,
    /// Up to ten of the reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// How long the pass took.
    pub millis: u64,
}

/// `GET /v1/repair`: the worker's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairStatus {
    /// Whether this node repairs at all (it knows its peers).
    pub enabled: bool,
    /// Passes finished since start.
    pub passes: u64,
    /// Whether a pass is running now.
    pub running: bool,
    /// Blocks scanned so far by the running pass.
    pub progress: u64,
    /// The last finished pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<RepairReport>,
}

/// The worker of one node.
#[derive(Debug)]
pub struct Repairer {
    me: String,
    cluster: Cluster,
    store: Arc<BlockStore>,
    status: Mutex<RepairStatus>,
    // One pass at a time (the timer's and an operator's).
    pass_lock: tokio::sync::Mutex<()>,
}

impl Repairer {
    /// The worker of node `me` (a member of `cluster`) over its `store`.
    pub fn new(me: &str, cluster: Cluster, store: Arc<BlockStore>) -> Arc<Self> {
        let status = RepairStatus { enabled: true, ..RepairStatus::default() };
        Arc::new(Self {
            me: me.to_owned(),
            cluster,
            store,
            status: Mutex::new(status),
            pass_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The worker's state.
    pub fn status(&self) -> RepairStatus {
        self.status.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn update(&self, f: impl FnOnce(&mut RepairStatus)) {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Runs passes every `interval` until `shutdown`.
    pub fn spawn(self: &Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
                let report = me.pass().await;
                if report.copied + report.dropped + report.deferred > 0 {
                    tracing::info!(
                        scanned = report.scanned,
                        copied = report.copied,
                        dropped = report.dropped,
                        deferred = report.deferred,
                        millis = report.millis,
                        "repair pass"
                    );
                }
            }
        });
    }

    /// One pass over this node's blocks.
    pub async fn pass(&self) -> RepairReport {
        let _one = self.pass_lock.lock().await;
        let started = std::time::Instant::now();
        self.update(|s| {
            s.running = true;
            s.progress = 0;
        });
        let mut report = RepairReport::default();
        let mut after = None;
        loop {
            let store = self.store.clone();
            let listed = tokio::task::spawn_blocking(move || store.list(after, PAGE)).await;
            let page = match listed.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
                Ok(p) => p,
                Err(e) => {
                    note(&mut report, format!("listing this node's blocks: {e}"));
                    break;
                }
            };
            let Some(last) = page.last().copied() else { break };
            for id in page {
                self.repair(id, &mut report).await;
                report.scanned += 1;
                self.update(|s| s.progress = report.scanned);
            }
            after = Some(last);
        }
        report.millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let finished = report.clone();
        self.update(|s| {
            s.running = false;
            s.passes += 1;
            s.last = Some(finished);
        });
        report
    }

    async fn repair(&self, id: BlockId, report: &mut RepairReport) {
        let holders: Vec<String> = self.cluster.holders(&id).into_iter().map(str::to_owned).collect();
        let mut confirmed = 0usize;
        let mut data: Option<Vec<u8>> = None;
        for holder in &holders {
            if *holder == self.me {
                confirmed += 1;
                continue;
            }
            let Some(client) = self.cluster.node(holder) else { continue };
            match client.has(id).await {
                Ok(true) => confirmed += 1,
                Ok(false) => {
                    if data.is_none() {
                        match self.store.get(id).await {
                            Ok(Some(d)) => data = Some(d.to_vec()),
                            // Gone or rotten here: nothing to give (another copy repairs it).
                            Ok(None) | Err(_) => return,
                        }
                    }
                    match client.put(data.clone().unwrap_or_default()).await {
                        Ok(_) => {
                            confirmed += 1;
                            report.copied += 1;
                        }
                        Err(e) => note(report, format!("block {id} to {holder}: {e}")),
                    }
                }
                Err(e) => note(report, format!("block {id} at {holder}: {e}")),
            }
        }
        if confirmed < holders.len() {
            report.deferred += 1;
            return;
        }
        if !holders.contains(&self.me) {
            match self.store.delete(id).await {
                Ok(_) => report.dropped += 1,
                Err(e) => note(report, format!("dropping block {id} here: {e}")),
            }
        }
    }
}

fn note(report: &mut RepairReport, error: String) {
    if report.errors.len() < 10 {
        report.errors.push(error);
    }
}
