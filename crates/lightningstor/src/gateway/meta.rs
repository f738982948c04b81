//! The gateway's metadata in flaredb: buckets and the current version of each object.
//!
//! Keys (through the controller kit's codec; older versions: [`super::versions`]):
//! - `lightningstor/bucket/{name}` → [`Bucket`]: names are global, as in S3;
//! - `lightningstor/object/{bucket id}/{key}` → [`ObjectMeta`]: under the bucket's random ID,
//!   not its name, so objects a racing PUT left behind in a deleted bucket never appear in a
//!   new bucket of the same name (they are garbage, collected with unreferenced blocks).
//!
//! Every change is one flaredb transaction: a PUT's blocks are written first and its record
//! then makes them visible, so a crash leaves the old object or the new one, never a listed
//! object with missing blocks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use ultracloud_flaredb::Client;
use ultracloud_flaredb::error::FlareError;
use ultracloud_resource::store::{decode, encode, end_of};

use super::access::Public;
use super::checksums::Stored;
use super::conditions::{DeleteConditions, Refusal, WriteConditions};
use super::cors::CorsRule;
use super::lifecycle::Rule;
use super::versions::{self, Deletion, VersionCursor, VersionEntry, Versioning};
use crate::data::BlockRef;

pub(super) const BUCKETS: &str = "lightningstor/bucket/";
pub(super) const OBJECTS: &str = "lightningstor/object/";

/// A bucket: a global name owned by one project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Its name (S3's rules, checked by the S3 layer).
    pub name: String,
    /// Random ID its objects are stored under.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Owning project.
    pub project: String,
    /// Created (milliseconds since the epoch).
    pub created_ms: u64,
    /// Its tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Its versioning state.
    #[serde(default, skip_serializing_if = "Versioning::is_unversioned")]
    pub versioning: Versioning,
    /// Its lifecycle rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lifecycle: Vec<Rule>,
    /// Its CORS rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors: Vec<CorsRule>,
    /// What it lets everyone read (nothing by default).
    #[serde(default, skip_serializing_if = "Public::is_private_default")]
    pub public: Public,
}

/// A version of an object (or a delete marker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Its key.
    pub key: String,
    /// Its length in bytes.
    pub size: u64,
    /// Its ETag (MD5 of the bytes, hex) without quotes.
    pub etag: String,
    /// Content-Type, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Written (milliseconds since the epoch).
    pub modified_ms: u64,
    /// Its blocks, in order.
    pub blocks: Vec<BlockRef>,
    /// Its tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Its version ID; `None` is the `null` version (written without versioning enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// A delete marker: no bytes, it hides older versions from GETs and listings.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_marker: bool,
    /// The `x-amz-checksum-*` it was written with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Stored>,
}

impl ObjectMeta {
    /// A delete marker for `key`, written at `now_ms` (its version ID is given when installed).
    pub fn marker(key: &str, now_ms: u64) -> Self {
        Self {
            key: key.to_owned(),
            size: 0,
            etag: String::new(),
            content_type: None,
            metadata: BTreeMap::new(),
            modified_ms: now_ms,
            blocks: Vec::new(),
            tags: BTreeMap::new(),
            version_id: None,
            delete_marker: true,
            checksum: None,
        }
    }
}

/// What deleting a bucket found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketDeletion {
    /// Deleted.
    Deleted,
    /// It still holds objects.
    NotEmpty,
    /// There was no such bucket.
    Missing,
}

/// What a PUT's metadata transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// Written: the new version (with its version ID).
    Written(Box<ObjectMeta>),
    /// The bucket was deleted (or re-created) meanwhile: nothing was written.
    BucketGone,
    /// A condition of the write did not hold: nothing was written.
    Refused(Refusal),
}

/// One page of a bucket's objects in key order.
#[derive(Debug, Clone, Default)]
pub struct ObjectPage {
    /// The objects.
    pub objects: Vec<ObjectMeta>,
    /// Whether more follow the last one.
    pub more: bool,
}

pub(super) fn bucket_key(name: &str) -> Vec<u8> {
    format!("{BUCKETS}{name}").into_bytes()
}

pub(super) fn objects_of(bucket: &Bucket) -> Vec<u8> {
    format!("{OBJECTS}{}/", bucket.id).into_bytes()
}

pub(super) fn object_key(bucket: &Bucket, key: &str) -> Vec<u8> {
    [objects_of(bucket), key.as_bytes().to_vec()].concat()
}

/// In `t`: the bucket at `bkey` if it is still the one with ID `id` (not deleted, not
/// re-created under the same name).
pub(super) async fn same_bucket(
    t: &ultracloud_flaredb::client::Txn,
    bkey: &[u8],
    id: &str,
) -> Result<Option<Bucket>, FlareError> {
    match t.get(bkey).await? {
        Some(bytes) => Ok(Some(decode::<Bucket>(bkey, &bytes)?).filter(|b| b.id == id)),
        None => Ok(None),
    }
}

