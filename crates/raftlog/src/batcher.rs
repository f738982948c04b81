//! Proposal batching on a leader.
//!
//! openraft 0.9 waits for a log entry to be flushed before it runs the commands queued behind
//! it, so one entry per client request would mean one fsync per request. Instead, requests that
//! arrive while a proposal is in flight are proposed together as one entry: one fsync for all.
//! The service says how a list of requests becomes one entry and how the entry's answer splits
//! back into one answer per request ([`Batching`]).

use openraft::error::{ClientWriteError, RaftError};
use openraft::{Raft, RaftTypeConfig};
use tokio::sync::{mpsc, oneshot};

/// How a service packs requests into one log entry and unpacks the answers.
pub trait Batching: Send + Sync + 'static {
    /// The openraft type configuration.
    type Config: RaftTypeConfig<NodeId = u64, Responder = openraft::impls::OneshotResponder<Self::Config>>;
    /// One client request.
    type Request: Send + 'static;
    /// The answer to one request.
    type Response: Send + Clone + 'static;
    /// Size of a request in bytes (for the entry size limit).
    fn size(request: &Self::Request) -> usize;
    /// The entry that carries `requests`.
    fn pack(requests: Vec<Self::Request>) -> <Self::Config as RaftTypeConfig>::D;
    /// The answers to the packed requests, in order; `None` when the answer is malformed.
    fn unpack(response: <Self::Config as RaftTypeConfig>::R, count: usize) -> Option<Vec<Self::Response>>;
    /// Completes a batch just before it is proposed (flaredb gives one-phase writes their commit
    /// timestamps here, so entries are proposed in timestamp order). The default does nothing.
    fn prepare(&self, requests: &mut [Self::Request]) -> impl std::future::Future<Output = Result<(), String>> + Send {
        let _ = requests;
        async { Ok(()) }
    }
}

/// Most requests in one entry.
const MAX_BATCH: usize = 512;
/// Most bytes of requests in one entry.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Why a batched proposal did not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// This member is not (or no longer) the leader; nothing was applied. Carries the leader's
    /// ID when known.
    NotLeader(Option<u64>),
    /// Raft failed (or shut down).
    Failed(String),
}

type Reply<B> = oneshot::Sender<Result<<B as Batching>::Response, BatchError>>;

/// Hands requests to the batching task of one Raft group.
pub struct Batcher<B: Batching> {
    tx: mpsc::Sender<(B::Request, Reply<B>)>,
}

impl<B: Batching> Clone for Batcher<B> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

impl<B: Batching> std::fmt::Debug for Batcher<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<B: Batching> Batcher<B> {
    /// Starts the batching task for `raft`; it ends when every `Batcher` clone is dropped.
    pub fn spawn(raft: Raft<B::Config>, batching: B) -> Self
    where
        <B::Config as RaftTypeConfig>::R: Send,
    {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run::<B>(raft, batching, rx));
        Self { tx }
    }

    /// Proposes `request` (possibly together with others) and returns the state machine's answer.
    pub async fn propose(&self, request: B::Request) -> Result<B::Response, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((request, reply)).await.map_err(|_| BatchError::Failed("proposal queue closed".into()))?;
        answer.await.map_err(|_| BatchError::Failed("proposal dropped".into()))?
    }
}

async fn run<B: Batching>(raft: Raft<B::Config>, batching: B, mut rx: mpsc::Receiver<(B::Request, Reply<B>)>) {
    while let Some(first) = rx.recv().await {
        let mut bytes = B::size(&first.0);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(item) => {
                    bytes += B::size(&item.0);
                    batch.push(item);
                }
                Err(_) => break,
            }
        }
        let (mut requests, replies): (Vec<B::Request>, Vec<Reply<B>>) = batch.into_iter().unzip();
        let count = requests.len();
        if let Err(e) = batching.prepare(&mut requests).await {
            for reply in replies {
                let _ = reply.send(Err(BatchError::Failed(e.clone())));
            }
            continue;
        }
        let answers: Vec<Result<B::Response, BatchError>> = match raft.client_write(B::pack(requests)).await {
            Ok(resp) => match B::unpack(resp.data, count) {
                Some(answers) if answers.len() == count => answers.into_iter().map(Ok).collect(),
                _ => vec![Err(BatchError::Failed("malformed batch response".into())); count],
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                vec![Err(BatchError::NotLeader(f.leader_id)); count]
            }
            Err(e) => vec![Err(BatchError::Failed(e.to_string())); count],
        };
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}
