//! The Raft state machine: applies committed commands to the MVCC store, builds and installs
//! snapshots, and tells the watch hub and the lessor what changed.
//!
//! Applies are committed without fsync (the log already holds every command durably); the store
//! is made durable before each snapshot, and so before the log behind it is purged. After a
//! crash the store is at an older applied index, and openraft applies the log from there again,
//! so nothing acknowledged is lost.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError};
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::types::{Entry, LogId, Member, Outcome, StorageError, StoredMembership, TypeConfig};
use crate::error::EtcdError;
use crate::lessor::Lessor;
use crate::mvcc::write::Writer;
use crate::mvcc::{self, Mvcc};
use crate::pb::peer::internal_request::Request;
use crate::pb::peer::internal_response::Response;
use crate::pb::peer::{Empty, InternalBatchResponse, InternalRequest, InternalResponse, RejectReason};
use crate::watch_hub::WatchHub;

const LAST_APPLIED: &str = "last_applied";
const MEMBERSHIP: &str = "membership";

/// Largest number of operations in one txn (etcd's `--max-txn-ops` default).
pub const MAX_TXN_OPS: usize = 128;

/// The state machine; cheap to clone.
#[derive(Clone)]
pub struct StateMachine {
    mvcc: Mvcc,
    hub: WatchHub,
    lessor: Arc<Lessor>,
    snapshot_path: PathBuf,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine").finish_non_exhaustive()
    }
}

/// A `history` row key: (key, revision).
type HistoryKey = (Vec<u8>, u64);
/// The events of one applied revision.
type Published = (i64, Vec<crate::pb::mvccpb::Event>);

/// Everything a snapshot holds: the rows of every state-machine table.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Image {
    kv: Vec<(Vec<u8>, Vec<u8>)>,
    history: Vec<(HistoryKey, Vec<u8>)>,
    events: Vec<((u64, u32), Vec<u8>)>,
    leases: Vec<(i64, i64)>,
    lease_keys: Vec<(i64, Vec<u8>)>,
    members: Vec<(u64, Vec<u8>)>,
    meta: Vec<(String, Vec<u8>)>,
}

