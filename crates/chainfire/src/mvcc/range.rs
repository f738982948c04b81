//! Range reads: at the current revision from the `kv` table, at older revisions from `history`,
//! with etcd's limit, count, sort and revision filters.

use std::ops::Bound;

use prost::Message;
use redb::ReadableTable;

use super::{KeyRange, Revisions, decode_error};
use crate::error::EtcdError;
use crate::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::pb::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use crate::pb::mvccpb::KeyValue;

/// Tag byte of a `history` record holding a put.
pub const TAG_PUT: u8 = 0;
/// Tag byte of a `history` record holding a deletion.
pub const TAG_TOMBSTONE: u8 = 1;

/// Table of latest values.
pub trait KvTable: ReadableTable<&'static [u8], &'static [u8]> {}
impl<T: ReadableTable<&'static [u8], &'static [u8]>> KvTable for T {}
/// Table of versions.
pub trait HistoryTable: ReadableTable<(&'static [u8], u64), &'static [u8]> {}
impl<T: ReadableTable<(&'static [u8], u64), &'static [u8]>> HistoryTable for T {}

/// Answers `req` against the given tables.
pub fn range(
    kv: &impl KvTable,
    history: &impl HistoryTable,
    revs: Revisions,
    req: &RangeRequest,
) -> Result<RangeResponse, EtcdError> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    let at = if req.revision <= 0 { revs.current } else { req.revision };
    if at > revs.current {
        return Err(EtcdError::FutureRev);
    }
    if at < revs.compacted {
        return Err(EtcdError::Compacted);
    }
    let keys = KeyRange::new(&req.key, &req.range_end);
    let mut answer = Answer::new(req);
    if !keys.is_empty() && at == revs.current {
        visit_current(kv, &keys, &mut |kv| answer.offer(kv))?;
    } else if !keys.is_empty() {
        visit_historical(history, &keys, at, &mut |kv| answer.offer(kv))?;
    }
    let (kvs, count, more) = answer.finish();
    Ok(RangeResponse {
        header: Some(ResponseHeader { revision: revs.current, ..Default::default() }),
        kvs,
        more,
        count,
    })
}

/// The most bytes of keys and values one Range answer without a limit may carry (etcd's own
/// answers are bounded by gRPC's message size; a client wanting more pages with `limit`).
pub const MAX_RANGE_RESPONSE_BYTES: usize = 64 << 20;

/// A Range answer being gathered, holding no more than it will send: the keys come in key
/// order, so with a limit and key order it keeps the first `limit`; with another sort order it
/// keeps the best `limit` seen so far (pruning to `limit` whenever it holds twice that); and it
/// counts every match, as etcd's `count` is the total.
struct Answer<'a> {
    req: &'a RangeRequest,
    limit: Option<usize>,
    kvs: Vec<KeyValue>,
    count: i64,
    bytes: usize,
}

impl<'a> Answer<'a> {
    fn new(req: &'a RangeRequest) -> Self {
        let limit = usize::try_from(req.limit).ok().filter(|&l| l > 0);
        Self { req, limit, kvs: Vec::new(), count: 0, bytes: 0 }
    }

