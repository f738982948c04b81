//! `etcdserverpb.Lease`: grant, revoke, keep-alive, time-to-live, list.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::node::Node;
use crate::pb::etcdserverpb::lease_server::Lease;
use crate::pb::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use crate::pb::peer::InternalRequest;
use crate::pb::peer::internal_request::Request as Internal;
use crate::pb::peer::internal_response::Response as Outcome;

/// The Lease service.
#[derive(Debug, Clone)]
pub struct LeaseService {
    node: Arc<Node>,
}

impl LeaseService {
    /// Serves leases of `node`.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

/// A fresh positive lease ID (etcd's IDs are positive int64).
fn new_lease_id() -> i64 {
    loop {
        let id = rand::random::<i64>() & i64::MAX;
        if id != 0 {
            return id;
        }
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, request: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        let mut req = request.into_inner();
        if req.id == 0 {
            req.id = new_lease_id();
        }
        match self.node.propose(InternalRequest { request: Some(Internal::LeaseGrant(req)) }).await? {
            Outcome::LeaseGrant(mut r) => {
                self.node.complete(&mut r.header);
                Ok(Response::new(r))
            }
            _ => Err(Status::internal("unexpected response")),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let req = request.into_inner();
        match self.node.propose(InternalRequest { request: Some(Internal::LeaseRevoke(req)) }).await? {
            Outcome::LeaseRevoke(mut r) => {
                self.node.complete(&mut r.header);
                Ok(Response::new(r))
            }
            _ => Err(Status::internal("unexpected response")),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let node = self.node.clone();
        tokio::spawn(async move {
            loop {
                let req = tokio::select! {
                    () = node.shutdown.cancelled() => return,
                    msg = inbound.next() => match msg {
                        Some(Ok(req)) => req,
                        _ => return,
                    },
                };
                let reply = match node.keep_alive(req.id).await {
                    Ok(ttl) => {
                        let revision = node.mvcc.revisions().map(|r| r.current).unwrap_or(0);
                        Ok(LeaseKeepAliveResponse { header: node.header(revision), id: req.id, ttl })
                    }
                    Err(e) => Err(Status::from(e)),
                };
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        self.node.linearize().await?;
        let revision = self.node.mvcc.revisions().map_err(Status::from)?.current;
        let header = self.node.header(revision);
        let Some((granted, keys)) = self.node.mvcc.lease(req.id)? else {
            return Ok(Response::new(LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: vec![],
            }));
        };
        let ttl = self.node.remaining_ttl(req.id).await?;
        Ok(Response::new(LeaseTimeToLiveResponse {
            header,
            id: req.id,
            ttl,
            granted_ttl: granted,
            keys: if req.keys { keys } else { Vec::new() },
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.node.linearize().await?;
        let leases = self.node.mvcc.leases().map_err(Status::from)?;
        let revision = self.node.mvcc.revisions().map_err(Status::from)?.current;
        Ok(Response::new(LeaseLeasesResponse {
            header: self.node.header(revision),
            leases: leases.into_iter().map(|(id, _)| LeaseStatus { id }).collect(),
        }))
    }
}
