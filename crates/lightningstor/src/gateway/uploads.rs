//! Multipart uploads' metadata in flaredb, beside [`super::meta`]'s buckets and objects.
//!
//! Keys:
//! - `lightningstor/upload/{bucket id}/{upload id}` → [`Upload`];
//! - `lightningstor/part/{upload id}/{part number, 5 digits}` → [`PartMeta`].
//!
//! A part's blocks are written before its record; completing an upload is one transaction that
//! checks the client's part list against the records, writes the object and deletes the upload
//! and every part record. Parts left out of the list, replaced parts and aborted uploads leave
//! only unreferenced blocks behind (garbage, never visible).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use ultracloud_flaredb::error::FlareError;
use ultracloud_resource::store::{decode, encode, end_of};

use super::conditions::{Refusal, WriteConditions};
use super::meta::{Bucket, Meta, ObjectMeta, bucket_key, same_bucket};
use crate::data::BlockRef;

pub(super) const UPLOADS: &str = "lightningstor/upload/";
pub(super) const PARTS: &str = "lightningstor/part/";

/// The smallest part but the last (S3's rule).
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// The highest part number (S3's).
pub const MAX_PART_NUMBER: i32 = 10_000;

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// Its ID (what clients send as `uploadId`).
    pub id: String,
    /// The object key it will complete into.
    pub key: String,
    /// Started (milliseconds since the epoch).
    pub initiated_ms: u64,
    /// Content-Type of the object to be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// User metadata of the object to be.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Tags of the object to be (`x-amz-tagging`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartMeta {
    /// Its number, 1 to 10,000.
    pub number: i32,
    /// Its length in bytes.
    pub size: u64,
    /// MD5 of its bytes, hex.
    pub etag: String,
    /// Uploaded (milliseconds since the epoch).
    pub modified_ms: u64,
    /// Its blocks, in order.
    pub blocks: Vec<BlockRef>,
}

/// What completing an upload found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// The object is written (with its version ID).
    Done(Box<ObjectMeta>),
    /// No such upload (completed or aborted already, or another key's).
    NoSuchUpload,
    /// A listed part was never uploaded, or its ETag differs.
    InvalidPart(i32),
    /// The list is not in ascending part order (or names a part twice).
    InvalidPartOrder,
    /// A part other than the last is under 5 MiB.
    EntityTooSmall(i32),
    /// The list is empty.
    NoParts,
    /// The bucket was deleted (or re-created) meanwhile.
    BucketGone,
    /// A condition on the key's current object did not hold (the upload stays).
    Refused(Refusal),
}

fn uploads_of(bucket: &Bucket) -> Vec<u8> {
    format!("{UPLOADS}{}/", bucket.id).into_bytes()
}

fn upload_key(bucket: &Bucket, id: &str) -> Vec<u8> {
    [uploads_of(bucket), id.as_bytes().to_vec()].concat()
}

fn parts_of(upload: &str) -> Vec<u8> {
    format!("{PARTS}{upload}/").into_bytes()
}

fn part_key(upload: &str, number: i32) -> Vec<u8> {
    format!("{PARTS}{upload}/{number:05}").into_bytes()
}

/// The multipart ETag: MD5 of the parts' binary MD5s, then `-count`.
pub fn multipart_etag(part_etags: &[&str]) -> String {
    let mut md5 = <s3s::crypto::Md5 as s3s::crypto::Checksum>::new();
    for e in part_etags {
        s3s::crypto::Checksum::update(&mut md5, &hex::decode(e).unwrap_or_default());
    }
    format!("{}-{}", hex::encode(s3s::crypto::Checksum::finalize(md5)), part_etags.len())
}

/// Checks a completion's part list against the uploaded parts; the parts in order.
fn choose_parts(listed: &[(i32, String)], stored: &BTreeMap<i32, PartMeta>) -> Result<Vec<PartMeta>, Completion> {
    if listed.is_empty() {
        return Err(Completion::NoParts);
    }
    if listed.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(Completion::InvalidPartOrder);
    }
    let mut chosen = Vec::with_capacity(listed.len());
    for (number, etag) in listed {
        match stored.get(number) {
            Some(p) if p.etag == etag.trim_matches('"') => chosen.push(p.clone()),
            _ => return Err(Completion::InvalidPart(*number)),
        }
    }
    if let Some(small) = chosen[..chosen.len() - 1].iter().find(|p| p.size < MIN_PART_BYTES) {
        return Err(Completion::EntityTooSmall(small.number));
    }
    Ok(chosen)
}