/// The gateway's metadata store.
#[derive(Debug, Clone)]
pub struct Meta {
    pub(super) db: Client,
}

impl Meta {
    /// Metadata in the flaredb reached by `db`.
    pub fn new(db: Client) -> Self {
        Self { db }
    }

    /// Creates `b`; the bucket already there when the name is taken.
    pub async fn create_bucket(&self, b: &Bucket) -> Result<Option<Bucket>, FlareError> {
        let key = bucket_key(&b.name);
        match self.db.compare_and_swap(&key, None, Some(&encode(b)?)).await? {
            None => Ok(None),
            Some(Some(bytes)) => Ok(Some(decode(&key, &bytes)?)),
            // Deleted between the attempt and the answer: the name is free again, try once more.
            Some(None) => match self.db.compare_and_swap(&key, None, Some(&encode(b)?)).await? {
                None => Ok(None),
                Some(Some(bytes)) => Ok(Some(decode(&key, &bytes)?)),
                Some(None) => Err(FlareError::Unavailable(format!("bucket {:?} keeps changing; retry", b.name))),
            },
        }
    }

    /// The bucket called `name`.
    pub async fn bucket(&self, name: &str) -> Result<Option<Bucket>, FlareError> {
        let key = bucket_key(name);
        match self.db.get(&key).await? {
            Some(bytes) => Ok(Some(decode(&key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// The buckets of a project, by name.
    pub async fn buckets_of(&self, tenant: &str, project: &str) -> Result<Vec<Bucket>, FlareError> {
        let mut all = self.all_buckets().await?;
        all.retain(|b| b.tenant == tenant && b.project == project);
        Ok(all)
    }

    /// Every bucket, by name.
    pub async fn all_buckets(&self) -> Result<Vec<Bucket>, FlareError> {
        let rows = self.db.scan(BUCKETS.as_bytes(), Some(&end_of(BUCKETS.as_bytes())), 0, false).await?;
        rows.iter().map(|p| decode(&p.key, &p.value)).collect()
    }

    /// Deletes the bucket called `name` if it holds no object.
    pub async fn delete_bucket(&self, name: &str) -> Result<BucketDeletion, FlareError> {
        // Owned captures: the transaction body's future must be `Send` for any borrow.
        let key = bucket_key(name);
        self.db
            .transact(async move |t| {
                let Some(bytes) = t.get(&key).await? else { return Ok(BucketDeletion::Missing) };
                let b: Bucket = decode(&key, &bytes)?;
                let prefix = objects_of(&b);
                if !t.scan(&prefix, Some(&end_of(&prefix)), 1, false).await?.is_empty()
                    || versions::any_rows(t, &b).await?
                {
                    return Ok(BucketDeletion::NotEmpty);
                }
                t.delete(&key);
                Ok(BucketDeletion::Deleted)
            })
            .await
    }

    /// Makes `o` the current version of its key in `bucket` if the key's current object
    /// meets `conditions` (checked in the same transaction).
    pub async fn put_object(
        &self,
        bucket: &Bucket,
        o: &ObjectMeta,
        conditions: &WriteConditions,
    ) -> Result<Put, FlareError> {
        // Without a source to keep, there is no source to have changed.
        Ok(self.put_object_keeping(bucket, o, None, conditions).await?.unwrap_or(Put::BucketGone))
    }

    /// Makes `o`, a copy of `source` (a version and the key of its record), the newest
    /// version of its key in `bucket` — if the source is still what was read. The source's
    /// record is written again unchanged in the same transaction, so a delete racing the copy
    /// conflicts with it: garbage collection never sees the copy's blocks unreferenced.
    /// `None`: the source changed or went meanwhile, and nothing was written.
    pub async fn copy_object(
        &self,
        bucket: &Bucket,
        o: &ObjectMeta,
        source: (Vec<u8>, &ObjectMeta),
    ) -> Result<Option<Put>, FlareError> {
        self.put_object_keeping(bucket, o, Some((source.0, source.1.clone())), &WriteConditions::default()).await
    }

    async fn put_object_keeping(
        &self,
        bucket: &Bucket,
        o: &ObjectMeta,
        keep: Option<(Vec<u8>, ObjectMeta)>,
        conditions: &WriteConditions,
    ) -> Result<Option<Put>, FlareError> {
        let (bkey, okey, o) = (bucket_key(&bucket.name), object_key(bucket, &o.key), o.clone());
        let (id, conditions) = (bucket.id.clone(), conditions.clone());
        self.db
            .transact(async move |t| {
                // The bucket must still be this one (not deleted, not re-created); its
                // versioning as of this transaction decides what the PUT does.
                let Some(current) = same_bucket(t, &bkey, &id).await? else { return Ok(Some(Put::BucketGone)) };
                if !conditions.is_empty()
                    && let Err(refused) = conditions.check(versions::current(t, &okey).await?.as_ref())
                {
                    return Ok(Some(Put::Refused(refused)));
                }
                if let Some((skey, expected)) = &keep
                    && *skey != okey
                {
                    match t.get(skey).await? {
                        Some(bytes) if decode::<ObjectMeta>(skey, &bytes)? == *expected => t.put(skey, &bytes),
                        _ => return Ok(None),
                    }
                }
                Ok(Some(Put::Written(Box::new(versions::install(t, &current, o.clone()).await?))))
            })
            .await
    }

    /// The newest version of `key` when it is an object, with the key of its record.
    pub async fn current(&self, bucket: &Bucket, key: &str) -> Result<Option<(Vec<u8>, ObjectMeta)>, FlareError> {
        let okey = object_key(bucket, key);
        Ok(self.db.get(&okey).await?.map(|b| decode(&okey, &b)).transpose()?.map(|o| (okey, o)))
    }

    /// The newest version of `key` in `bucket` when it is an object.
    pub async fn object(&self, bucket: &Bucket, key: &str) -> Result<Option<ObjectMeta>, FlareError> {
        Ok(self.current(bucket, key).await?.map(|(_, o)| o))
    }

    /// Deletes `key` from `bucket` as a DELETE without a version does: removes it, or adds a
    /// delete marker under versioning — if its newest version meets `conditions` (with
    /// conditions and nothing to delete, nothing is written: no marker).
    pub async fn delete_object(
        &self,
        bucket: &Bucket,
        key: &str,
        now_ms: u64,
        conditions: &DeleteConditions,
    ) -> Result<Result<Deletion, Refusal>, FlareError> {
        let (bkey, id, key) = (bucket_key(&bucket.name), bucket.id.clone(), key.to_owned());
        let conditions = conditions.clone();
        self.db
            .transact(async move |t| {
                let Some(current) = same_bucket(t, &bkey, &id).await? else { return Ok(Ok(Deletion::Removed)) };
                if !conditions.is_empty() {
                    let newest = versions::newest(t, &current, &key).await?;
                    if let Err(refused) = conditions.check(newest.as_ref()) {
                        return Ok(Err(refused));
                    }
                    if newest.is_none() {
                        return Ok(Ok(Deletion::Removed));
                    }
                }
                versions::delete_newest(t, &current, &key, now_ms).await.map(Ok)
            })
            .await
    }

    /// Expires `o` as a DELETE without a version would — if it is still the newest version of
    /// its key (a PUT after it was read survives); `false` when it was not.
    pub async fn expire_object(&self, bucket: &Bucket, o: &ObjectMeta, now_ms: u64) -> Result<bool, FlareError> {
        let (bkey, id, okey, o) = (bucket_key(&bucket.name), bucket.id.clone(), object_key(bucket, &o.key), o.clone());
        self.db
            .transact(async move |t| {
                let Some(current) = same_bucket(t, &bkey, &id).await? else { return Ok(false) };
                if versions::current(t, &okey).await?.as_ref() != Some(&o) {
                    return Ok(false);
                }
                versions::delete_newest(t, &current, &o.key, now_ms).await?;
                Ok(true)
            })
            .await
    }

    /// Deletes version `version_id` (`None`: the `null` version) of `key` for good; returns it
    /// (`None`: there was no such version).
    pub async fn delete_version(
        &self,
        bucket: &Bucket,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<ObjectMeta>, FlareError> {
        // No condition: nothing to refuse.
        Ok(self.delete_version_if(bucket, key, version_id, &DeleteConditions::default()).await?.unwrap_or(None))
    }

    /// [`Meta::delete_version`] if the version meets `conditions` (checked in the same
    /// transaction).
    pub async fn delete_version_if(
        &self,
        bucket: &Bucket,
        key: &str,
        version_id: Option<&str>,
        conditions: &DeleteConditions,
    ) -> Result<Result<Option<ObjectMeta>, Refusal>, FlareError> {
        let (bucket, key, version_id) = (bucket.clone(), key.to_owned(), version_id.map(str::to_owned));
        let conditions = conditions.clone();
        self.db
            .transact(async move |t| {
                if !conditions.is_empty() {
                    let found = versions::find(t, &bucket, &key, version_id.as_deref()).await?;
                    if let Err(refused) = conditions.check(found.as_ref().map(|(_, o)| o)) {
                        return Ok(Err(refused));
                    }
                }
                versions::delete_version(t, &bucket, &key, version_id.as_deref()).await.map(Ok)
            })
            .await
    }

    /// Version `version_id` (`None`: `null`) of `key`, with the key of its record.
    pub async fn version(
        &self,
        bucket: &Bucket,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<(Vec<u8>, ObjectMeta)>, FlareError> {
        let t = self.db.begin().await?;
        versions::find(&t, bucket, key, version_id).await
    }

    /// Up to `limit` versions of `bucket` under `prefix` after `after` (key ascending, newest
    /// version first); and whether more follow.
    pub(super) async fn versions(
        &self,
        bucket: &Bucket,
        prefix: &str,
        after: Option<&VersionCursor>,
        limit: usize,
    ) -> Result<(Vec<VersionEntry>, bool), FlareError> {
        versions::list(&self.db, bucket, prefix, after, limit).await
    }

    /// Sets the versioning of `bucket` if it is still the same bucket; `false` when it is gone.
    pub async fn set_versioning(&self, bucket: &Bucket, versioning: Versioning) -> Result<bool, FlareError> {
        self.update_bucket(bucket, move |b| b.versioning = versioning).await
    }

    /// Replaces the tags of `key` in `bucket` — of its version `version` when given (`Some(None)`:
    /// the `null` one), else the newest — and nothing else of it; `false` when there is no such
    /// object (or the version is a delete marker).
    pub async fn set_object_tags(
        &self,
        bucket: &Bucket,
        key: &str,
        version: Option<Option<String>>,
        tags: BTreeMap<String, String>,
    ) -> Result<bool, FlareError> {
        let (bucket, key) = (bucket.clone(), key.to_owned());
        self.db
            .transact(async move |t| {
                let found = match &version {
                    Some(v) => versions::find(t, &bucket, &key, v.as_deref()).await?,
                    None => {
                        let okey = object_key(&bucket, &key);
                        versions::current(t, &okey).await?.map(|o| (okey, o))
                    }
                };
                let Some((record, mut o)) = found.filter(|(_, o)| !o.delete_marker) else { return Ok(false) };
                o.tags.clone_from(&tags);
                t.put(&record, &encode(&o)?);
                Ok(true)
            })
            .await
    }

    /// Replaces the lifecycle rules of `bucket` if it is still the same bucket; `false` when it
    /// is gone.
    pub async fn set_lifecycle(&self, bucket: &Bucket, rules: Vec<Rule>) -> Result<bool, FlareError> {
        self.update_bucket(bucket, move |b| b.lifecycle.clone_from(&rules)).await
    }

    /// Replaces the CORS rules of `bucket` if it is still the same bucket; `false` when it is
    /// gone.
    pub async fn set_cors(&self, bucket: &Bucket, rules: Vec<CorsRule>) -> Result<bool, FlareError> {
        self.update_bucket(bucket, move |b| b.cors.clone_from(&rules)).await
    }

    /// Changes what `bucket` lets everyone read if it is still the same bucket; `false` when
    /// it is gone.
    pub async fn update_public(
        &self,
        bucket: &Bucket,
        change: impl Fn(&mut Public) + Send + Sync + 'static,
    ) -> Result<bool, FlareError> {
        self.update_bucket(bucket, move |b| change(&mut b.public)).await
    }

    /// Replaces the tags of `bucket` if it is still the same bucket; `false` when it is gone.
    pub async fn set_bucket_tags(&self, bucket: &Bucket, tags: BTreeMap<String, String>) -> Result<bool, FlareError> {
        self.update_bucket(bucket, move |b| b.tags.clone_from(&tags)).await
    }

    /// Changes `bucket` with `change` if it is still the same bucket; `false` when it is gone.
    async fn update_bucket(
        &self,
        bucket: &Bucket,
        change: impl Fn(&mut Bucket) + Send + Sync + 'static,
    ) -> Result<bool, FlareError> {
        let (bkey, id) = (bucket_key(&bucket.name), bucket.id.clone());
        self.db
            .transact(async move |t| {
                let Some(mut b) = same_bucket(t, &bkey, &id).await? else { return Ok(false) };
                change(&mut b);
                t.put(&bkey, &encode(&b)?);
                Ok(true)
            })
            .await
    }

    /// Up to `limit` objects of `bucket` whose keys start with `prefix` and sort after
    /// `after`, in key order.
    pub async fn objects(
        &self,
        bucket: &Bucket,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ObjectPage, FlareError> {
        let range_start = object_key(bucket, prefix);
        let start = match after {
            Some(a) if a >= prefix => [object_key(bucket, a), vec![0]].concat(),
            _ => range_start.clone(),
        };
        let end = end_of(&range_start);
        if start >= end {
            return Ok(ObjectPage::default());
        }
        let rows = self.db.scan(&start, Some(&end), limit + 1, false).await?;
        let more = rows.len() > limit;
        let objects = rows.iter().take(limit).map(|p| decode(&p.key, &p.value)).collect::<Result<_, _>>()?;
        Ok(ObjectPage { objects, more })
    }
}
