//! A chainfire member: Raft, the store, the watch hub and the lessor, and the operations the
//! etcd services need from them — proposing writes (forwarded to the leader from followers),
//! linearizable reads (read index), lease renewal and membership.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use tonic::transport::Channel;

use crate::batcher::{BatchError, Batcher};
use crate::config::ChainfireConfig;
use crate::error::EtcdError;
use crate::lessor::Lessor;
use crate::mvcc::Mvcc;
use crate::pb::etcdserverpb::{Member as PbMember, ResponseHeader};
use crate::pb::peer::internal_response::Response;
use crate::pb::peer::peer_client::PeerClient;
use crate::pb::peer::{Empty, InternalRequest, InternalResponse, KeepAliveRequest, TimeToLiveRequest};
use crate::raft::network::{peer_channel, peer_client};
use crate::raft::state_machine::StateMachine;
use crate::raft::types::{Member, Raft};
use crate::watch_hub::WatchHub;

/// How long a write or linearizable read may wait for a leader and a commit.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);
/// Pause between retries while there is no leader.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// One member of a chainfire cluster.
pub struct Node {
    /// This member's ID.
    pub id: u64,
    /// The cluster's ID.
    pub cluster_id: u64,
    /// The Raft handle.
    pub raft: Raft,
    /// The store.
    pub mvcc: Mvcc,
    /// Applied changes, for watchers.
    pub hub: WatchHub,
    /// Lease deadlines (acted on by the leader).
    pub lessor: Arc<Lessor>,
    /// The configuration this member started with.
    pub config: ChainfireConfig,
    /// The state machine (for consistent dumps).
    pub state_machine: StateMachine,
    /// Cancelled when the member stops; long-lived streams (watch, keep-alive) end on it so the
    /// servers can finish their graceful shutdown.
    pub shutdown: tokio_util::sync::CancellationToken,
    peers: Mutex<HashMap<String, PeerClient<Channel>>>,
    batcher: Batcher,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).field("name", &self.config.name).finish_non_exhaustive()
    }
}

