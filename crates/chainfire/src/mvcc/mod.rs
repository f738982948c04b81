//! The MVCC key-value store behind the etcd API, persisted in redb.
//!
//! Every write transaction gets the next *main revision*; each change inside it gets a *sub
//! revision*, as in etcd. Four tables hold the data:
//!
//! - `kv`: key → latest live `KeyValue` (answers reads at the current revision);
//! - `history`: (key, revision) → put or tombstone (answers reads at older revisions);
//! - `events`: (revision, sub) → `Event` (replays watches from a past revision);
//! - `leases`, `lease_keys`: leases and the keys attached to them.
//!
//! Writes happen only in the Raft state machine ([`write::Writer`]), so every replica applies the
//! same commands in the same order and ends in the same state; reads run on any replica.

pub mod keys;
pub mod range;
pub mod write;

use std::sync::Arc;

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::EtcdError;
use crate::pb::etcdserverpb::{RangeRequest, RangeResponse};
use crate::pb::mvccpb::Event;

pub use keys::KeyRange;

#[cfg(test)]
mod model_tests;

/// key → latest live KeyValue.
pub const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
/// (key, main revision) → tag byte (0 put, 1 tombstone) + KeyValue.
pub const HISTORY: TableDefinition<(&[u8], u64), &[u8]> = TableDefinition::new("history");
/// (main revision, sub revision) → Event (without prev_kv).
pub const EVENTS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("events");
/// lease id → granted TTL seconds.
pub const LEASES: TableDefinition<i64, i64> = TableDefinition::new("leases");
/// (lease id, key) → nothing: the keys attached to a lease.
pub const LEASE_KEYS: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("lease_keys");
/// member id → MemberAttributes (name, client URLs) published by the member.
pub const MEMBERS: TableDefinition<u64, &[u8]> = TableDefinition::new("members");
/// Scalars of the state machine: revisions, last applied log id, membership.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");

/// `META` key of the current revision (i64, little endian).
pub const META_REVISION: &str = "revision";
/// `META` key of the compacted revision.
pub const META_COMPACT: &str = "compact_revision";

/// Every state-machine table, for snapshots.
pub const SM_TABLES: [&str; 7] = ["kv", "history", "events", "leases", "lease_keys", "members", "sm_meta"];

/// A lease as stored: its granted TTL and the keys attached to it.
pub type LeaseRecord = (i64, Vec<Vec<u8>>);

/// Read access to the MVCC store.
#[derive(Clone)]
pub struct Mvcc {
    db: Arc<Database>,
}

impl std::fmt::Debug for Mvcc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mvcc").finish_non_exhaustive()
    }
}

/// The revision counters of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Revisions {
    /// Current revision (1 in an empty store, as in etcd).
    pub current: i64,
    /// Revisions below this one have been compacted away.
    pub compacted: i64,
}

impl Mvcc {
    /// Opens the store in `db`, creating its tables.
    pub fn open(db: Arc<Database>) -> Result<Self, EtcdError> {
        let tx = db.begin_write()?;
        {
            tx.open_table(KV)?;
            tx.open_table(HISTORY)?;
            tx.open_table(EVENTS)?;
            tx.open_table(LEASES)?;
            tx.open_table(LEASE_KEYS)?;
            tx.open_table(MEMBERS)?;
            tx.open_table(META)?;
        }
        tx.commit()?;
        Ok(Self { db })
    }

    /// The database, for the state machine's writes.
    pub fn db(&self) -> &Arc<Database> {
        &self.db
    }

