//! Object versions: S3 versioning over the metadata in flaredb.
//!
//! A key's newest version, when it is an object, is its record under `lightningstor/object/`
//! (what GETs and ListObjects read, as in an unversioned bucket). Every other version — older
//! objects and delete markers, including a delete marker that is the newest — is a row
//!
//! `lightningstor/version/{bucket id}/{key}\0{order}`
//!
//! where `order` sorts newest first: a version ID is sixteen hex digits of the inverted
//! microsecond clock and eight random ones, and is its own order; the `null` version (written
//! while versioning is off or suspended) orders by its inverted write time followed by `null`.
//! So the invariant, kept by every transaction here, is: *the object record exists if and
//! only if the key's newest version is an object*, and listing all versions of a bucket is a
//! merge of two ordered scans, the object record of a key coming first.

use serde::{Deserialize, Serialize};
use ultracloud_flaredb::client::Txn;
use ultracloud_flaredb::error::FlareError;
use ultracloud_resource::store::{decode, encode, end_of};

use super::meta::{Bucket, ObjectMeta, object_key};

pub(super) const VERSIONS: &str = "lightningstor/version/";

/// A bucket's versioning state (S3's: once enabled it can be suspended, never turned off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Versioning {
    /// Never enabled: a PUT replaces the object, a DELETE removes it.
    #[default]
    Unversioned,
    /// Every PUT is a new version; a DELETE adds a delete marker.
    Enabled,
    /// New writes are the `null` version (replacing the previous `null` one); older versions stay.
    Suspended,
}

impl Versioning {
    /// Whether versioning was never enabled.
    pub fn is_unversioned(&self) -> bool {
        *self == Self::Unversioned
    }
}

/// What deleting a key without naming a version did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// The object is gone (an unversioned bucket), or there was none.
    Removed,
    /// A delete marker is now the newest version.
    Marker(Box<ObjectMeta>),
}

/// A new version ID: newer ones sort first.
pub fn new_version_id() -> String {
    let micros = u64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_micros(),
    )
    .unwrap_or(u64::MAX);
    format!("{:016x}{}", u64::MAX - micros, hex::encode(ultracloud_resource::ids::random_bytes::<4>()))
}

/// A client's `versionId`: `Ok(None)` for `null`; an error for anything this gateway never
/// gave out.
pub fn parse_version_id(raw: &str) -> Result<Option<String>, String> {
    if raw == "null" {
        return Ok(None);
    }
    if raw.len() == 24 && raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Ok(Some(raw.to_owned()));
    }
    Err(format!("version id {:?} is not one this store gave out", raw.chars().take(64).collect::<String>()))
}

/// How a version ID reads on the wire (`null` for the null version).
pub fn shown(version_id: Option<&str>) -> String {
    version_id.unwrap_or("null").to_owned()
}

/// Where a version sorts among its key's rows (newest first).
pub(super) fn order_of(o: &ObjectMeta) -> String {
    match &o.version_id {
        Some(v) => v.clone(),
        None => format!("{:016x}null", u64::MAX - o.modified_ms.saturating_mul(1000)),
    }
}

fn versions_of(bucket: &Bucket) -> Vec<u8> {
    format!("{VERSIONS}{}/", bucket.id).into_bytes()
}

/// The prefix of `key`'s rows.
fn rows_of(bucket: &Bucket, key: &str) -> Vec<u8> {
    [versions_of(bucket), key.as_bytes().to_vec(), vec![0]].concat()
}

fn row_key(bucket: &Bucket, o: &ObjectMeta) -> Vec<u8> {
    [rows_of(bucket, &o.key), order_of(o).into_bytes()].concat()
}

/// Whether `bucket` holds any version row (a bucket is empty only without them).
pub(super) async fn any_rows(t: &Txn, bucket: &Bucket) -> Result<bool, FlareError> {
    let prefix = versions_of(bucket);
    Ok(!t.scan(&prefix, Some(&end_of(&prefix)), 1, false).await?.is_empty())
}

/// `key`'s rows, newest first.
async fn rows(t: &Txn, bucket: &Bucket, key: &str, limit: usize) -> Result<Vec<(Vec<u8>, ObjectMeta)>, FlareError> {
    let prefix = rows_of(bucket, key);
    let found = t.scan(&prefix, Some(&end_of(&prefix)), limit, false).await?;
    found.into_iter().map(|p| Ok((p.key.clone(), decode(&p.key, &p.value)?))).collect()
}

/// In `t`: the object record at `okey` (a key's newest version when it is an object).
pub(super) async fn current(t: &Txn, okey: &[u8]) -> Result<Option<ObjectMeta>, FlareError> {
    t.get(okey).await?.map(|b| decode(okey, &b)).transpose()
}

