//! CopyObject and DeleteObjects (multi-object delete).
//!
//! A copy moves no data: blocks are named by their content, so the new object's record lists
//! the source's blocks (within and across the caller's buckets). The source's `x-amz-copy-
//! source-if-*` conditions are checked against the record that is copied.

use s3s::dto::{
    CopyObjectInput, CopyObjectOutput, CopyObjectResult, CopySource, DeleteObjectsInput, DeleteObjectsOutput,
    DeletedObject, ETag, ETagCondition, Error as S3ObjectError,
};
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::auth::KeyOwner;
use super::conditions::{self, Conditions, DeleteConditions};
use super::meta::{Bucket, ObjectMeta, Put};
use super::s3::{Gateway, check_key, db_error, now_ms, timestamp};
use super::tagging;
use super::versioning::{version_header, version_param};

/// Most keys one DeleteObjects names (S3's limit).
const MAX_DELETE_KEYS: usize = 1000;

/// The object a copy reads.
pub(super) struct Source {
    /// Its bucket.
    pub(super) bucket: Bucket,
    /// The key of its record (for the copy's transaction).
    pub(super) record: Vec<u8>,
    /// The version copied.
    pub(super) meta: ObjectMeta,
    /// The version the request named, if any.
    pub(super) version: Option<String>,
}

impl Gateway {
    pub(super) async fn copy(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let who = self.caller(&req).await?;
        let input = req.input;
        check_key(&input.key)?;
        let conditions = conditions::copy_source_conditions!(input);
        let src = self.source_of(&who, &input.copy_source, &conditions).await?;
        let target =
            if src.bucket.name == input.bucket { src.bucket.clone() } else { self.owned(&who, &input.bucket).await? };
        let (source_bucket, source_record, source) = (src.bucket, src.record, src.meta);
        let (src_bucket, src_key, src_version) = (source_bucket.name.clone(), source.key.clone(), src.version);
        let replace = match input.metadata_directive.as_ref().map(|d| d.as_str()) {
            None | Some("COPY") => false,
            Some("REPLACE") => true,
            Some(other) => return Err(s3_error!(InvalidArgument, "metadata directive {other:?}: COPY or REPLACE")),
        };
        if src_bucket == input.bucket && src_key == input.key && src_version.is_none() && !replace {
            return Err(s3_error!(
                InvalidRequest,
                "copying an object onto itself needs a REPLACE metadata directive (nothing would change)"
            ));
        }
        let (content_type, metadata) = if replace {
            (input.content_type, input.metadata.unwrap_or_default().into_iter().collect())
        } else {
            (source.content_type.clone(), source.metadata.clone())
        };
        let tags = match input.tagging_directive.as_ref().map(|d| d.as_str()) {
            None | Some("COPY") => source.tags.clone(),
            Some("REPLACE") => tagging::from_header(input.tagging.as_deref())?,
            Some(other) => return Err(s3_error!(InvalidArgument, "tagging directive {other:?}: COPY or REPLACE")),
        };
        let o = ObjectMeta {
            key: input.key,
            size: source.size,
            etag: source.etag.clone(),
            content_type,
            metadata,
            modified_ms: now_ms(),
            blocks: source.blocks.clone(),
            tags,
            version_id: None,
            delete_marker: false,
            checksum: source.checksum.clone(),
        };
        let o = match self.meta.copy_object(&target, &o, (source_record, &source)).await.map_err(db_error)? {
            Some(Put::Written(o)) => o,
            Some(Put::BucketGone) => return Err(s3_error!(NoSuchBucket, "the bucket was deleted during the copy")),
            Some(Put::Refused(refused)) => return Err(refused.into()),
            None => {
                return Err(s3_error!(OperationAborted, "the source object changed during the copy; retry"));
            }
        };
        Ok(S3Response::new(CopyObjectOutput {
            version_id: version_header(&target, &o),
            copy_source_version_id: version_header(&source_bucket, &source),
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(o.etag)),
                last_modified: Some(timestamp(o.modified_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    /// A copy's source in one of the caller's buckets, its conditions checked.
    pub(super) async fn source_of(
        &self,
        who: &KeyOwner,
        source: &CopySource,
        conditions: &Conditions,
    ) -> S3Result<Source> {
        let CopySource::Bucket { bucket, key, version_id } = source else {
            return Err(s3_error!(NotImplemented, "copy sources are bucket/key (no access points)"));
        };
        let bucket = self.owned(who, bucket).await?;
        let version = version_id.as_deref().map(str::to_owned);
        let (record, meta) = self.copy_source(&bucket, key, version.as_deref()).await?;
        conditions.check_copy_source(&meta)?;
        Ok(Source { bucket, record, meta, version })
    }

    /// A copy's source (a named version, or the newest) with the key of its record; a delete
    /// marker cannot be copied.
    async fn copy_source(
        &self,
        bucket: &Bucket,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<(Vec<u8>, ObjectMeta)> {
        let wanted = match version_id {
            Some(raw) => Some(version_param(raw)?),
            None => None,
        };
        let found = match &wanted {
            Some(v) => self.meta.version(bucket, key, v.as_deref()).await,
            None => self.meta.current(bucket, key).await,
        };
        match found.map_err(db_error)? {
            Some((_, o)) if o.delete_marker => Err(s3_error!(InvalidRequest, "the copy source names a delete marker")),
            Some(found) => Ok(found),
            None if wanted.is_some() => Err(s3_error!(NoSuchVersion)),
            None => Err(s3_error!(NoSuchKey)),
        }
    }

    pub(super) async fn delete_many(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let who = self.caller(&req).await?;
        let input = req.input;
        let bucket = self.owned(&who, &input.bucket).await?;
        let objects = input.delete.objects;
        if objects.is_empty() || objects.len() > MAX_DELETE_KEYS {
            return Err(s3_error!(MalformedXML, "name 1 to {MAX_DELETE_KEYS} objects"));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for o in objects {
            let conditions = DeleteConditions {
                if_match: o.e_tag.map(ETagCondition::ETag),
                last_modified: o.last_modified_time,
                size: o.size,
            };
            // Deleting an absent key succeeds, as in S3; a key whose condition fails is
            // reported in `Errors` and the others go on.
            match self.delete_key(&bucket, &o.key, o.version_id.as_deref(), &conditions).await {
                Ok(_) if quiet => {}
                Ok((marker, version_id)) => deleted.push(DeletedObject {
                    key: Some(o.key),
                    delete_marker: marker.then_some(true),
                    // A new marker's ID; or the version named.
                    delete_marker_version_id: version_id.clone().filter(|_| marker && o.version_id.is_none()),
                    version_id: o.version_id,
                }),
                Err(e) => errors.push(S3ObjectError {
                    code: Some(e.code().as_str().to_owned()),
                    key: Some(o.key),
                    message: e.message().map(str::to_owned),
                    version_id: o.version_id,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput { deleted: Some(deleted), errors: Some(errors), ..Default::default() }))
    }
}
