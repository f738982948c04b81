//! S3 versioning: Put/GetBucketVersioning, ListObjectVersions, reads and deletes of a named
//! version, over [`super::versions`]' records.

use s3s::dto::{
    BucketVersioningStatus, CommonPrefix, DeleteMarkerEntry, ETag, GetBucketVersioningInput, GetBucketVersioningOutput,
    ListObjectVersionsInput, ListObjectVersionsOutput, ObjectVersion, PutBucketVersioningInput,
    PutBucketVersioningOutput,
};
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::conditions::DeleteConditions;
use super::listing::{MAX_KEYS, common_prefix, page_size, url_encode, url_encoded};
use super::meta::{Bucket, ObjectMeta, object_key};
use super::s3::{Gateway, db_error, now_ms, timestamp};
use super::versions::{Deletion, VersionCursor, Versioning, order_of, parse_version_id, shown};

/// The `x-amz-version-id` of `o`: its ID, `null` in a bucket that has had versioning, nothing
/// in one that never had.
pub(super) fn version_header(bucket: &Bucket, o: &ObjectMeta) -> Option<String> {
    match &o.version_id {
        Some(v) => Some(v.clone()),
        None if bucket.versioning.is_unversioned() => None,
        None => Some(shown(None)),
    }
}

/// A client's `versionId`, refused as S3 does when it is not one of ours.
pub(super) fn version_param(raw: &str) -> S3Result<Option<String>> {
    parse_version_id(raw).map_err(|why| s3_error!(InvalidArgument, "Invalid version id specified: {why}"))
}

impl Gateway {
    /// The version of `key` a request names (`None`: the newest): NoSuchKey when the newest is
    /// missing or a delete marker, NoSuchVersion for an unknown version, MethodNotAllowed for
    /// a delete marker named by its ID.
    pub(super) async fn object_version(
        &self,
        bucket: &Bucket,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<ObjectMeta> {
        let Some(raw) = version_id else { return self.object_of(bucket, key).await };
        let wanted = version_param(raw)?;
        match self.meta.version(bucket, key, wanted.as_deref()).await.map_err(db_error)? {
            None => Err(s3_error!(NoSuchVersion)),
            Some((_, o)) if o.delete_marker => {
                Err(s3_error!(MethodNotAllowed, "version {raw} of {key:?} is a delete marker"))
            }
            Some((_, o)) => Ok(o),
        }
    }

    /// A DELETE of `key` (of one version when `version_id` names it) if that version meets
    /// `conditions`: whether a delete marker was added or removed, and the version ID to
    /// answer with.
    pub(super) async fn delete_key(
        &self,
        bucket: &Bucket,
        key: &str,
        version_id: Option<&str>,
        conditions: &DeleteConditions,
    ) -> S3Result<(bool, Option<String>)> {
        match version_id {
            None => match self.meta.delete_object(bucket, key, now_ms(), conditions).await.map_err(db_error)?? {
                Deletion::Removed => Ok((false, None)),
                Deletion::Marker(m) => Ok((true, Some(shown(m.version_id.as_deref())))),
            },
            Some(raw) => {
                let wanted = version_param(raw)?;
                let removed = self
                    .meta
                    .delete_version_if(bucket, key, wanted.as_deref(), conditions)
                    .await
                    .map_err(db_error)??;
                Ok((removed.is_some_and(|o| o.delete_marker), Some(raw.to_owned())))
            }
        }
    }

    pub(super) async fn put_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let who = self.caller(&req).await?;
        let input = req.input;
        let bucket = self.owned(&who, &input.bucket).await?;
        let config = input.versioning_configuration;
        if config.mfa_delete.as_ref().is_some_and(|m| m.as_str() == "Enabled") {
            return Err(s3_error!(NotImplemented, "MFA delete is not supported"));
        }
        let versioning = match config.status.as_ref().map(BucketVersioningStatus::as_str) {
            Some("Enabled") => Versioning::Enabled,
            Some("Suspended") => Versioning::Suspended,
            Some(other) => return Err(s3_error!(MalformedXML, "versioning status {other:?}: Enabled or Suspended")),
            None => return Err(s3_error!(MalformedXML, "the versioning configuration has no Status")),
        };
        if !self.meta.set_versioning(&bucket, versioning).await.map_err(db_error)? {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(S3Response::new(PutBucketVersioningOutput::default()))
    }

    pub(super) async fn get_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let who = self.caller(&req).await?;
        let bucket = self.owned(&who, &req.input.bucket).await?;
        let status = match bucket.versioning {
            Versioning::Unversioned => None,
            Versioning::Enabled => Some(BucketVersioningStatus::from_static(BucketVersioningStatus::ENABLED)),
            Versioning::Suspended => Some(BucketVersioningStatus::from_static(BucketVersioningStatus::SUSPENDED)),
        };
        Ok(S3Response::new(GetBucketVersioningOutput { status, ..Default::default() }))
    }

