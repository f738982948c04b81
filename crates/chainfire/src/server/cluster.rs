//! `etcdserverpb.Cluster`: member list, add, remove, update, promote. Changes run on the
//! leader; a follower forwards them through the peer protocol.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::ChangeMembers;
use tonic::{Request, Response, Status};

use crate::config::{member_id, socket_of};
use crate::error::EtcdError;
use crate::node::Node;
use crate::pb::etcdserverpb::cluster_server::Cluster;
use crate::pb::etcdserverpb::{
    Member as PbMember, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest,
    MemberUpdateResponse,
};
use crate::pb::peer::peer_client::PeerClient;
use crate::raft::network::{peer_channel, peer_client};
use crate::raft::types::Member;

/// The Cluster service.
#[derive(Debug, Clone)]
pub struct ClusterService {
    node: Arc<Node>,
}

impl ClusterService {
    /// Serves membership of `node`'s cluster.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    fn leader_client(&self) -> Result<PeerClient<tonic::transport::Channel>, EtcdError> {
        let leader = self.node.leader().ok_or(EtcdError::NoLeader)?;
        let nodes = self.node.nodes();
        let url = nodes.get(&leader).and_then(|m| m.peer_urls.first()).ok_or(EtcdError::NoLeader)?;
        Ok(peer_client(peer_channel(url).map_err(|e| EtcdError::Internal(e.to_string()))?))
    }

    fn revision(&self) -> i64 {
        self.node.mvcc.revisions().map(|r| r.current).unwrap_or(0)
    }
}

/// Adds a member on the leader: validates URLs, picks an ID, adds it as a learner.
pub async fn add_on_leader(node: &Node, req: MemberAddRequest) -> Result<MemberAddResponse, EtcdError> {
    if req.peer_ur_ls.is_empty() {
        return Err(EtcdError::MemberBadUrls);
    }
    for url in &req.peer_ur_ls {
        socket_of(url).map_err(|_| EtcdError::MemberBadUrls)?;
    }
    let existing = node.nodes();
    if existing.values().any(|m| m.peer_urls.iter().any(|u| req.peer_ur_ls.contains(u))) {
        return Err(EtcdError::PeerUrlExists);
    }
    let salt = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or_default();
    let id = member_id(&req.peer_ur_ls, &node.config.initial_cluster_token, Some(salt));
    // etcd counts a new member as a voter at once; we add it as a learner and the leader
    // promotes it as soon as it has caught up (see `server::promote_caught_up_learners`), so a
    // member that was added but not started never holds the quorum hostage.
    let member = Member { name: String::new(), peer_urls: req.peer_ur_ls.clone(), learner: req.is_learner };
    node.add_member(id, member).await?;
    let members = node.members()?;
    let added = members.iter().find(|m| m.id == id).cloned().unwrap_or(PbMember {
        id,
        peer_ur_ls: req.peer_ur_ls,
        is_learner: true,
        ..Default::default()
    });
    Ok(MemberAddResponse { header: None, member: Some(added), members })
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let req = request.into_inner();
        let mut resp = if self.node.is_leader() {
            add_on_leader(&self.node, req).await?
        } else {
            let resp = self.leader_client()?.member_add(req).await?.into_inner();
            // Read your writes: the change is applied here too before we answer.
            self.node.linearize().await?;
            resp
        };
        resp.header = self.node.header(self.revision());
        Ok(Response::new(resp))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let req = request.into_inner();
        if self.node.is_leader() {
            self.node.remove_member(req.id).await?;
        } else {
            self.leader_client()?.member_remove(req).await?;
            self.node.linearize().await?;
        }
        let members = self.node.members()?;
        Ok(Response::new(MemberRemoveResponse { header: self.node.header(self.revision()), members }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let req = request.into_inner();
        if !self.node.is_leader() {
            return Err(EtcdError::NoLeader.into());
        }
        for url in &req.peer_ur_ls {
            socket_of(url).map_err(|_| EtcdError::MemberBadUrls)?;
        }
        let mut nodes = self.node.nodes();
        let member = nodes.get_mut(&req.id).ok_or(EtcdError::MemberNotFound)?;
        member.peer_urls = req.peer_ur_ls;
        let update = std::collections::BTreeMap::from([(req.id, member.clone())]);
        self.node
            .raft
            .change_membership(ChangeMembers::SetNodes(update), false)
            .await
            .map_err(|e| EtcdError::Internal(e.to_string()))?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.node.header(self.revision()),
            members: self.node.members()?,
        }))
    }

    async fn member_list(&self, request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.node.linearize().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: self.node.header(self.revision()),
            members: self.node.members()?,
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let req = request.into_inner();
        if self.node.is_leader() {
            self.node.promote_member(req.id).await?;
        } else {
            self.leader_client()?.member_promote(req).await?;
            self.node.linearize().await?;
        }
        Ok(Response::new(MemberPromoteResponse {
            header: self.node.header(self.revision()),
            members: self.node.members()?,
        }))
    }
}
