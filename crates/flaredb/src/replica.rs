//! A running replica of one group on this node: its Raft, state machine, proposal batcher and
//! latches, and the checks every request goes through.

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::{mpsc, oneshot};
use ultracloud_raftlog::batcher::{BatchError, Batcher, Batching};

use crate::error::FlareError;
use crate::latches::Latches;
use crate::mvcc::OnePc;
use crate::raft::state_machine::StateMachine;
use crate::raft::types::{Command, Outcome, Outcomes, Proposal, Raft, TypeConfig};
use crate::region::{NodeId, RegionDescriptor, RegionId};
use crate::ts::Ts;

/// How long a request may wait for a leader, a commit or an apply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Hands out timestamps (the oracle, wherever it runs). The node implements it; a replica
/// knows only this trait, so that replicas do not depend on the node that owns them.
pub trait TimestampSource: Send + Sync + 'static {
    /// Reserves `count` consecutive timestamps and returns the first. (Boxed: one call per
    /// proposed batch, and it keeps the trait usable as `dyn`.)
    fn timestamps(&self, count: u32) -> futures::future::BoxFuture<'_, Result<Ts, FlareError>>;
}

/// How a region's batcher packs commands: one-phase writes get their commit timestamps when
/// their batch is proposed, in proposal order.
pub struct CommandBatching {
    tso: Arc<dyn TimestampSource>,
}

impl Batching for CommandBatching {
    type Config = TypeConfig;
    type Request = Command;
    type Response = Outcome;

    fn size(request: &Command) -> usize {
        match request {
            Command::Prewrite { mutations, .. } => mutations
                .iter()
                .map(|m| {
                    m.key.len()
                        + match &m.op {
                            crate::mvcc::Op::Put(v) => v.len(),
                            crate::mvcc::Op::Delete => 0,
                        }
                })
                .sum(),
            Command::OnePc { op: OnePc::Put { value, .. }, .. } => value.len(),
            _ => 64,
        }
    }

    fn pack(requests: Vec<Command>) -> Proposal {
        Proposal(requests)
    }

    fn unpack(response: Outcomes, count: usize) -> Option<Vec<Outcome>> {
        (response.0.len() == count).then_some(response.0)
    }

    async fn prepare(&self, requests: &mut [Command]) -> Result<(), String> {
        let n = requests.iter().filter(|c| matches!(c, Command::OnePc { .. })).count();
        if n == 0 {
            return Ok(());
        }
        let mut ts = self.tso.timestamps(n as u32).await.map_err(|e| e.to_string())?;
        for c in requests.iter_mut() {
            if let Command::OnePc { commit_ts, .. } = c {
                *commit_ts = ts;
                ts += 1;
            }
        }
        Ok(())
    }
}

