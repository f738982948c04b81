//! Proposal batching on the leader.
//!
//! openraft 0.9 waits for a log entry to be flushed before it runs the commands queued behind
//! it, so one entry per client request would mean one fsync per request. Instead, requests that
//! arrive while a proposal is in flight are proposed together as one `InternalBatch` entry: one
//! fsync for all of them. Each request keeps its own revision; the batch only shares the entry.

use prost::Message;
use tokio::sync::{mpsc, oneshot};

use crate::pb::peer::internal_request::Request;
use crate::pb::peer::internal_response::Response;
use crate::pb::peer::{InternalBatch, InternalRequest, InternalResponse};
use crate::raft::types::{Proposal, Raft};

/// Most requests in one entry.
const MAX_BATCH: usize = 512;
/// Most bytes of requests in one entry.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Why a batched proposal did not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// This member is not (or no longer) the leader; nothing was applied.
    NotLeader,
    /// Raft failed.
    Failed(String),
}

type Reply = oneshot::Sender<Result<InternalResponse, BatchError>>;

/// Hands requests to the batching task.
#[derive(Debug, Clone)]
pub struct Batcher {
    tx: mpsc::Sender<(InternalRequest, Reply)>,
}

impl Batcher {
    /// Starts the batching task for `raft`.
    pub fn spawn(raft: Raft) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(raft, rx));
        Self { tx }
    }

    /// Proposes `req` (possibly together with others) and returns the state machine's answer.
    pub async fn propose(&self, req: InternalRequest) -> Result<InternalResponse, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((req, reply)).await.map_err(|_| BatchError::Failed("proposal queue closed".into()))?;
        answer.await.map_err(|_| BatchError::Failed("proposal dropped".into()))?
    }
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<(InternalRequest, Reply)>) {
    while let Some(first) = rx.recv().await {
        let mut bytes = first.0.encoded_len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(item) => {
                    bytes += item.0.encoded_len();
                    batch.push(item);
                }
                Err(_) => break,
            }
        }
        let (requests, replies): (Vec<InternalRequest>, Vec<Reply>) = batch.into_iter().unzip();
        let single = requests.len() == 1;
        let proposal = if single {
            requests.into_iter().next().unwrap_or_default()
        } else {
            InternalRequest { request: Some(Request::Batch(InternalBatch { requests })) }
        };
        let result = raft.client_write(Proposal(proposal)).await;
        let answers: Vec<Result<InternalResponse, BatchError>> = match result {
            Ok(resp) if single => vec![Ok(resp.data.0)],
            Ok(resp) => match resp.data.0.response {
                Some(Response::Batch(b)) if b.responses.len() == replies.len() => {
                    b.responses.into_iter().map(Ok).collect()
                }
                _ => vec![Err(BatchError::Failed("malformed batch response".into())); replies.len()],
            },
            Err(openraft::error::RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(_))) => {
                vec![Err(BatchError::NotLeader); replies.len()]
            }
            Err(e) => vec![Err(BatchError::Failed(e.to_string())); replies.len()],
        };
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}
