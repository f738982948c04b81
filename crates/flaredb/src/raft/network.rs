//! The Raft transport: openraft's RPCs as bincode bodies over HTTP to
//! `/internal/raft/{group}/{append|vote|snapshot}` on the target node.
//!
//! One HTTP client (one connection pool) serves every group of the node. The receiving side
//! answers `Result<Response, RaftError>` encoded the same way, so a remote Raft error reaches
//! openraft as a `RemoteError`, and a node that is down, or lacks the group, as `Unreachable`
//! (openraft then backs off instead of hammering it).

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::{NodeInfo, TypeConfig};
use crate::region::RegionId;

/// Creates the connections of one group to its peers.
#[derive(Debug, Clone)]
pub struct Network {
    group: RegionId,
    http: reqwest::Client,
}

impl Network {
    /// The transport of `group`, over the node's shared HTTP client.
    pub fn new(group: RegionId, http: reqwest::Client) -> Self {
        Self { group, http }
    }
}

/// A connection from one group to one peer.
#[derive(Debug)]
pub struct PeerConnection {
    target: u64,
    base: String,
    http: reqwest::Client,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> Self::Network {
        PeerConnection {
            target,
            base: format!("{}://{}/internal/raft/{}", ultracloud_tls::client::scheme(), node.addr, self.group),
            http: self.http.clone(),
        }
    }
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<u64, NodeInfo, RaftError<u64, E>>>;

impl PeerConnection {
    async fn call<Req, Resp, E>(&mut self, kind: &str, req: &Req, option: &RPCOption) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = bincode::serialize(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let sent = self
            .http
            .post(format!("{}/{kind}", self.base))
            .timeout(option.hard_ttl())
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await;
        let reply = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        let status = reply.status();
        let bytes = reply.bytes().await.map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if !status.is_success() {
            // The node is up but cannot serve the group (not created yet, or being removed).
            let msg = String::from_utf8_lossy(&bytes).into_owned();
            return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!("{status}: {msg}")))));
        }
        let result: Result<Resp, RaftError<u64, E>> =
            bincode::deserialize(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        self.call("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, option: RPCOption) -> RpcResult<VoteResponse<u64>> {
        self.call("vote", &rpc, &option).await
    }
}