/// Confirms leadership for reads, one quorum round for every read that queued before the round
/// started (reads that arrive during a round wait for the next one, so each read's confirmation
/// happened after it arrived: still linearizable, with one heartbeat round per batch instead of
/// per read).
async fn confirm_reads(id: RegionId, raft: Raft, mut queue: mpsc::Receiver<oneshot::Sender<Result<u64, FlareError>>>) {
    while let Some(first) = queue.recv().await {
        let mut waiting = vec![first];
        while let Ok(r) = queue.try_recv() {
            waiting.push(r);
        }
        let result = match raft.get_read_log_id().await {
            Ok((log_id, _)) => Ok(log_id.map_or(0, |l| l.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {
                Err(FlareError::NotLeader { region: id, leader: None })
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                Err(FlareError::Unavailable(format!("region {id}: {e}")))
            }
            Err(RaftError::Fatal(e)) => Err(FlareError::Unavailable(format!("region {id}: {e}"))),
        };
        for w in waiting {
            let _ = w.send(result.clone());
        }
    }
}

/// A replica of one group.
pub struct Replica {
    /// The group.
    pub id: RegionId,
    /// This node.
    pub node: NodeId,
    /// Its Raft.
    pub raft: Raft,
    /// Its state machine.
    pub sm: StateMachine,
    /// Keys of one-phase writes in flight.
    pub latches: Latches,
    /// Keys in the region at the last size check (leaders only; for heartbeats and splits).
    pub approximate_keys: std::sync::atomic::AtomicU64,
    batcher: Batcher<CommandBatching>,
    reads: mpsc::Sender<oneshot::Sender<Result<u64, FlareError>>>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Replica {
    /// Wraps a started Raft.
    pub fn new(id: RegionId, node: NodeId, raft: Raft, sm: StateMachine, tso: Arc<dyn TimestampSource>) -> Self {
        let batcher = Batcher::spawn(raft.clone(), CommandBatching { tso });
        let (reads, queue) = mpsc::channel(4096);
        tokio::spawn(confirm_reads(id, raft.clone(), queue));
        Self {
            id,
            node,
            raft,
            sm,
            latches: Latches::default(),
            approximate_keys: std::sync::atomic::AtomicU64::new(0),
            batcher,
            reads,
        }
    }

    /// Whether this replica leads its group now.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.state == ServerState::Leader && m.current_leader == Some(self.node)
    }

    /// The leader's ID and address, when known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
        Some((id, addr))
    }

    fn not_leader(&self) -> FlareError {
        FlareError::NotLeader { region: self.id, leader: self.leader() }
    }

    /// The descriptor, checked against the client's view: same version, every key inside.
    pub fn check(&self, version: Option<u64>, keys: &[&[u8]]) -> Result<RegionDescriptor, FlareError> {
        let desc = self.sm.desc().ok_or(FlareError::RegionNotFound { region: self.id })?;
        if version.is_some_and(|v| v != desc.version) {
            return Err(FlareError::StaleRegion { region: self.id, current: Some(Box::new(desc)) });
        }
        if let Some(k) = keys.iter().find(|k| !desc.contains(k)) {
            return Err(FlareError::KeyNotInRegion { key: k.to_vec(), region: self.id });
        }
        Ok(desc)
    }

    /// Proposes `cmd` on the leader and returns its outcome (errors included).
    pub async fn propose(&self, cmd: Command) -> Result<Outcome, FlareError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, self.batcher.propose(cmd)).await {
            Err(_) => Err(FlareError::Unavailable(format!("region {}: proposal timed out", self.id))),
            Ok(Err(BatchError::NotLeader(_))) => Err(self.not_leader()),
            Ok(Err(BatchError::Failed(e))) => Err(FlareError::Unavailable(format!("region {}: {e}", self.id))),
            Ok(Ok(Outcome::Error(e))) => Err(e),
            Ok(Ok(o)) => Ok(o),
        }
    }

    /// Makes a read on this replica linearizable: confirms leadership with a quorum and waits
    /// until everything committed before is applied.
    pub async fn read_index(&self) -> Result<(), FlareError> {
        let (reply, answer) = oneshot::channel();
        self.reads.send(reply).await.map_err(|_| FlareError::Unavailable("replica stopped".into()))?;
        let index = match answer.await.map_err(|_| FlareError::Unavailable("replica stopped".into()))? {
            Ok(index) => index,
            Err(FlareError::NotLeader { .. }) => return Err(self.not_leader()),
            Err(e) => return Err(e),
        };
        tokio::time::timeout(REQUEST_TIMEOUT, self.sm.wait_applied(index))
            .await
            .map_err(|_| FlareError::Unavailable(format!("region {}: apply timed out", self.id)))
    }

    /// Refuses reads below the region's GC safe point.
    pub fn check_read_ts(&self, ts: Ts) -> Result<(), FlareError> {
        let safe_point = self.sm.shared().gc_safe_point;
        if ts != u64::MAX && ts < safe_point {
            return Err(FlareError::SnapshotTooOld { ts, safe_point });
        }
        Ok(())
    }
}
