//! `etcdserverpb.Maintenance`: status, hashes, snapshot download, and the operations that are
//! no-ops here (defragment: redb reuses freed pages itself; alarms: none are raised).

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};

use crate::error::EtcdError;
use crate::node::Node;
use crate::pb::etcdserverpb::maintenance_server::Maintenance;
use crate::pb::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest, DowngradeResponse,
    HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest,
    SnapshotResponse, StatusRequest, StatusResponse,
};

/// The etcd version chainfire reports (the API level it implements).
pub const ETCD_API_VERSION: &str = "3.5.0";
/// Bytes per snapshot chunk.
const SNAPSHOT_CHUNK: usize = 64 * 1024;

/// The Maintenance service.
#[derive(Debug, Clone)]
pub struct MaintenanceService {
    node: Arc<Node>,
    db_files: Vec<std::path::PathBuf>,
}

impl MaintenanceService {
    /// Serves maintenance of `node`, whose database files are `db_files`.
    pub fn new(node: Arc<Node>, db_files: Vec<std::path::PathBuf>) -> Self {
        Self { node, db_files }
    }

    fn revision(&self) -> i64 {
        self.node.mvcc.revisions().map(|r| r.current).unwrap_or(0)
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, _request: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        Ok(Response::new(AlarmResponse { header: self.node.header(self.revision()), alarms: Vec::new() }))
    }

    async fn status(&self, _request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let m = self.node.raft.metrics().borrow().clone();
        let db_size: i64 = self.db_files.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len() as i64).sum();
        let is_learner = !m.membership_config.membership().voter_ids().any(|v| v == self.node.id);
        Ok(Response::new(StatusResponse {
            header: self.node.header(self.revision()),
            version: ETCD_API_VERSION.into(),
            db_size,
            leader: m.current_leader.unwrap_or(0),
            raft_index: m.last_log_index.unwrap_or(0),
            raft_term: m.current_term,
            raft_applied_index: m.last_applied.map_or(0, |l| l.index),
            errors: Vec::new(),
            db_size_in_use: db_size,
            is_learner,
            ..Default::default()
        }))
    }

    async fn defragment(&self, _request: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        Ok(Response::new(DefragmentResponse { header: self.node.header(self.revision()) }))
    }

    async fn hash(&self, _request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let (hash, revs) = self.node.mvcc.hash_kv(0)?;
        Ok(Response::new(HashResponse { header: self.node.header(revs.current), hash }))
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        let rev = request.into_inner().revision;
        let (hash, revs) = self.node.mvcc.hash_kv(rev)?;
        Ok(Response::new(HashKvResponse {
            header: self.node.header(revs.current),
            hash,
            compact_revision: revs.compacted,
            hash_revision: if rev <= 0 { revs.current } else { rev },
        }))
    }

    type SnapshotStream = SnapshotStream;

    /// Streams a consistent copy of the store, followed (like etcd) by its SHA-256.
    async fn snapshot(&self, _request: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let mut sm = self.node.state_machine.clone();
        let image = openraft::RaftSnapshotBuilder::build_snapshot(&mut sm)
            .await
            .map_err(|e| Status::from(EtcdError::Internal(e.to_string())))?;
        let data = crate::backup::frame(image.snapshot.into_inner());
        let header = self.node.header(self.revision());
        let total = data.len();
        let chunks: Vec<Result<SnapshotResponse, Status>> = data
            .chunks(SNAPSHOT_CHUNK)
            .enumerate()
            .map(|(i, chunk)| {
                let sent = (i * SNAPSHOT_CHUNK + chunk.len()) as u64;
                Ok(SnapshotResponse {
                    header,
                    remaining_bytes: total as u64 - sent,
                    blob: chunk.to_vec(),
                    version: ETCD_API_VERSION.into(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn move_leader(&self, _request: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        Err(EtcdError::NotCapable.into())
    }

    async fn downgrade(&self, _request: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        Err(EtcdError::NotCapable.into())
    }
}
