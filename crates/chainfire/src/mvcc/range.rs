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
    let mut kvs = if keys.is_empty() {
        Vec::new()
    } else if at == revs.current {
        current(kv, &keys)?
    } else {
        historical(history, &keys, at)?
    };
    kvs.retain(|kv| {
        (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
            && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
            && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
    });
    let count = kvs.len() as i64;
    sort(&mut kvs, req);
    let more = req.limit > 0 && kvs.len() as i64 > req.limit;
    if req.limit > 0 {
        kvs.truncate(req.limit as usize);
    }
    if req.count_only {
        kvs.clear();
    } else if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse {
        header: Some(ResponseHeader { revision: revs.current, ..Default::default() }),
        kvs,
        more,
        count,
    })
}

fn sort(kvs: &mut [KeyValue], req: &RangeRequest) {
    let order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    // Keys come out of the tables in ascending key order already.
    if order == SortOrder::None || (order == SortOrder::Ascend && target == SortTarget::Key) {
        return;
    }
    match target {
        SortTarget::Key => {}
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
    match keys {
        KeyRange::Single(k) => {
            if let Some(v) = kv.get(k.as_slice())? {
                out.push(KeyValue::decode(v.value()).map_err(decode_error)?);
            }
        }
        KeyRange::Span { .. } => {
            for item in kv.range::<&[u8]>(keys.bounds())? {
                let (_, v) = item?;
                out.push(KeyValue::decode(v.value()).map_err(decode_error)?);
            }
        }
    }
    Ok(out)
}

/// Keys of `keys` as they were at revision `at`.
pub fn historical(history: &impl HistoryTable, keys: &KeyRange, at: i64) -> Result<Vec<KeyValue>, EtcdError> {
    let mut out = Vec::new();
    match keys {
        KeyRange::Single(k) => {
            if let Some(kv) = version_at(history, k, at)? {
                out.push(kv);
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
            let flush = |best: &mut Option<Vec<u8>>, out: &mut Vec<KeyValue>| -> Result<(), EtcdError> {
                if let Some(record) = best.take()
                    && let Some(kv) = decode_record(&record)?
                {
                    out.push(kv);
                }
                Ok(())
            };
            for item in history.range::<(&[u8], u64)>((lower, upper))? {
                let (k, v) = item?;
                let (key, rev) = k.value();
                if current_key.as_deref() != Some(key) {
                    flush(&mut best, &mut out)?;
                    current_key = Some(key.to_vec());
                }
                if rev as i64 <= at {
                    best = Some(v.value().to_vec());
                }
            }
            flush(&mut best, &mut out)?;
        }
    }
    Ok(out)
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
