//! Proposal batching on the leader (the shared batcher of `ultracloud-raftlog`).
//!
//! Requests that arrive while a proposal is in flight are proposed together as one
//! `InternalBatch` entry: one fsync for all of them. Each request keeps its own revision; the
//! batch only shares the entry. A lone request is proposed as itself.

use prost::Message;
use ultracloud_raftlog::batcher::Batching;

use crate::pb::peer::internal_request::Request;
use crate::pb::peer::internal_response::Response;
use crate::pb::peer::{InternalBatch, InternalRequest, InternalResponse};
use crate::raft::types::{Outcome, Proposal, TypeConfig};

pub use ultracloud_raftlog::batcher::BatchError;

/// How chainfire packs requests into entries.
#[derive(Debug)]
pub struct EtcdBatching;

impl Batching for EtcdBatching {
    type Config = TypeConfig;
    type Request = InternalRequest;
    type Response = InternalResponse;

    fn size(request: &InternalRequest) -> usize {
        request.encoded_len()
    }

    fn pack(mut requests: Vec<InternalRequest>) -> Proposal {
        if requests.len() == 1 {
            return Proposal(requests.pop().unwrap_or_default());
        }
        Proposal(InternalRequest { request: Some(Request::Batch(InternalBatch { requests })) })
    }

    fn unpack(response: Outcome, count: usize) -> Option<Vec<InternalResponse>> {
        if count == 1 {
            return Some(vec![response.0]);
        }
        match response.0.response {
            Some(Response::Batch(b)) => Some(b.responses),
            _ => None,
        }
    }
}

/// The batcher of a chainfire member.
pub type Batcher = ultracloud_raftlog::batcher::Batcher<EtcdBatching>;
