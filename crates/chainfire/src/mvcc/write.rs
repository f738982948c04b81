//! Applying replicated commands to the store inside one redb write transaction.
//!
//! A command is validated against the state before it (so a failing txn changes nothing), then
//! executed. All changes of one command share the next main revision; a command that changes
//! nothing leaves the revision alone, as in etcd.

use prost::Message;
use redb::{ReadableTable, Table, WriteTransaction};

use super::range::{self, encode_record};
use super::{EVENTS, HISTORY, KV, KeyRange, LEASE_KEYS, LEASES, MEMBERS, META, META_COMPACT, META_REVISION, Revisions};
use crate::error::EtcdError;
use crate::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::pb::etcdserverpb::request_op::Request;
use crate::pb::etcdserverpb::response_op::Response;
use crate::pb::etcdserverpb::{
    CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest, PutResponse, RangeRequest, RequestOp,
    ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use crate::pb::mvccpb::{Event, KeyValue, event::EventType};
use crate::pb::peer::MemberAttributes;

/// Shortest lease TTL granted (etcd's minimum for a 1 s election timeout).
pub const MIN_LEASE_TTL: i64 = 2;
/// Longest lease TTL accepted.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

type KvT<'a> = Table<'a, &'static [u8], &'static [u8]>;
type HistoryT<'a> = Table<'a, (&'static [u8], u64), &'static [u8]>;

/// Applies commands within one write transaction.
pub struct Writer<'t> {
    kv: KvT<'t>,
    history: HistoryT<'t>,
    events: Table<'t, (u64, u32), &'static [u8]>,
    leases: Table<'t, i64, i64>,
    lease_keys: Table<'t, (i64, &'static [u8]), ()>,
    members: Table<'t, u64, &'static [u8]>,
    meta: Table<'t, &'static str, &'static [u8]>,
    revs: Revisions,
    /// Sub revision of the next change of the command being applied.
    sub: u32,
    /// Events of the command being applied.
    pending: Vec<Event>,
}

/// The outcome of one applied command.
#[derive(Debug, Default)]
pub struct Applied<T> {
    /// The response.
    pub response: T,
    /// The changes it made, in order, for watchers.
    pub events: Vec<Event>,
}

impl<'t> Writer<'t> {
    /// Opens the tables of `tx`.
    pub fn new(tx: &'t WriteTransaction) -> Result<Self, EtcdError> {
        let meta = tx.open_table(META)?;
        let revs = super::read_revisions(&meta)?;
        Ok(Self {
            kv: tx.open_table(KV)?,
            history: tx.open_table(HISTORY)?,
            events: tx.open_table(EVENTS)?,
            leases: tx.open_table(LEASES)?,
            lease_keys: tx.open_table(LEASE_KEYS)?,
            members: tx.open_table(MEMBERS)?,
            meta,
            revs,
            sub: 0,
            pending: Vec::new(),
        })
    }

    /// The revisions after what has been applied so far.
    pub fn revisions(&self) -> Revisions {
        self.revs
    }