/// A stored snapshot: its metadata and the encoded image.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, Member>,
    data: Vec<u8>,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl StateMachine {
    /// A state machine over `mvcc`, keeping its snapshot at `snapshot_path`.
    pub fn new(mvcc: Mvcc, hub: WatchHub, lessor: Arc<Lessor>, snapshot_path: PathBuf) -> Self {
        Self { mvcc, hub, lessor, snapshot_path }
    }

    /// The last applied log index recorded in the store.
    pub fn applied_index(&self) -> u64 {
        self.read_applied().ok().and_then(|(applied, _)| applied).map_or(0, |l| l.index)
    }

    fn read_applied(&self) -> Result<(Option<LogId>, StoredMembership), std::io::Error> {
        let tx = self.mvcc.db().begin_read().map_err(io_err)?;
        let meta = tx.open_table(mvcc::META).map_err(io_err)?;
        let get = |k: &str| -> Result<Option<Vec<u8>>, std::io::Error> {
            Ok(meta.get(k).map_err(io_err)?.map(|v| v.value().to_vec()))
        };
        let applied = match get(LAST_APPLIED)? {
            Some(b) => bincode::deserialize(&b).map_err(io_err)?,
            None => None,
        };
        let membership = match get(MEMBERSHIP)? {
            Some(b) => bincode::deserialize(&b).map_err(io_err)?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    fn apply_batch(&self, entries: Vec<Entry>) -> Result<(Vec<Outcome>, Vec<Published>), std::io::Error> {
        let mut tx = self.mvcc.db().begin_write().map_err(io_err)?;
        tx.set_durability(redb::Durability::None).map_err(io_err)?;
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut published = Vec::new();
        let mut lease_changes: Vec<(i64, Option<i64>)> = Vec::new();
        {
            let mut w = Writer::new(&tx).map_err(io_err)?;
            let mut last = None;
            for entry in entries {
                last = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => InternalResponse { response: Some(Response::Empty(Empty {})), error: None },
                    EntryPayload::Membership(m) => {
                        let stored = StoredMembership::new(Some(entry.log_id), m);
                        let bytes = bincode::serialize(&stored).map_err(io_err)?;
                        w.meta().insert(MEMBERSHIP, bytes.as_slice()).map_err(io_err)?;
                        // Forget attributes of members that left.
                        let ids: Vec<u64> = stored.membership().nodes().map(|(id, _)| *id).collect();
                        for known in w.member_ids().map_err(io_err)? {
                            if !ids.contains(&known) {
                                w.remove_member(known).map_err(io_err)?;
                            }
                        }
                        InternalResponse { response: Some(Response::Empty(Empty {})), error: None }
                    }
                    EntryPayload::Normal(p) => apply_request(&mut w, p.0, &mut lease_changes, &mut published),
                };
                outcomes.push(Outcome(response));
            }
            if let Some(last) = last {
                let bytes = bincode::serialize(&Some(last)).map_err(io_err)?;
                w.meta().insert(LAST_APPLIED, bytes.as_slice()).map_err(io_err)?;
            }
        }
        tx.commit().map_err(io_err)?;
        for (id, ttl) in lease_changes {
            match ttl {
                Some(ttl) => self.lessor.granted(id, ttl),
                None => self.lessor.revoked(id),
            }
        }
        Ok((outcomes, published))
    }

    /// Makes every commit so far durable (applies skip the fsync).
    pub fn sync(&self) -> Result<(), std::io::Error> {
        let mut tx = self.mvcc.db().begin_write().map_err(io_err)?;
        tx.set_durability(redb::Durability::Immediate).map_err(io_err)?;
        tx.commit().map_err(io_err)
    }

    fn image(&self) -> Result<(Image, Option<LogId>, StoredMembership), std::io::Error> {
        // The log behind a snapshot may be purged: the store must not fall behind it on a crash.
        self.sync()?;
        let tx = self.mvcc.db().begin_read().map_err(io_err)?;
        let mut img = Image::default();
        macro_rules! dump {
            ($table:expr, $field:ident, |$k:ident, $v:ident| $conv:expr) => {{
                let t = tx.open_table($table).map_err(io_err)?;
                for item in t.iter().map_err(io_err)? {
                    let (kg, vg) = item.map_err(io_err)?;
                    let ($k, $v) = (kg.value(), vg.value());
                    img.$field.push($conv);
                }
            }};
        }
        dump!(mvcc::KV, kv, |k, v| (k.to_vec(), v.to_vec()));
        dump!(mvcc::HISTORY, history, |k, v| ((k.0.to_vec(), k.1), v.to_vec()));
        dump!(mvcc::EVENTS, events, |k, v| (k, v.to_vec()));
        dump!(mvcc::LEASES, leases, |k, v| (k, v));
        dump!(mvcc::LEASE_KEYS, lease_keys, |k, _v| (k.0, k.1.to_vec()));
        dump!(mvcc::MEMBERS, members, |k, v| (k, v.to_vec()));
        dump!(mvcc::META, meta, |k, v| (k.to_owned(), v.to_vec()));
        drop(tx);
        let (applied, membership) = self.read_applied()?;
        Ok((img, applied, membership))
    }

    fn restore(&self, img: Image) -> Result<(), std::io::Error> {
        let tx = self.mvcc.db().begin_write().map_err(io_err)?;
        {
            macro_rules! refill {
                ($table:expr, $rows:expr, |$row:ident| $insert:expr) => {{
                    let mut t = tx.open_table($table).map_err(io_err)?;
                    t.retain(|_, _| false).map_err(io_err)?;
                    for $row in $rows {
                        let (k, v) = $insert;
                        t.insert(k, v).map_err(io_err)?;
                    }
                }};
            }
            refill!(mvcc::KV, &img.kv, |r| (r.0.as_slice(), r.1.as_slice()));
            refill!(mvcc::HISTORY, &img.history, |r| ((r.0.0.as_slice(), r.0.1), r.1.as_slice()));
            refill!(mvcc::EVENTS, &img.events, |r| (r.0, r.1.as_slice()));
            refill!(mvcc::LEASES, &img.leases, |r| (r.0, r.1));
            refill!(mvcc::LEASE_KEYS, &img.lease_keys, |r| ((r.0, r.1.as_slice()), ()));
            refill!(mvcc::MEMBERS, &img.members, |r| (r.0, r.1.as_slice()));
            refill!(mvcc::META, &img.meta, |r| (r.0.as_str(), r.1.as_slice()));
        }
        tx.commit().map_err(io_err)?;
        Ok(())
    }

    /// Loads a backup image into this (empty) store as the starting state of a new cluster: the
    /// data and revisions are kept; Raft state and member attributes of the old cluster are not.
    pub fn restore_backup(&self, image: &[u8]) -> Result<(), std::io::Error> {
        let img: Image = bincode::deserialize(image).map_err(io_err)?;
        self.restore(img)?;
        let tx = self.mvcc.db().begin_write().map_err(io_err)?;
        {
            let mut meta = tx.open_table(mvcc::META).map_err(io_err)?;
            meta.remove(LAST_APPLIED).map_err(io_err)?;
            meta.remove(MEMBERSHIP).map_err(io_err)?;
            let mut members = tx.open_table(mvcc::MEMBERS).map_err(io_err)?;
            members.retain(|_, _| false).map_err(io_err)?;
        }
        tx.commit().map_err(io_err)
    }

    fn save_snapshot(&self, stored: &StoredSnapshot) -> Result<(), std::io::Error> {
        let bytes = bincode::serialize(stored).map_err(io_err)?;
        let tmp = self.snapshot_path.with_extension("tmp");
        std::fs::write(&tmp, &bytes)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.snapshot_path)?;
        Ok(())
    }
}