    /// Where a listing resumes after the client's key and version-ID markers.
    async fn version_cursor(
        &self,
        bucket: &Bucket,
        prefix: &str,
        delimiter: Option<&str>,
        key_marker: Option<&str>,
        version_marker: Option<&str>,
    ) -> S3Result<Option<VersionCursor>> {
        let Some(key) = key_marker.filter(|k| !k.is_empty()) else {
            if version_marker.is_some_and(|v| !v.is_empty()) {
                return Err(s3_error!(InvalidArgument, "a version-id-marker needs a key-marker"));
            }
            return Ok(None);
        };
        // A marker that is a common prefix skips every key under it.
        if common_prefix(key, prefix, delimiter).as_deref() == Some(key) {
            return Ok(Some(VersionCursor { key: format!("{key}\u{10FFFF}"), rank: None }));
        }
        let Some(raw) = version_marker.filter(|v| !v.is_empty()) else {
            return Ok(Some(VersionCursor { key: key.to_owned(), rank: None }));
        };
        let wanted = version_param(raw)?;
        let rank = match (self.meta.version(bucket, key, wanted.as_deref()).await.map_err(db_error)?, wanted) {
            (Some((record, o)), _) => {
                if record == object_key(bucket, key) {
                    String::new()
                } else {
                    order_of(&o)
                }
            }
            // Gone since the page that named it (a client deleting what it lists, as S3 clean-up
            // tools do): a marker is a position, not a reference. A version ID is its own order,
            // so the listing resumes where it was; the `null` version's place went with it, so
            // the listing resumes after the key.
            (None, Some(id)) => id,
            (None, None) => return Ok(Some(VersionCursor { key: key.to_owned(), rank: None })),
        };
        Ok(Some(VersionCursor { key: key.to_owned(), rank: Some(rank) }))
    }

    pub(super) async fn list_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let who = self.caller(&req).await?;
        let input = req.input;
        let bucket = self.owned(&who, &input.bucket).await?;
        let limit = page_size(input.max_keys, "max-keys")?;
        let encode = url_encoded(input.encoding_type.as_ref())?;
        let enc = |s: &str| if encode { url_encode(s) } else { s.to_owned() };
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let mut after = self
            .version_cursor(
                &bucket,
                &prefix,
                delimiter.as_deref(),
                input.key_marker.as_deref(),
                input.version_id_marker.as_deref(),
            )
            .await?;
        // Entries after a version marker are never their key's newest.
        let mut latest_given = after.as_ref().filter(|c| c.rank.is_some()).map(|c| c.key.clone());
        let (mut versions, mut markers, mut prefixes) = (Vec::new(), Vec::new(), Vec::new());
        let (mut truncated, mut next) = (false, None::<(String, Option<String>)>);
        'pages: loop {
            let (entries, more) =
                self.meta.versions(&bucket, &prefix, after.as_ref(), MAX_KEYS).await.map_err(db_error)?;
            for e in entries {
                let full = versions.len() + markers.len() + prefixes.len() == limit;
                let o = e.meta;
                if let Some(common) = common_prefix(&o.key, &prefix, delimiter.as_deref()) {
                    if full {
                        truncated = true;
                        break 'pages;
                    }
                    after = Some(VersionCursor { key: format!("{common}\u{10FFFF}"), rank: None });
                    prefixes.push(CommonPrefix { prefix: Some(enc(&common)) });
                    next = Some((common, None));
                    continue 'pages;
                }
                if full {
                    truncated = true;
                    break 'pages;
                }
                let is_latest = latest_given.as_deref() != Some(o.key.as_str());
                latest_given = Some(o.key.clone());
                after = Some(VersionCursor { key: o.key.clone(), rank: Some(e.rank) });
                let version_id = Some(shown(o.version_id.as_deref()));
                next = Some((o.key.clone(), version_id.clone()));
                if o.delete_marker {
                    markers.push(DeleteMarkerEntry {
                        key: Some(enc(&o.key)),
                        version_id,
                        is_latest: Some(is_latest),
                        last_modified: Some(timestamp(o.modified_ms)),
                        owner: None,
                    });
                } else {
                    versions.push(ObjectVersion {
                        key: Some(enc(&o.key)),
                        version_id,
                        is_latest: Some(is_latest),
                        last_modified: Some(timestamp(o.modified_ms)),
                        e_tag: Some(ETag::Strong(o.etag.clone())),
                        size: i64::try_from(o.size).ok(),
                        ..Default::default()
                    });
                }
            }
            if !more {
                break;
            }
        }
        let (next_key_marker, next_version_id_marker) = match next.filter(|_| truncated) {
            Some((k, v)) => (Some(enc(&k)), v),
            None => (None, None),
        };
        let e = |s: Option<String>| s.map(|s| enc(&s));
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(bucket.name),
            prefix: Some(e(input.prefix).unwrap_or_default()),
            delimiter: e(input.delimiter),
            key_marker: Some(e(input.key_marker).unwrap_or_default()),
            version_id_marker: Some(input.version_id_marker.unwrap_or_default()),
            max_keys: i32::try_from(limit).ok(),
            is_truncated: Some(truncated),
            next_key_marker,
            next_version_id_marker,
            versions: Some(versions),
            delete_markers: Some(markers),
            common_prefixes: Some(prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}