    fn header(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader { revision: self.revs.current, ..Default::default() })
    }

    /// The revision the current command writes at.
    fn write_rev(&self) -> i64 {
        self.revs.current + 1
    }

    /// Ends a command: bumps the revision if it changed anything and hands out its events.
    fn finish(&mut self) -> Result<Vec<Event>, EtcdError> {
        if self.sub > 0 {
            self.revs.current += 1;
            self.meta.insert(META_REVISION, self.revs.current.to_le_bytes().as_slice())?;
        }
        self.sub = 0;
        Ok(std::mem::take(&mut self.pending))
    }

    /// Applies a Put.
    pub fn put(&mut self, req: &PutRequest) -> Result<Applied<PutResponse>, EtcdError> {
        check_put(req)?;
        self.check_put_state(req)?;
        let prev = self.do_put(req)?;
        let events = self.finish()?;
        Ok(Applied { response: PutResponse { header: self.header(), prev_kv: prev.filter(|_| req.prev_kv) }, events })
    }

    /// Applies a DeleteRange.
    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<Applied<DeleteRangeResponse>, EtcdError> {
        if req.key.is_empty() {
            return Err(EtcdError::EmptyKey);
        }
        let mut resp = self.do_delete(req)?;
        let events = self.finish()?;
        resp.header = self.header();
        Ok(Applied { response: resp, events })
    }

    /// Applies a Txn.
    pub fn txn(&mut self, req: &TxnRequest, max_ops: usize) -> Result<Applied<TxnResponse>, EtcdError> {
        check_txn(req, max_ops)?;
        let succeeded = self.compare_all(&req.compare)?;
        let ops = if succeeded { &req.success } else { &req.failure };
        self.check_ops_state(ops)?;
        let responses = self.do_ops(ops)?;
        let events = self.finish()?;
        let mut resp = TxnResponse { header: self.header(), succeeded, responses };
        // Inner headers carry the final revision too.
        set_headers(&mut resp.responses, self.revs.current);
        Ok(Applied { response: resp, events })
    }

    /// Applies a Compaction.
    pub fn compact(&mut self, req: &CompactionRequest) -> Result<Applied<CompactionResponse>, EtcdError> {
        let rev = req.revision;
        if rev > self.revs.current {
            return Err(EtcdError::FutureRev);
        }
        if rev <= self.revs.compacted {
            return Err(EtcdError::Compacted);
        }
        // Per key: drop every version older than the newest one at or below `rev`, and that one
        // too when it is a tombstone. Reads at `rev` and later see exactly what they saw before.
        let mut doomed: Vec<(Vec<u8>, u64)> = Vec::new();
        let mut group: Vec<(u64, bool)> = Vec::new();
        let mut group_key: Option<Vec<u8>> = None;
        let flush = |key: &Option<Vec<u8>>, group: &mut Vec<(u64, bool)>, doomed: &mut Vec<(Vec<u8>, u64)>| {
            if let (Some(key), Some(&(last_rev, last_is_tombstone))) = (key, group.last()) {
                for &(r, _) in &group[..group.len() - 1] {
                    doomed.push((key.clone(), r));
                }
                if last_is_tombstone {
                    doomed.push((key.clone(), last_rev));
                }
            }
            group.clear();
        };
        for item in self.history.iter()? {
            let (k, v) = item?;
            let (key, r) = k.value();
            if group_key.as_deref() != Some(key) {
                flush(&group_key, &mut group, &mut doomed);
                group_key = Some(key.to_vec());
            }
            if r as i64 <= rev {
                group.push((r, v.value().first() == Some(&range::TAG_TOMBSTONE)));
            }
        }
        flush(&group_key, &mut group, &mut doomed);
        for (key, r) in &doomed {
            self.history.remove((key.as_slice(), *r))?;
        }
        self.events.retain_in(..(rev as u64, 0u32), |_, _| false)?;
        self.revs.compacted = rev;
        self.meta.insert(META_COMPACT, rev.to_le_bytes().as_slice())?;
        Ok(Applied { response: CompactionResponse { header: self.header() }, events: Vec::new() })
    }

    /// Applies a LeaseGrant whose ID the proposer chose.
    pub fn lease_grant(&mut self, req: &LeaseGrantRequest) -> Result<Applied<LeaseGrantResponse>, EtcdError> {
        if req.ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        if req.id == 0 {
            return Err(EtcdError::Internal("lease grant without an id".into()));
        }
        if self.leases.get(req.id)?.is_some() {
            return Err(EtcdError::LeaseExists);
        }
        let ttl = req.ttl.max(MIN_LEASE_TTL);
        self.leases.insert(req.id, ttl)?;
        Ok(Applied {
            response: LeaseGrantResponse { header: self.header(), id: req.id, ttl, error: String::new() },
            events: Vec::new(),
        })
    }

    /// Applies a LeaseRevoke: deletes the lease and every key attached to it.
    pub fn lease_revoke(&mut self, req: &LeaseRevokeRequest) -> Result<Applied<LeaseRevokeResponse>, EtcdError> {
        if self.leases.get(req.id)?.is_none() {
            return Err(EtcdError::LeaseNotFound);
        }
        let keys: Vec<Vec<u8>> = {
            let mut keys = Vec::new();
            for item in self.lease_keys.range((req.id, &[][..])..)? {
                let (k, _) = item?;
                let (id, key) = k.value();
                if id != req.id {
                    break;
                }
                keys.push(key.to_vec());
            }
            keys
        };
        for key in keys {
            self.do_delete(&DeleteRangeRequest { key, ..Default::default() })?;
        }
        self.leases.remove(req.id)?;
        let events = self.finish()?;
        Ok(Applied { response: LeaseRevokeResponse { header: self.header() }, events })
    }

    /// Records the attributes a member published.
    pub fn member_attributes(&mut self, attrs: &MemberAttributes) -> Result<(), EtcdError> {
        self.members.insert(attrs.id, attrs.encode_to_vec().as_slice())?;
        Ok(())
    }

    /// IDs of the members whose attributes are recorded (including this transaction's writes).
    pub fn member_ids(&self) -> Result<Vec<u64>, EtcdError> {
        let mut ids = Vec::new();
        for item in self.members.iter()? {
            ids.push(item?.0.value());
        }
        Ok(ids)
    }

    /// Forgets a removed member's attributes.
    pub fn remove_member(&mut self, id: u64) -> Result<(), EtcdError> {
        self.members.remove(id)?;
        Ok(())
    }

    /// Direct access to the metadata table (the state machine stores Raft state there).
    pub fn meta(&mut self) -> &mut Table<'t, &'static str, &'static [u8]> {
        &mut self.meta
    }

    // --- validation against the state before the command -------------------------------------

    fn check_put_state(&self, req: &PutRequest) -> Result<(), EtcdError> {
        if (req.ignore_value || req.ignore_lease) && self.kv.get(req.key.as_slice())?.is_none() {
            return Err(EtcdError::KeyNotFound);
        }
        if req.lease != 0 && self.leases.get(req.lease)?.is_none() {
            return Err(EtcdError::LeaseNotFound);
        }
        Ok(())
    }

    fn check_ops_state(&self, ops: &[RequestOp]) -> Result<(), EtcdError> {
        for op in ops {
            match &op.request {
                Some(Request::RequestPut(p)) => self.check_put_state(p)?,
                Some(Request::RequestTxn(t)) => {
                    // The nested branch taken is decided later; check both, like etcd does.
                    self.check_ops_state(&t.success)?;
                    self.check_ops_state(&t.failure)?;
                }
                Some(Request::RequestRange(r)) => {
                    if r.revision > self.revs.current {
                        return Err(EtcdError::FutureRev);
                    }
                    if r.revision > 0 && r.revision < self.revs.compacted {
                        return Err(EtcdError::Compacted);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    // --- execution ----------------------------------------------------------------------------

    fn do_ops(&mut self, ops: &[RequestOp]) -> Result<Vec<ResponseOp>, EtcdError> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => Response::ResponseRange(self.txn_range(r)?),
                Some(Request::RequestPut(p)) => {
                    let prev = self.do_put(p)?;
                    Response::ResponsePut(PutResponse { header: None, prev_kv: prev.filter(|_| p.prev_kv) })
                }
                Some(Request::RequestDeleteRange(d)) => Response::ResponseDeleteRange(self.do_delete(d)?),
                Some(Request::RequestTxn(t)) => {
                    let succeeded = self.compare_all(&t.compare)?;
                    let ops = if succeeded { &t.success } else { &t.failure };
                    let responses = self.do_ops(ops)?;
                    Response::ResponseTxn(TxnResponse { header: None, succeeded, responses })
                }
                None => return Err(EtcdError::Internal("empty request op".into())),
            };
            out.push(ResponseOp { response: Some(response) });
        }
        Ok(out)
    }

    /// A read inside a txn sees the txn's earlier writes: they are already in the tables of the
    /// same redb transaction, at the revision this txn will commit.
    fn txn_range(&self, r: &RangeRequest) -> Result<crate::pb::etcdserverpb::RangeResponse, EtcdError> {
        let view = Revisions { current: self.revs.current + i64::from(self.sub > 0), compacted: self.revs.compacted };
        range::range(&self.kv, &self.history, view, r)
    }

    fn do_put(&mut self, req: &PutRequest) -> Result<Option<KeyValue>, EtcdError> {
        let rev = self.write_rev();
        let prev = match self.kv.get(req.key.as_slice())? {
            Some(v) => Some(KeyValue::decode(v.value()).map_err(super::decode_error)?),
            None => None,
        };
        let value = if req.ignore_value {
            prev.as_ref().map(|p| p.value.clone()).unwrap_or_default()
        } else {
            req.value.clone()
        };
        let lease = if req.ignore_lease { prev.as_ref().map_or(0, |p| p.lease) } else { req.lease };
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            value,
            lease,
        };
        if let Some(p) = &prev
            && p.lease != 0
            && p.lease != lease
        {
            self.lease_keys.remove((p.lease, req.key.as_slice()))?;
        }
        if lease != 0 {
            self.lease_keys.insert((lease, req.key.as_slice()), ())?;
        }
        self.kv.insert(req.key.as_slice(), kv.encode_to_vec().as_slice())?;
        self.history.insert((req.key.as_slice(), rev as u64), encode_record(Some(&kv)).as_slice())?;
        self.record(EventType::Put, kv)?;
        Ok(prev)
    }

    fn do_delete(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, EtcdError> {
        let keys = KeyRange::new(&req.key, &req.range_end);
        let victims = if keys.is_empty() { Vec::new() } else { range::current(&self.kv, &keys)? };
        let rev = self.write_rev();
        for prev in &victims {
            self.kv.remove(prev.key.as_slice())?;
            if prev.lease != 0 {
                self.lease_keys.remove((prev.lease, prev.key.as_slice()))?;
            }
            self.history.insert((prev.key.as_slice(), rev as u64), encode_record(None).as_slice())?;
            self.record(
                EventType::Delete,
                KeyValue { key: prev.key.clone(), mod_revision: rev, ..Default::default() },
            )?;
        }
        Ok(DeleteRangeResponse {
            header: None,
            deleted: victims.len() as i64,
            prev_kvs: if req.prev_kv { victims } else { Vec::new() },
        })
    }

    fn record(&mut self, kind: EventType, kv: KeyValue) -> Result<(), EtcdError> {
        let event = Event { r#type: kind as i32, kv: Some(kv), prev_kv: None };
        self.events.insert((self.write_rev() as u64, self.sub), event.encode_to_vec().as_slice())?;
        self.sub += 1;
        self.pending.push(event);
        Ok(())
    }

    fn compare_all(&self, compares: &[Compare]) -> Result<bool, EtcdError> {
        for c in compares {
            if !self.compare(c)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn compare(&self, c: &Compare) -> Result<bool, EtcdError> {
        let keys = KeyRange::new(&c.key, &c.range_end);
        let kvs = if keys.is_empty() { Vec::new() } else { range::current(&self.kv, &keys)? };
        let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
        if kvs.is_empty() {
            if target == CompareTarget::Value {
                return Ok(false);
            }
            return Ok(compare_kv(c, target, &KeyValue::default()));
        }
        Ok(kvs.iter().all(|kv| compare_kv(c, target, kv)))
    }
}

fn compare_kv(c: &Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ord = match (target, &c.target_union) {
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => kv.value.as_slice().cmp(v.as_slice()),
        (CompareTarget::Version, Some(TargetUnion::Version(v))) => kv.version.cmp(v),
        (CompareTarget::Create, Some(TargetUnion::CreateRevision(v))) => kv.create_revision.cmp(v),
        (CompareTarget::Mod, Some(TargetUnion::ModRevision(v))) => kv.mod_revision.cmp(v),
        (CompareTarget::Lease, Some(TargetUnion::Lease(v))) => kv.lease.cmp(v),
        // A missing operand compares as zero / empty, as in etcd.
        (CompareTarget::Value, _) => kv.value.as_slice().cmp(&[][..]),
        (CompareTarget::Version, _) => kv.version.cmp(&0),
        (CompareTarget::Create, _) => kv.create_revision.cmp(&0),
        (CompareTarget::Mod, _) => kv.mod_revision.cmp(&0),
        (CompareTarget::Lease, _) => kv.lease.cmp(&0),
    };
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
        CompareResult::NotEqual => ord != Ordering::Equal,
    }
}

fn set_headers(responses: &mut [ResponseOp], revision: i64) {
    let header = Some(ResponseHeader { revision, ..Default::default() });
    for op in responses {
        match &mut op.response {
            Some(Response::ResponseRange(r)) => r.header = header,
            Some(Response::ResponsePut(r)) => r.header = header,
            Some(Response::ResponseDeleteRange(r)) => r.header = header,
            Some(Response::ResponseTxn(r)) => {
                r.header = header;
                set_headers(&mut r.responses, revision);
            }
            None => {}
        }
    }
}

/// Stateless checks of a Put (before proposing and again when applying).
pub fn check_put(req: &PutRequest) -> Result<(), EtcdError> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

/// Stateless checks of a Txn: op count, empty keys, and no key written twice in a branch.
pub fn check_txn(req: &TxnRequest, max_ops: usize) -> Result<(), EtcdError> {
    if req.compare.len() > max_ops || req.success.len() > max_ops || req.failure.len() > max_ops {
        return Err(EtcdError::TooManyOps);
    }
    for c in &req.compare {
        if c.key.is_empty() {
            return Err(EtcdError::EmptyKey);
        }
    }
    for branch in [&req.success, &req.failure] {
        let mut puts: Vec<Vec<u8>> = Vec::new();
        let mut deletes: Vec<KeyRange> = Vec::new();
        collect_writes(branch, max_ops, &mut puts, &mut deletes)?;
        let mut sorted = puts.clone();
        sorted.sort();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(EtcdError::DuplicateKey);
        }
        if puts.iter().any(|p| deletes.iter().any(|d| d.contains(p))) {
            return Err(EtcdError::DuplicateKey);
        }
    }
    Ok(())
}

fn collect_writes(
    ops: &[RequestOp],
    max_ops: usize,
    puts: &mut Vec<Vec<u8>>,
    deletes: &mut Vec<KeyRange>,
) -> Result<(), EtcdError> {
    for op in ops {
        match &op.request {
            Some(Request::RequestPut(p)) => {
                check_put(p)?;
                puts.push(p.key.clone());
            }
            Some(Request::RequestDeleteRange(d)) => {
                if d.key.is_empty() {
                    return Err(EtcdError::EmptyKey);
                }
                deletes.push(KeyRange::new(&d.key, &d.range_end));
            }
            Some(Request::RequestRange(r)) if r.key.is_empty() => return Err(EtcdError::EmptyKey),
            Some(Request::RequestRange(_)) => {}
            Some(Request::RequestTxn(t)) => {
                check_txn(t, max_ops)?;
                // Writes of both nested branches may not collide with this branch's writes.
                let mut inner_puts = Vec::new();
                let mut inner_deletes = Vec::new();
                collect_writes(&t.success, max_ops, &mut inner_puts, &mut inner_deletes)?;
                collect_writes(&t.failure, max_ops, &mut inner_puts, &mut inner_deletes)?;
                let mut dedup = inner_puts.clone();
                dedup.sort();
                dedup.dedup();
                puts.extend(dedup);
                deletes.extend(inner_deletes);
            }
            None => {}
        }
    }
    Ok(())
}
