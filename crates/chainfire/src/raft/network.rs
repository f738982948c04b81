//! The Raft transport: openraft's RPCs as bincode payloads in the `Peer` gRPC service.
//!
//! The receiving side answers `Result<Response, RaftError>` encoded the same way, so a remote
//! Raft error reaches openraft as a `RemoteError` and a dead peer as `Unreachable` (openraft then
//! backs off instead of hammering it).

use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use super::types::{Member, TypeConfig};
use crate::pb::peer::RaftPayload;
use crate::pb::peer::peer_client::PeerClient;

/// Largest gRPC message between peers (snapshots travel in chunks below this).
pub const MAX_PEER_MESSAGE: usize = 64 * 1024 * 1024;

/// Creates connections to peers, reusing one HTTP/2 channel per peer URL (openraft asks for a
/// client per replication stream and per leadership check; a channel is cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Network {
    channels: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Channel>>>,
}

impl Network {
    fn channel(&self, url: &str) -> Result<Channel, crate::tls::EndpointError> {
        let mut map = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = map.get(url) {
            return Ok(c.clone());
        }
        let c = peer_channel(url)?;
        map.insert(url.to_owned(), c.clone());
        Ok(c)
    }
}

/// A lazily connected client to one peer.
#[derive(Debug)]
pub struct PeerConnection {
    target: u64,
    client: Option<PeerClient<Channel>>,
    url: Option<String>,
}

/// Opens a lazy gRPC channel to a peer URL (over TLS with this member's certificate when the
/// URL is `https://`).
pub fn peer_channel(url: &str) -> Result<Channel, crate::tls::EndpointError> {
    Ok(crate::tls::endpoint(url)?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .connect_lazy())
}

/// A peer client with our message size limits.
pub fn peer_client(channel: Channel) -> PeerClient<Channel> {
    PeerClient::new(channel).max_decoding_message_size(MAX_PEER_MESSAGE).max_encoding_message_size(MAX_PEER_MESSAGE)
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &Member) -> Self::Network {
        let url = node.peer_urls.first().cloned();
        let client = url.as_deref().and_then(|u| self.channel(u).ok()).map(peer_client);
        PeerConnection { target, client, url }
    }
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<u64, Member, RaftError<u64, E>>>;

impl PeerConnection {
    fn client(&mut self) -> Result<&mut PeerClient<Channel>, Unreachable> {
        if self.client.is_none() {
            let url = self.url.clone().ok_or_else(|| Unreachable::new(&std::io::Error::other("peer has no URL")))?;
            let channel = peer_channel(&url).map_err(|e| Unreachable::new(&e))?;
            self.client = Some(peer_client(channel));
        }
        // Just set above when it was missing.
        self.client.as_mut().ok_or_else(|| Unreachable::new(&std::io::Error::other("no client")))
    }

    async fn call<Req, Resp, E>(&mut self, kind: Kind, req: &Req, option: &RPCOption) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let data = bincode::serialize(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let target = self.target;
        let client = self.client().map_err(RPCError::Unreachable)?;
        let payload = RaftPayload { data };
        let fut = async {
            match kind {
                Kind::Append => client.append_entries(payload).await,
                Kind::Vote => client.vote(payload).await,
                Kind::Snapshot => client.install_snapshot(payload).await,
            }
        };
        let reply = match tokio::time::timeout(option.hard_ttl(), fut).await {
            Err(_) => {
                return Err(RPCError::Network(NetworkError::new(&std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "peer RPC timed out",
                ))));
            }
            Ok(Err(status)) => {
                // Transport failures (connection refused, reset) surface as Unavailable/Unknown.
                let err = std::io::Error::other(status.message().to_owned());
                return Err(if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Unknown) {
                    RPCError::Unreachable(Unreachable::new(&err))
                } else {
                    RPCError::Network(NetworkError::new(&err))
                });
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let result: Result<Resp, RaftError<u64, E>> =
            bincode::deserialize(&reply.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        self.call(Kind::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.call(Kind::Snapshot, &rpc, &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, option: RPCOption) -> RpcResult<VoteResponse<u64>> {
        self.call(Kind::Vote, &rpc, &option).await
    }
}
