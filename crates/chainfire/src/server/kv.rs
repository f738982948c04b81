//! `etcdserverpb.KV`: Range, Put, DeleteRange, Txn, Compact.

use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};

use crate::error::EtcdError;
use crate::mvcc::write::{check_put, check_txn};
use crate::node::Node;
use crate::pb::etcdserverpb::kv_server::Kv;
use crate::pb::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use crate::pb::peer::InternalRequest;
use crate::pb::peer::internal_request::Request as Internal;
use crate::pb::peer::internal_response::Response as Outcome;
use crate::raft::state_machine::MAX_TXN_OPS;

/// The KV service.
#[derive(Debug, Clone)]
pub struct KvService {
    node: Arc<Node>,
}

impl KvService {
    /// Serves `node`'s store.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    fn check_size(&self, msg: &impl Message) -> Result<(), EtcdError> {
        if msg.encoded_len() > self.node.config.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        Ok(())
    }

    async fn propose(&self, req: Internal) -> Result<Outcome, Status> {
        Ok(self.node.propose(InternalRequest { request: Some(req) }).await?)
    }
}

fn unexpected() -> Status {
    Status::internal("etcdserver: unexpected response type")
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let req = request.into_inner();
        if req.key.is_empty() {
            return Err(EtcdError::EmptyKey.into());
        }
        if !req.serializable {
            self.node.linearize().await?;
        }
        let mut resp = self.node.mvcc.range(&req)?;
        self.node.complete(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let req = request.into_inner();
        check_put(&req)?;
        self.check_size(&req)?;
        match self.propose(Internal::Put(req)).await? {
            Outcome::Put(mut r) => {
                self.node.complete(&mut r.header);
                Ok(Response::new(r))
            }
            _ => Err(unexpected()),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let req = request.into_inner();
        if req.key.is_empty() {
            return Err(EtcdError::EmptyKey.into());
        }
        self.check_size(&req)?;
        match self.propose(Internal::DeleteRange(req)).await? {
            Outcome::DeleteRange(mut r) => {
                self.node.complete(&mut r.header);
                Ok(Response::new(r))
            }
            _ => Err(unexpected()),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let req = request.into_inner();
        check_txn(&req, MAX_TXN_OPS)?;
        self.check_size(&req)?;
        match self.propose(Internal::Txn(req)).await? {
            Outcome::Txn(mut r) => {
                self.node.complete(&mut r.header);
                complete_inner(&self.node, &mut r.responses);
                Ok(Response::new(r))
            }
            _ => Err(unexpected()),
        }
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        let req = request.into_inner();
        match self.propose(Internal::Compaction(req)).await? {
            Outcome::Compaction(mut r) => {
                self.node.complete(&mut r.header);
                Ok(Response::new(r))
            }
            _ => Err(unexpected()),
        }
    }
}

fn complete_inner(node: &Node, ops: &mut [crate::pb::etcdserverpb::ResponseOp]) {
    use crate::pb::etcdserverpb::response_op::Response as R;
    for op in ops {
        match &mut op.response {
            Some(R::ResponseRange(r)) => node.complete(&mut r.header),
            Some(R::ResponsePut(r)) => node.complete(&mut r.header),
            Some(R::ResponseDeleteRange(r)) => node.complete(&mut r.header),
            Some(R::ResponseTxn(r)) => {
                node.complete(&mut r.header);
                complete_inner(node, &mut r.responses);
            }
            None => {}
        }
    }
}