    /// The current and compacted revisions.
    pub fn revisions(&self) -> Result<Revisions, EtcdError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        read_revisions(&meta)
    }

    /// Answers a Range request from the committed state.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, EtcdError> {
        let tx = self.db.begin_read()?;
        let kv = tx.open_table(KV)?;
        let history = tx.open_table(HISTORY)?;
        let meta = tx.open_table(META)?;
        range::range(&kv, &history, read_revisions(&meta)?, req)
    }

    /// Events with revision in `[from, to]` whose key is in `keys`, in revision order, and the
    /// compacted revision (events below it are gone).
    pub fn events(&self, from: i64, to: i64, keys: &KeyRange, limit: usize) -> Result<Vec<Event>, EtcdError> {
        let tx = self.db.begin_read()?;
        let events = tx.open_table(EVENTS)?;
        let mut out = Vec::new();
        if to < from {
            return Ok(out);
        }
        for item in events.range((from.max(0) as u64, 0)..=(to.max(0) as u64, u32::MAX))? {
            let (_, v) = item?;
            let event = Event::decode(v.value()).map_err(decode_error)?;
            if event.kv.as_ref().is_some_and(|kv| keys.contains(&kv.key)) {
                out.push(event);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The version of `key` visible just before `revision` (for watchers asking for prev_kv).
    pub fn previous(&self, key: &[u8], revision: i64) -> Result<Option<crate::pb::mvccpb::KeyValue>, EtcdError> {
        let tx = self.db.begin_read()?;
        let history = tx.open_table(HISTORY)?;
        range::version_at(&history, key, revision - 1)
    }

    /// Leases and their granted TTLs.
    pub fn leases(&self) -> Result<Vec<(i64, i64)>, EtcdError> {
        let tx = self.db.begin_read()?;
        let leases = tx.open_table(LEASES)?;
        let mut out = Vec::new();
        for item in leases.iter()? {
            let (k, v) = item?;
            out.push((k.value(), v.value()));
        }
        Ok(out)
    }

    /// The granted TTL of `lease` and the keys attached to it.
    pub fn lease(&self, lease: i64) -> Result<Option<LeaseRecord>, EtcdError> {
        let tx = self.db.begin_read()?;
        let leases = tx.open_table(LEASES)?;
        let Some(ttl) = leases.get(lease)?.map(|g| g.value()) else { return Ok(None) };
        let lease_keys = tx.open_table(LEASE_KEYS)?;
        let mut keys = Vec::new();
        for item in lease_keys.range((lease, &[][..])..)? {
            let (k, _) = item?;
            let (id, key) = k.value();
            if id != lease {
                break;
            }
            keys.push(key.to_vec());
        }
        Ok(Some((ttl, keys)))
    }

    /// Attributes published by members (id → name, client URLs).
    pub fn member_attributes(&self) -> Result<Vec<crate::pb::peer::MemberAttributes>, EtcdError> {
        let tx = self.db.begin_read()?;
        let members = tx.open_table(MEMBERS)?;
        let mut out = Vec::new();
        for item in members.iter()? {
            let (_, v) = item?;
            out.push(crate::pb::peer::MemberAttributes::decode(v.value()).map_err(decode_error)?);
        }
        Ok(out)
    }

    /// A hash of the key-value state up to `revision` (0 = current), for `HashKV`.
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, Revisions), EtcdError> {
        let tx = self.db.begin_read()?;
        let history = tx.open_table(HISTORY)?;
        let meta = tx.open_table(META)?;
        let revs = read_revisions(&meta)?;
        let upto = if revision <= 0 { revs.current } else { revision };
        let mut hasher = crc32fast::Hasher::new();
        for item in history.iter()? {
            let (k, v) = item?;
            let (key, rev) = k.value();
            if rev as i64 <= upto && rev as i64 >= revs.compacted {
                hasher.update(key);
                hasher.update(&rev.to_be_bytes());
                hasher.update(v.value());
            }
        }
        Ok((hasher.finalize(), revs))
    }
}

pub(crate) fn read_revisions(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Revisions, EtcdError> {
    let get = |name: &str| -> Result<Option<i64>, EtcdError> {
        Ok(meta.get(name)?.and_then(|v| v.value().try_into().ok().map(i64::from_le_bytes)))
    };
    Ok(Revisions { current: get(META_REVISION)?.unwrap_or(1), compacted: get(META_COMPACT)?.unwrap_or(0) })
}

pub(crate) fn decode_error(e: prost::DecodeError) -> EtcdError {
    EtcdError::Internal(format!("corrupt record in store: {e}"))
}
