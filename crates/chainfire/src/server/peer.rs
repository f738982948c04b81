//! The `Peer` service: Raft RPCs from other members, and what followers forward to the leader.

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::node::Node;
use crate::pb::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest,
    MemberRemoveResponse,
};
use crate::pb::peer::peer_server::Peer;
use crate::pb::peer::{
    Empty, InternalRequest, InternalResponse, KeepAliveRequest, KeepAliveResponse, MembersResponse, RaftPayload,
    ReadIndexResponse, TimeToLiveRequest, TimeToLiveResponse,
};
use crate::raft::types::TypeConfig;

/// The peer service of one member.
#[derive(Debug, Clone)]
pub struct PeerService {
    node: Arc<Node>,
}

impl PeerService {
    /// Serves `node`'s peers.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    fn require_leader(&self) -> Result<(), Status> {
        if self.node.is_leader() { Ok(()) } else { Err(Status::failed_precondition("etcdserver: not leader")) }
    }
}

fn decode<T: serde::de::DeserializeOwned>(payload: &RaftPayload) -> Result<T, Status> {
    bincode::deserialize(&payload.data).map_err(|e| Status::invalid_argument(format!("malformed raft message: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    bincode::serialize(value)
        .map(|data| Response::new(RaftPayload { data }))
        .map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let req: AppendEntriesRequest<TypeConfig> = decode(request.get_ref())?;
        encode(&self.node.raft.append_entries(req).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let req: VoteRequest<u64> = decode(request.get_ref())?;
        encode(&self.node.raft.vote(req).await)
    }

    async fn install_snapshot(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let req: InstallSnapshotRequest<TypeConfig> = decode(request.get_ref())?;
        encode(&self.node.raft.install_snapshot(req).await)
    }

    async fn propose(&self, request: Request<InternalRequest>) -> Result<Response<InternalResponse>, Status> {
        self.node.propose_as_leader(request.into_inner()).await.map(Response::new)
    }

    async fn read_index(&self, _request: Request<Empty>) -> Result<Response<ReadIndexResponse>, Status> {
        // The follower waits for its own store to apply the index; the leader need not.
        match self.node.raft.get_read_log_id().await {
            Ok((log_id, _)) => Ok(Response::new(ReadIndexResponse { index: log_id.map_or(0, |l| l.index) })),
            Err(e) => Err(Status::failed_precondition(e.to_string())),
        }
    }

    async fn lease_keep_alive(
        &self,
        request: Request<KeepAliveRequest>,
    ) -> Result<Response<KeepAliveResponse>, Status> {
        self.require_leader()?;
        let id = request.into_inner().id;
        Ok(Response::new(KeepAliveResponse { ttl: self.node.lessor.keep_alive(id).unwrap_or(0) }))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<TimeToLiveRequest>,
    ) -> Result<Response<TimeToLiveResponse>, Status> {
        self.require_leader()?;
        let id = request.into_inner().id;
        Ok(Response::new(TimeToLiveResponse { ttl: self.node.lessor.remaining(id).unwrap_or(-1) }))
    }

    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        self.require_leader()?;
        Ok(Response::new(super::cluster::add_on_leader(&self.node, request.into_inner()).await?))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        self.require_leader()?;
        self.node.remove_member(request.into_inner().id).await?;
        Ok(Response::new(MemberRemoveResponse { header: None, members: self.node.members()? }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.require_leader()?;
        self.node.promote_member(request.into_inner().id).await?;
        Ok(Response::new(MemberPromoteResponse { header: None, members: self.node.members()? }))
    }

    async fn members(&self, _request: Request<Empty>) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(MembersResponse {
            members: self.node.members().map_err(Status::from)?,
            cluster_id: self.node.cluster_id,
            leader_id: self.node.leader().unwrap_or(0),
        }))
    }
}