    /// Whether the request's revision filters keep `kv`.
    fn keeps(&self, kv: &KeyValue) -> bool {
        let r = self.req;
        (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
            && (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
            && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
            && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
    }

    fn offer(&mut self, kv: KeyValue) -> Result<(), EtcdError> {
        if !self.keeps(&kv) {
            return Ok(());
        }
        self.count += 1;
        if self.req.count_only {
            return Ok(());
        }
        match self.limit {
            Some(limit) if in_key_order(self.req) => {
                if self.kvs.len() < limit {
                    self.kvs.push(kv);
                }
            }
            Some(limit) => {
                self.kvs.push(kv);
                if self.kvs.len() >= 2 * limit {
                    sort(&mut self.kvs, self.req);
                    self.kvs.truncate(limit);
                }
            }
            None => {
                self.bytes += kv.key.len() + if self.req.keys_only { 0 } else { kv.value.len() };
                if self.bytes > MAX_RANGE_RESPONSE_BYTES {
                    return Err(EtcdError::ResponseTooLarge);
                }
                self.kvs.push(kv);
            }
        }
        Ok(())
    }

    /// The keys to send, the total count and whether more matched than were sent.
    fn finish(mut self) -> (Vec<KeyValue>, i64, bool) {
        sort(&mut self.kvs, self.req);
        if let Some(limit) = self.limit {
            self.kvs.truncate(limit);
        }
        if self.req.keys_only {
            for kv in &mut self.kvs {
                kv.value.clear();
            }
        }
        let more = self.limit.is_some_and(|l| self.count > l as i64);
        (self.kvs, self.count, more)
    }
}

/// Whether the answer is in the order keys come out of the tables (ascending key).
fn in_key_order(req: &RangeRequest) -> bool {
    let order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    order == SortOrder::None || (order == SortOrder::Ascend && target == SortTarget::Key)
}

fn sort(kvs: &mut [KeyValue], req: &RangeRequest) {
    // Keys come out of the tables in ascending key order already.
    if in_key_order(req) {
        return;
    }
    let order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    match target {
        // Not a no-op: an answer being gathered is sorted more than once.
        SortTarget::Key => kvs.sort_by(|a, b| a.key.cmp(&b.key)),
        SortTarget::Version => kvs.sort_by_key(|kv| kv.version),
        SortTarget::Create => kvs.sort_by_key(|kv| kv.create_revision),
        SortTarget::Mod => kvs.sort_by_key(|kv| kv.mod_revision),
        SortTarget::Value => kvs.sort_by(|a, b| a.value.cmp(&b.value)),
    }
    // etcd's order among ties is unspecified, so reversing an ascending sort is a valid DESCEND.
    if order == SortOrder::Descend {
        kvs.reverse();
    }
}

/// Live keys of `keys` at the current revision.
pub fn current(kv: &impl KvTable, keys: &KeyRange) -> Result<Vec<KeyValue>, EtcdError> {
    let mut out = Vec::new();
    visit_current(kv, keys, &mut |kv| {
        out.push(kv);
        Ok(())
    })?;
    Ok(out)
}

/// Hands each live key of `keys` at the current revision to `visit`, in key order.
fn visit_current(
    kv: &impl KvTable,
    keys: &KeyRange,
    visit: &mut impl FnMut(KeyValue) -> Result<(), EtcdError>,
) -> Result<(), EtcdError> {
    match keys {
        KeyRange::Single(k) => {
            if let Some(v) = kv.get(k.as_slice())? {
                visit(KeyValue::decode(v.value()).map_err(decode_error)?)?;
            }
        }
        KeyRange::Span { .. } => {
            for item in kv.range::<&[u8]>(keys.bounds())? {
                let (_, v) = item?;
                visit(KeyValue::decode(v.value()).map_err(decode_error)?)?;
            }
        }
    }
    Ok(())
}

/// Hands each key of `keys` as it was at revision `at` to `visit`, in key order.
fn visit_historical(
    history: &impl HistoryTable,
    keys: &KeyRange,
    at: i64,
    visit: &mut impl FnMut(KeyValue) -> Result<(), EtcdError>,
) -> Result<(), EtcdError> {
    match keys {
        KeyRange::Single(k) => {
            if let Some(kv) = version_at(history, k, at)? {
                visit(kv)?;
            }
        }
        KeyRange::Span { start, end } => {
            let lower = Bound::Included((start.as_slice(), 0u64));
            let upper = match end {
                Some(e) => Bound::Excluded((e.as_slice(), 0u64)),
                None => Bound::Unbounded,
            };
            let mut current_key: Option<Vec<u8>> = None;
            let mut best: Option<Vec<u8>> = None;
            let mut flush = |best: &mut Option<Vec<u8>>| -> Result<(), EtcdError> {
                if let Some(record) = best.take()
                    && let Some(kv) = decode_record(&record)?
                {
                    visit(kv)?;
                }
                Ok(())
            };
            for item in history.range::<(&[u8], u64)>((lower, upper))? {
                let (k, v) = item?;
                let (key, rev) = k.value();
                if current_key.as_deref() != Some(key) {
                    flush(&mut best)?;
                    current_key = Some(key.to_vec());
                }
                if rev as i64 <= at {
                    best = Some(v.value().to_vec());
                }
            }
            flush(&mut best)?;
        }
    }
    Ok(())
}

/// The version of `key` visible at revision `at`, if it existed then.
pub fn version_at(history: &impl HistoryTable, key: &[u8], at: i64) -> Result<Option<KeyValue>, EtcdError> {
    if at <= 0 {
        return Ok(None);
    }
    let mut iter = history.range::<(&[u8], u64)>((key, 0u64)..=(key, at as u64))?;
    match iter.next_back() {
        Some(item) => {
            let (_, v) = item?;
            decode_record(v.value())
        }
        None => Ok(None),
    }
}

/// Decodes a `history` record; `None` for a tombstone.
pub fn decode_record(record: &[u8]) -> Result<Option<KeyValue>, EtcdError> {
    match record.split_first() {
        Some((&TAG_PUT, body)) => Ok(Some(KeyValue::decode(body).map_err(decode_error)?)),
        Some((&TAG_TOMBSTONE, _)) => Ok(None),
        _ => Err(EtcdError::Internal("corrupt history record".into())),
    }
}

/// Encodes a `history` record.
pub fn encode_record(kv: Option<&KeyValue>) -> Vec<u8> {
    match kv {
        Some(kv) => {
            let mut out = Vec::with_capacity(1 + kv.encoded_len());
            out.push(TAG_PUT);
            out.extend_from_slice(&kv.encode_to_vec());
            out
        }
        None => vec![TAG_TOMBSTONE],
    }
}