/// Applies one command (or each command of a batch, in order); records the events of every
/// revision it wrote in `published`.
fn apply_request(
    w: &mut Writer<'_>,
    req: InternalRequest,
    lease_changes: &mut Vec<(i64, Option<i64>)>,
    published: &mut Vec<Published>,
) -> InternalResponse {
    if let Some(Request::Batch(batch)) = req.request {
        let responses = batch.requests.into_iter().map(|r| apply_request(w, r, lease_changes, published)).collect();
        return InternalResponse { response: Some(Response::Batch(InternalBatchResponse { responses })), error: None };
    }
    let before = w.revisions().current;
    let (response, events) = apply_one(w, req, lease_changes);
    let after = w.revisions().current;
    if after != before || !events.is_empty() {
        published.push((after, events));
    }
    response
}

/// Applies one command; deterministic rejections become `error` in the response.
fn apply_one(
    w: &mut Writer<'_>,
    req: InternalRequest,
    lease_changes: &mut Vec<(i64, Option<i64>)>,
) -> (InternalResponse, Vec<crate::pb::mvccpb::Event>) {
    let result: Result<(Response, Vec<crate::pb::mvccpb::Event>), EtcdError> = match req.request {
        Some(Request::Put(r)) => w.put(&r).map(|a| (Response::Put(a.response), a.events)),
        Some(Request::DeleteRange(r)) => w.delete_range(&r).map(|a| (Response::DeleteRange(a.response), a.events)),
        Some(Request::Txn(r)) => w.txn(&r, MAX_TXN_OPS).map(|a| (Response::Txn(a.response), a.events)),
        Some(Request::Compaction(r)) => w.compact(&r).map(|a| (Response::Compaction(a.response), a.events)),
        Some(Request::LeaseGrant(r)) => w.lease_grant(&r).map(|a| {
            lease_changes.push((a.response.id, Some(a.response.ttl)));
            (Response::LeaseGrant(a.response), a.events)
        }),
        Some(Request::LeaseRevoke(r)) => w.lease_revoke(&r).map(|a| {
            lease_changes.push((r.id, None));
            (Response::LeaseRevoke(a.response), a.events)
        }),
        Some(Request::MemberAttributes(a)) => w.member_attributes(&a).map(|()| (Response::Empty(Empty {}), Vec::new())),
        Some(Request::Batch(_)) => Err(EtcdError::Internal("nested batch".into())),
        None => Err(EtcdError::Internal("empty proposal".into())),
    };
    match result {
        Ok((response, events)) => (InternalResponse { response: Some(response), error: None }, events),
        Err(e) => (
            InternalResponse {
                response: None,
                error: Some(RejectReason { code: e.code() as i32, message: e.to_string() }),
            },
            Vec::new(),
        ),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let this = self.clone();
        let built = tokio::task::spawn_blocking(move || -> Result<Snapshot<TypeConfig>, std::io::Error> {
            let (img, applied, membership) = this.image()?;
            let data = bincode::serialize(&img).map_err(io_err)?;
            let snapshot_id = match applied {
                Some(l) => format!("{}-{}-{}", l.leader_id, l.index, std::process::id()),
                None => format!("empty-{}", std::process::id()),
            };
            let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };
            let stored = StoredSnapshot { meta: meta.clone(), data };
            this.save_snapshot(&stored)?;
            Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(stored.data)) })
        })
        .await
        .map_err(io_err);
        let snapshot = built.and_then(|r| r).map_err(|e| StorageIOError::read_state_machine(&e))?;
        tracing::info!(snapshot = %snapshot.meta.snapshot_id, "built snapshot");
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.read_applied().map_err(|e| StorageIOError::read_state_machine(&e).into())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let last_index = entries.last().map(|e| e.log_id.index);
        tracing::trace!(entries = entries.len(), "applying");
        // Inline, not on a blocking thread: the commit skips fsync, so it is short, and the
        // hand-off to another thread cost more than the apply itself under load.
        let (outcomes, published) = self.apply_batch(entries).map_err(|e| StorageIOError::write_state_machine(&e))?;
        for (revision, events) in published {
            self.hub.publish(revision, events);
        }
        if let Some(index) = last_index {
            self.hub.set_applied(index);
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let this = self.clone();
        let meta_owned = meta.clone();
        let installed = tokio::task::spawn_blocking(move || -> Result<(), std::io::Error> {
            let img: Image = bincode::deserialize(&data).map_err(io_err)?;
            this.restore(img)?;
            // The image carries last_applied and membership as of the snapshot; make them exact.
            let tx = this.mvcc.db().begin_write().map_err(io_err)?;
            {
                let mut meta = tx.open_table(mvcc::META).map_err(io_err)?;
                let applied = bincode::serialize(&meta_owned.last_log_id).map_err(io_err)?;
                meta.insert(LAST_APPLIED, applied.as_slice()).map_err(io_err)?;
                let membership = bincode::serialize(&meta_owned.last_membership).map_err(io_err)?;
                meta.insert(MEMBERSHIP, membership.as_slice()).map_err(io_err)?;
            }
            tx.commit().map_err(io_err)?;
            this.save_snapshot(&StoredSnapshot { meta: meta_owned, data })
        })
        .await
        .map_err(io_err)
        .and_then(|r| r);
        installed.map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        let revs = self.mvcc.revisions().map_err(|e| StorageIOError::read_state_machine(&io_err(e)))?;
        self.lessor.reset(self.mvcc.leases().map_err(|e| StorageIOError::read_state_machine(&io_err(e)))?);
        self.hub.reset(revs.current);
        self.hub.set_applied(meta.last_log_id.map_or(0, |l| l.index));
        tracing::info!(snapshot = %meta.snapshot_id, revision = revs.current, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let bytes = match std::fs::read(&self.snapshot_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageIOError::read_snapshot(None, &e).into()),
        };
        let stored: StoredSnapshot =
            bincode::deserialize(&bytes).map_err(|e| StorageIOError::read_snapshot(None, &io_err(e)))?;
        Ok(Some(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) }))
    }
}