impl Node {
    /// Assembles a member from its parts (see `server::start` for the whole start-up).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        cluster_id: u64,
        raft: Raft,
        mvcc: Mvcc,
        hub: WatchHub,
        lessor: Arc<Lessor>,
        config: ChainfireConfig,
        state_machine: StateMachine,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        let raft_for_batcher = raft.clone();
        Self {
            id,
            cluster_id,
            raft,
            mvcc,
            hub,
            lessor,
            config,
            state_machine,
            shutdown,
            peers: Mutex::new(HashMap::new()),
            batcher: Batcher::spawn(raft_for_batcher, crate::batcher::EtcdBatching),
        }
    }

    /// A response header at `revision`.
    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        let term = self.raft.metrics().borrow().current_term;
        Some(ResponseHeader { cluster_id: self.cluster_id, member_id: self.id, revision, raft_term: term })
    }

    /// Fills in the cluster fields of a header the store produced.
    pub fn complete(&self, header: &mut Option<ResponseHeader>) {
        let revision = header.as_ref().map_or(0, |h| h.revision);
        *header = self.header(revision);
    }

    /// The current leader, if known.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// Whether this member leads right now.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    fn peer(&self, member: &Member) -> Result<PeerClient<Channel>, EtcdError> {
        let url = member.peer_urls.first().ok_or(EtcdError::NoLeader)?;
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = peers.get(url) {
            return Ok(c.clone());
        }
        let channel = peer_channel(url).map_err(|e| EtcdError::Internal(format!("bad peer URL {url}: {e}")))?;
        let client = peer_client(channel);
        peers.insert(url.clone(), client.clone());
        Ok(client)
    }

    fn leader_member(&self) -> Option<Member> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        m.membership_config.membership().get_node(&leader).cloned()
    }

    /// Replicates `req` and returns what the state machine answered. On a follower the request
    /// is forwarded to the leader. A request is retried only when it certainly was not
    /// accepted (no leader known, or the leader could not be reached), so it applies once.
    pub async fn propose(&self, req: InternalRequest) -> Result<Response, EtcdError> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            if self.is_leader() {
                match self.batcher.propose(req.clone()).await {
                    Ok(resp) => return into_result(resp),
                    // Lost leadership before accepting it: retry with the new leader.
                    Err(BatchError::NotLeader(_)) => {}
                    Err(BatchError::Failed(e)) => return Err(EtcdError::Internal(e)),
                }
            } else if let Some(leader) = self.leader_member() {
                let mut client = self.peer(&leader)?;
                match client.propose(req.clone()).await {
                    Ok(resp) => return into_result(resp.into_inner()),
                    // The leader changed under us or is unreachable: nothing was applied.
                    Err(s) if matches!(s.code(), tonic::Code::FailedPrecondition | tonic::Code::Unavailable) => {}
                    Err(s) => return Err(EtcdError::from_parts(s.code() as i32, s.message())),
                }
            }
            if Instant::now() >= deadline {
                return Err(if self.leader().is_some() { EtcdError::Timeout } else { EtcdError::NoLeader });
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Serves `req` as the leader only (for forwarded proposals): no further forwarding.
    pub async fn propose_as_leader(&self, req: InternalRequest) -> Result<InternalResponse, tonic::Status> {
        match self.batcher.propose(req).await {
            Ok(resp) => Ok(resp),
            Err(BatchError::NotLeader(_)) => Err(tonic::Status::failed_precondition("etcdserver: not leader")),
            Err(BatchError::Failed(e)) => Err(tonic::Status::internal(e)),
        }
    }

    /// Waits until this member's store reflects every write committed before the call
    /// (Raft read index), so a following local read is linearizable. The leader confirms its
    /// leadership with a quorum (one heartbeat round, none in a one-member cluster); a follower
    /// asks the leader for the read index. Either then waits for its own store to apply it.
    pub async fn linearize(&self) -> Result<(), EtcdError> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let index = match self.raft.get_read_log_id().await {
                Ok((read_log_id, _)) => Some(read_log_id.map_or(0, |l| l.index)),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => match f.leader_node.clone() {
                    Some(leader) => {
                        let mut client = self.peer(&leader)?;
                        client.read_index(Empty {}).await.ok().map(|r| r.into_inner().index)
                    }
                    None => None,
                },
                Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => None,
                Err(RaftError::Fatal(e)) => return Err(EtcdError::Internal(e.to_string())),
            };
            if let Some(index) = index {
                let left = deadline.saturating_duration_since(Instant::now());
                return tokio::time::timeout(left, self.hub.wait_applied(index)).await.map_err(|_| EtcdError::Timeout);
            }
            if Instant::now() >= deadline {
                return Err(if self.leader().is_some() { EtcdError::Timeout } else { EtcdError::NoLeader });
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Renews a lease on the leader; returns the TTL, 0 when the lease does not exist.
    pub async fn keep_alive(&self, id: i64) -> Result<i64, EtcdError> {
        if self.is_leader() {
            return Ok(self.lessor.keep_alive(id).unwrap_or(0));
        }
        let leader = self.leader_member().ok_or(EtcdError::NoLeader)?;
        let resp = self.peer(&leader)?.lease_keep_alive(KeepAliveRequest { id }).await.map_err(status_to_etcd)?;
        Ok(resp.into_inner().ttl)
    }

    /// Remaining TTL of a lease as the leader sees it (-1 when unknown).
    pub async fn remaining_ttl(&self, id: i64) -> Result<i64, EtcdError> {
        if self.is_leader() {
            return Ok(self.lessor.remaining(id).unwrap_or(-1));
        }
        let leader = self.leader_member().ok_or(EtcdError::NoLeader)?;
        let resp = self.peer(&leader)?.lease_time_to_live(TimeToLiveRequest { id }).await.map_err(status_to_etcd)?;
        Ok(resp.into_inner().ttl)
    }

    /// The members as etcd's API shows them: Raft membership plus published attributes.
    pub fn members(&self) -> Result<Vec<PbMember>, EtcdError> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let attrs: HashMap<u64, crate::pb::peer::MemberAttributes> =
            self.mvcc.member_attributes()?.into_iter().map(|a| (a.id, a)).collect();
        let mut out = Vec::new();
        for (id, node) in membership.nodes() {
            let a = attrs.get(id);
            out.push(PbMember {
                id: *id,
                name: a.map(|a| a.name.clone()).unwrap_or_else(|| node.name.clone()),
                peer_ur_ls: node.peer_urls.clone(),
                client_ur_ls: a.map(|a| a.client_urls.clone()).unwrap_or_default(),
                is_learner: !voters.contains(id),
            });
        }
        Ok(out)
    }

    /// The Raft nodes of the current membership.
    pub fn nodes(&self) -> BTreeMap<u64, Member> {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config.membership().nodes().map(|(id, n)| (*id, n.clone())).collect()
    }

    /// Adds a member as a learner (on the leader); it is promoted once it caught up unless
    /// `learner` asks to keep it a learner.
    pub async fn add_member(&self, id: u64, member: Member) -> Result<(), EtcdError> {
        self.raft.add_learner(id, member, false).await.map_err(|e| membership_error(&e))?;
        Ok(())
    }

    /// Removes a member (on the leader).
    pub async fn remove_member(&self, id: u64) -> Result<(), EtcdError> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(EtcdError::MemberNotFound);
        }
        let is_voter = membership.voter_ids().any(|v| v == id);
        let change = if is_voter {
            let voters: BTreeSet<u64> = membership.voter_ids().filter(|v| *v != id).collect();
            if voters.is_empty() {
                return Err(EtcdError::NotEnoughStartedMembers);
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.raft.change_membership(change, false).await.map_err(|e| membership_error(&e))?;
        Ok(())
    }

    /// Promotes a learner to voter (on the leader), if it has caught up.
    pub async fn promote_member(&self, id: u64) -> Result<(), EtcdError> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(EtcdError::MemberNotFound);
        }
        if membership.voter_ids().any(|v| v == id) {
            return Err(EtcdError::MemberNotLearner);
        }
        if !self.caught_up(id) {
            return Err(EtcdError::LearnerNotReady);
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| membership_error(&e))?;
        Ok(())
    }

    /// Whether a member's replicated log is within a few entries of the leader's.
    pub fn caught_up(&self, id: u64) -> bool {
        let m = self.raft.metrics().borrow().clone();
        let last = m.last_log_index.unwrap_or(0);
        let matched =
            m.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map_or(0, |log_id| log_id.index);
        last.saturating_sub(matched) <= 16 && matched > 0
    }
}

fn membership_error(e: &RaftError<u64, ClientWriteError<u64, Member>>) -> EtcdError {
    match e {
        // Leadership moved while the change was being proposed: the client retries.
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => EtcdError::NoLeader,
        other => EtcdError::Internal(other.to_string()),
    }
}

/// Turns a state machine answer into the response or its etcd error.
pub fn into_result(resp: InternalResponse) -> Result<Response, EtcdError> {
    if let Some(err) = resp.error {
        return Err(EtcdError::from_parts(err.code, &err.message));
    }
    resp.response.ok_or_else(|| EtcdError::Internal("empty response from state machine".into()))
}

fn status_to_etcd(s: tonic::Status) -> EtcdError {
    if s.code() == tonic::Code::Unavailable {
        EtcdError::NoLeader
    } else {
        EtcdError::from_parts(s.code() as i32, s.message())
    }
}