/// In `t`: `key`'s newest version, an object or a delete marker (`None`: the key has none).
pub(super) async fn newest(t: &Txn, bucket: &Bucket, key: &str) -> Result<Option<ObjectMeta>, FlareError> {
    // The object record exists iff the newest version is an object; else a marker leads the rows.
    if let Some(o) = current(t, &object_key(bucket, key)).await? {
        return Ok(Some(o));
    }
    Ok(rows(t, bucket, key, 1).await?.into_iter().map(|(_, o)| o).next().filter(|o| o.delete_marker))
}

/// Removes `key`'s `null` row, if any (a new `null` version replaces it for good).
async fn drop_null_row(t: &mut Txn, bucket: &Bucket, key: &str) -> Result<(), FlareError> {
    for (row, o) in rows(t, bucket, key, 0).await? {
        if o.version_id.is_none() {
            t.delete(&row);
        }
    }
    Ok(())
}

/// In `t`: makes `o` (an object or a delete marker) the newest version of its key under the
/// versioning of `bucket` as read in `t`, giving it its version ID; returns it as written.
pub(super) async fn install(t: &mut Txn, bucket: &Bucket, mut o: ObjectMeta) -> Result<ObjectMeta, FlareError> {
    let okey = object_key(bucket, &o.key);
    o.version_id = (bucket.versioning == Versioning::Enabled).then(new_version_id);
    if bucket.versioning.is_unversioned() {
        if o.delete_marker {
            t.delete(&okey);
        } else {
            t.put(&okey, &encode(&o)?);
        }
        return Ok(o);
    }
    if let Some(old) = current(t, &okey).await? {
        // The newest object becomes an older version, unless a new `null` replaces the `null`.
        if old.version_id.is_some() || o.version_id.is_some() {
            t.put(&row_key(bucket, &old), &encode(&old)?);
        }
    }
    if o.version_id.is_none() {
        drop_null_row(t, bucket, &o.key).await?;
    }
    if o.delete_marker {
        t.delete(&okey);
        t.put(&row_key(bucket, &o), &encode(&o)?);
    } else {
        t.put(&okey, &encode(&o)?);
    }
    Ok(o)
}

/// In `t`: deletes `key` the way a DELETE without a version does — removes it (unversioned)
/// or adds a delete marker written at `now_ms`.
pub(super) async fn delete_newest(
    t: &mut Txn,
    bucket: &Bucket,
    key: &str,
    now_ms: u64,
) -> Result<Deletion, FlareError> {
    let marker = ObjectMeta::marker(key, now_ms);
    if bucket.versioning.is_unversioned() {
        install(t, bucket, marker).await?;
        return Ok(Deletion::Removed);
    }
    Ok(Deletion::Marker(Box::new(install(t, bucket, marker).await?)))
}

/// In `t`: deletes version `version_id` of `key` for good; returns it (`None`: no such
/// version). When it was the newest, the next one takes its place.
pub(super) async fn delete_version(
    t: &mut Txn,
    bucket: &Bucket,
    key: &str,
    version_id: Option<&str>,
) -> Result<Option<ObjectMeta>, FlareError> {
    let okey = object_key(bucket, key);
    let newest = current(t, &okey).await?;
    let removed = match newest {
        Some(o) if o.version_id.as_deref() == version_id => {
            t.delete(&okey);
            Some(o)
        }
        _ => {
            let found = rows(t, bucket, key, 0).await?.into_iter().find(|(_, o)| o.version_id.as_deref() == version_id);
            match found {
                Some((row, o)) => {
                    t.delete(&row);
                    Some(o)
                }
                None => None,
            }
        }
    };
    // Keep the invariant: the object record exists iff the newest version is an object.
    if removed.is_some()
        && current(t, &okey).await?.is_none()
        && let Some((row, next)) = rows(t, bucket, key, 1).await?.into_iter().next()
        && !next.delete_marker
    {
        t.delete(&row);
        t.put(&okey, &encode(&next)?);
    }
    Ok(removed)
}

/// In `t`: version `version_id` of `key` with the key of its record (`None`: no such
/// version).
pub(super) async fn find(
    t: &Txn,
    bucket: &Bucket,
    key: &str,
    version_id: Option<&str>,
) -> Result<Option<(Vec<u8>, ObjectMeta)>, FlareError> {
    let okey = object_key(bucket, key);
    if let Some(o) = current(t, &okey).await?
        && o.version_id.as_deref() == version_id
    {
        return Ok(Some((okey, o)));
    }
    if let Some(v) = version_id {
        let row = [rows_of(bucket, key), v.as_bytes().to_vec()].concat();
        return Ok(t.get(&row).await?.map(|b| decode(&row, &b)).transpose()?.map(|o| (row, o)));
    }
    Ok(rows(t, bucket, key, 0).await?.into_iter().find(|(_, o)| o.version_id.is_none()))
}