impl Meta {
    /// Records a new upload in `bucket`; `false` when the bucket is gone.
    pub async fn create_upload(&self, bucket: &Bucket, u: &Upload) -> Result<bool, FlareError> {
        let (bkey, ukey, value, id) =
            (bucket_key(&bucket.name), upload_key(bucket, &u.id), encode(u)?, bucket.id.clone());
        self.db
            .transact(async move |t| {
                if same_bucket(t, &bkey, &id).await?.is_none() {
                    return Ok(false);
                }
                t.put(&ukey, &value);
                Ok(true)
            })
            .await
    }

    /// Upload `id` of `bucket`, when it is in progress.
    pub async fn upload(&self, bucket: &Bucket, id: &str) -> Result<Option<Upload>, FlareError> {
        let key = upload_key(bucket, id);
        match self.db.get(&key).await? {
            Some(bytes) => Ok(Some(decode(&key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// The uploads in progress in `bucket`, in key order then start order.
    pub async fn uploads(&self, bucket: &Bucket) -> Result<Vec<Upload>, FlareError> {
        let prefix = uploads_of(bucket);
        let rows = self.db.scan(&prefix, Some(&end_of(&prefix)), 0, false).await?;
        let mut out: Vec<Upload> = rows.iter().map(|p| decode(&p.key, &p.value)).collect::<Result<_, _>>()?;
        out.sort_by(|a, b| (&a.key, a.initiated_ms, &a.id).cmp(&(&b.key, b.initiated_ms, &b.id)));
        Ok(out)
    }

    /// Records part `p` of upload `upload` (replacing an earlier part of that number, whose
    /// blocks become garbage); `false` when the upload is no longer in progress.
    pub async fn put_part(&self, bucket: &Bucket, upload: &str, p: &PartMeta) -> Result<bool, FlareError> {
        let (ukey, pkey, value) = (upload_key(bucket, upload), part_key(upload, p.number), encode(p)?);
        self.db
            .transact(async move |t| {
                if t.get(&ukey).await?.is_none() {
                    return Ok(false);
                }
                t.put(&pkey, &value);
                Ok(true)
            })
            .await
    }

    /// Up to `limit` parts of `upload` numbered above `after`, in order; and whether more follow.
    pub async fn parts(&self, upload: &str, after: i32, limit: usize) -> Result<(Vec<PartMeta>, bool), FlareError> {
        let prefix = parts_of(upload);
        let start = part_key(upload, after.saturating_add(1).max(0));
        let rows = self.db.scan(&start, Some(&end_of(&prefix)), limit + 1, false).await?;
        let more = rows.len() > limit;
        let parts = rows.iter().take(limit).map(|p| decode(&p.key, &p.value)).collect::<Result<_, _>>()?;
        Ok((parts, more))
    }

    /// Completes upload `id` into `key` with the `listed` parts (number, ETag), in one
    /// transaction: the object appears and the upload with all its part records goes — if the
    /// key's current object meets `conditions`.
    pub async fn complete_upload(
        &self,
        bucket: &Bucket,
        id: &str,
        key: &str,
        listed: Vec<(i32, String)>,
        conditions: &WriteConditions,
    ) -> Result<Completion, FlareError> {
        let (bkey, ukey) = (bucket_key(&bucket.name), upload_key(bucket, id));
        let (bucket_id, prefix, key) = (bucket.id.clone(), parts_of(id), key.to_owned());
        let (okey, conditions) = (super::meta::object_key(bucket, &key), conditions.clone());
        self.db
            .transact(async move |t| {
                let Some(current) = same_bucket(t, &bkey, &bucket_id).await? else {
                    return Ok(Completion::BucketGone);
                };
                let upload: Upload = match t.get(&ukey).await? {
                    Some(bytes) => decode(&ukey, &bytes)?,
                    None => return Ok(Completion::NoSuchUpload),
                };
                if upload.key != key {
                    return Ok(Completion::NoSuchUpload);
                }
                if !conditions.is_empty()
                    && let Err(refused) = conditions.check(super::versions::current(t, &okey).await?.as_ref())
                {
                    return Ok(Completion::Refused(refused));
                }
                let rows = t.scan(&prefix, Some(&end_of(&prefix)), 0, false).await?;
                let mut stored = BTreeMap::new();
                for row in &rows {
                    let p: PartMeta = decode(&row.key, &row.value)?;
                    stored.insert(p.number, p);
                }
                let chosen = match choose_parts(&listed, &stored) {
                    Ok(c) => c,
                    Err(refused) => return Ok(refused),
                };
                let etags: Vec<&str> = chosen.iter().map(|p| p.etag.as_str()).collect();
                let o = ObjectMeta {
                    key: key.clone(),
                    size: chosen.iter().map(|p| p.size).sum(),
                    etag: multipart_etag(&etags),
                    content_type: upload.content_type.clone(),
                    metadata: upload.metadata.clone(),
                    modified_ms: ultracloud_runtime::clock::now_ms(),
                    blocks: chosen.iter().flat_map(|p| p.blocks.iter().cloned()).collect(),
                    tags: upload.tags.clone(),
                    version_id: None,
                    delete_marker: false,
                    // S3's composite checksum of parts is not kept (the parts were checked).
                    checksum: None,
                };
                let o = super::versions::install(t, &current, o).await?;
                t.delete(&ukey);
                for row in &rows {
                    t.delete(&row.key);
                }
                Ok(Completion::Done(Box::new(o)))
            })
            .await
    }

    /// Aborts upload `id`: the upload and its part records go; `false` when there was none.
    pub async fn abort_upload(&self, bucket: &Bucket, id: &str) -> Result<bool, FlareError> {
        let (ukey, prefix) = (upload_key(bucket, id), parts_of(id));
        self.db
            .transact(async move |t| {
                if t.get(&ukey).await?.is_none() {
                    return Ok(false);
                }
                for row in t.scan(&prefix, Some(&end_of(&prefix)), 0, false).await? {
                    t.delete(&row.key);
                }
                t.delete(&ukey);
                Ok(true)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(number: i32, size: u64) -> PartMeta {
        PartMeta { number, size, etag: format!("{number:032x}"), modified_ms: 0, blocks: Vec::new() }
    }

    #[test]
    fn a_completion_list_must_name_uploaded_parts_in_order_and_all_but_the_last_large() {
        let big = MIN_PART_BYTES;
        let stored: BTreeMap<i32, PartMeta> =
            [part(1, big), part(2, big), part(3, 10), part(5, 1)].into_iter().map(|p| (p.number, p)).collect();
        let l = |items: &[i32]| -> Vec<(i32, String)> { items.iter().map(|n| (*n, format!("\"{n:032x}\""))).collect() };
        let ok = choose_parts(&l(&[1, 2, 3]), &stored).unwrap();
        assert_eq!(ok.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 2, 3], "quoted ETags match");
        assert_eq!(choose_parts(&l(&[1, 3]), &stored).map(|c| c.len()), Ok(2), "parts may be skipped");
        assert_eq!(choose_parts(&l(&[2, 1]), &stored), Err(Completion::InvalidPartOrder));
        assert_eq!(choose_parts(&l(&[1, 1]), &stored), Err(Completion::InvalidPartOrder));
        assert_eq!(choose_parts(&l(&[1, 4]), &stored), Err(Completion::InvalidPart(4)));
        assert_eq!(choose_parts(&l(&[3, 5]), &stored), Err(Completion::EntityTooSmall(3)));
        assert_eq!(choose_parts(&[], &stored), Err(Completion::NoParts));
        let wrong = vec![(1, "0".repeat(32))];
        assert_eq!(choose_parts(&wrong, &stored), Err(Completion::InvalidPart(1)));
    }

    #[test]
    fn multipart_etags_are_the_md5_of_the_part_md5s_and_the_count() {
        // Two parts whose MD5s are those of "a" and "b"; computed independently with Python's
        // hashlib: md5(md5(b"a").digest() + md5(b"b").digest()).hexdigest().
        let a = "0cc175b9c0f1b6a831c399e269772661";
        let b = "92eb5ffee6ae2fec3ad71c777531578f";
        assert_eq!(multipart_etag(&[a, b]), format!("{}-2", EXPECTED));
    }

    const EXPECTED: &str = "96e024ba2074fe77e8e965ba43a704be";
}