/// Where a listing of versions resumes: after `key`'s version `rank` (`Some("")`: after its
/// object record; `None`: after all of `key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct VersionCursor {
    pub(super) key: String,
    pub(super) rank: Option<String>,
}

/// One entry of a listing of versions, in order: key ascending, newest version first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct VersionEntry {
    pub(super) meta: ObjectMeta,
    /// `""` for a key's object record, else its row's order.
    pub(super) rank: String,
}

/// Up to `limit` versions of `bucket` under `prefix` after `after`; and whether more follow.
pub(super) async fn list(
    db: &ultracloud_flaredb::Client,
    bucket: &Bucket,
    prefix: &str,
    after: Option<&VersionCursor>,
    limit: usize,
) -> Result<(Vec<VersionEntry>, bool), FlareError> {
    let objects = [super::meta::objects_of(bucket), prefix.as_bytes().to_vec()].concat();
    let versions = [versions_of(bucket), prefix.as_bytes().to_vec()].concat();
    let (object_start, version_start) = match after {
        None => (objects.clone(), versions.clone()),
        Some(c) => {
            let after_object = [object_key(bucket, &c.key), vec![0]].concat();
            let first_row = rows_of(bucket, &c.key);
            let version_start = match c.rank.as_deref() {
                Some("") => first_row,
                Some(rank) => [first_row, rank.as_bytes().to_vec(), vec![0]].concat(),
                // Past every row of the key: `key\x01` sorts after `key\0…`.
                None => [versions_of(bucket), c.key.as_bytes().to_vec(), vec![1]].concat(),
            };
            (after_object.max(objects.clone()), version_start.max(versions.clone()))
        }
    };
    let ts = db.timestamp().await?;
    let (object_end, version_end) = (end_of(&objects), end_of(&versions));
    let mut a = if object_start < object_end {
        db.scan_at(&object_start, Some(&object_end), limit + 1, false, ts).await?
    } else {
        Vec::new()
    };
    let mut b = if version_start < version_end {
        db.scan_at(&version_start, Some(&version_end), limit + 1, false, ts).await?
    } else {
        Vec::new()
    };
    let (a_full, b_full) = (a.len() > limit, b.len() > limit);
    let mut entries = Vec::with_capacity(a.len() + b.len());
    for p in a.drain(..) {
        entries.push(VersionEntry { meta: decode(&p.key, &p.value)?, rank: String::new() });
    }
    for p in b.drain(..) {
        let meta: ObjectMeta = decode(&p.key, &p.value)?;
        let rank = order_of(&meta);
        entries.push(VersionEntry { meta, rank });
    }
    entries.sort_by(|x, y| (&x.meta.key, &x.rank).cmp(&(&y.meta.key, &y.rank)));
    // Past the last entry a full scan returned, the other scan's entries may be missing.
    let horizon = |full: bool, rows: &[VersionEntry], record: bool| -> Option<(String, String)> {
        if !full {
            return None;
        }
        rows.iter().filter(|e| e.rank.is_empty() == record).map(|e| (e.meta.key.clone(), e.rank.clone())).max()
    };
    let limit_at = [horizon(a_full, &entries, true), horizon(b_full, &entries, false)].into_iter().flatten().min();
    if let Some(edge) = &limit_at {
        entries.retain(|e| (&e.meta.key, &e.rank) <= (&edge.0, &edge.1));
    }
    let more = entries.len() > limit || limit_at.is_some();
    entries.truncate(limit);
    Ok((entries, more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids_sort_newest_first_and_only_ours_parse() {
        let older = new_version_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let newer = new_version_id();
        assert!(newer < older, "{newer} sorts before {older}");
        assert_eq!(parse_version_id(&newer), Ok(Some(newer.clone())));
        assert_eq!(parse_version_id("null"), Ok(None));
        assert!(parse_version_id("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY").is_err());
        assert!(parse_version_id(&newer.to_uppercase()).is_err());
        let null_at = |ms| order_of(&ObjectMeta { modified_ms: ms, ..ObjectMeta::marker("k", ms) });
        let now_ms = ultracloud_runtime::clock::now_ms();
        assert!(null_at(now_ms + 10) < older && older < null_at(now_ms - 10), "null orders by its time");
    }
}
