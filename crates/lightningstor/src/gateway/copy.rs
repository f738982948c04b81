//! CopyObject and DeleteObjects (multi-object delete).
//!
//! A copy moves no data: blocks are named by their content, so the new object's record lists
//! the source's blocks (within and across the caller's buckets). The source's `x-amz-copy-
//! source-if-*` conditions are checked against the record that is copied.

use s3s::dto::{
    CopyObjectInput, CopyObjectOutput, CopyObjectResult, CopySource, DeleteObjectsInput, DeleteObjectsOutput,
    DeletedObject, ETag, Error as S3ObjectError,
};
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::conditions::Conditions;
use super::meta::{ObjectMeta, Put};
use super::s3::{Gateway, MAX_KEY_BYTES, db_error, now_ms, timestamp};
use super::tagging;

/// Most keys one DeleteObjects names (S3's limit).
const MAX_DELETE_KEYS: usize = 1000;

impl Gateway {
    pub(super) async fn copy(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let who = self.caller(&req).await?;
        let input = req.input;
        if input.key.len() > MAX_KEY_BYTES {
            return Err(s3_error!(KeyTooLongError, "keys are at most {MAX_KEY_BYTES} bytes"));
        }
        let (src_bucket, src_key) = match &input.copy_source {
            CopySource::Bucket { version_id: Some(_), .. } => {
                return Err(s3_error!(NotImplemented, "copying a specific version: versioning is not supported yet"));
            }
            CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
            _ => return Err(s3_error!(NotImplemented, "copy sources are bucket/key (no access points)")),
        };
        let source_bucket = self.owned(&who, &src_bucket).await?;
        let target =
            if src_bucket == input.bucket { source_bucket.clone() } else { self.owned(&who, &input.bucket).await? };
        let source = self.object_of(&source_bucket, &src_key).await?;
        let conditions = Conditions {
            if_match: input.copy_source_if_match,
            if_none_match: input.copy_source_if_none_match,
            if_modified_since: input.copy_source_if_modified_since,
            if_unmodified_since: input.copy_source_if_unmodified_since,
        };
        conditions.check_copy_source(&source)?;
        let replace = match input.metadata_directive.as_ref().map(|d| d.as_str()) {
            None | Some("COPY") => false,
            Some("REPLACE") => true,
            Some(other) => return Err(s3_error!(InvalidArgument, "metadata directive {other:?}: COPY or REPLACE")),
        };
        if src_bucket == input.bucket && src_key == input.key && !replace {
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
        };
        match self.meta.copy_object(&target, &o, (&source_bucket, &source)).await.map_err(db_error)? {
            Some(Put::Replaced(_)) => {}
            Some(Put::BucketGone) => return Err(s3_error!(NoSuchBucket, "the bucket was deleted during the copy")),
            None => {
                return Err(s3_error!(OperationAborted, "the source object changed during the copy; retry"));
            }
        }
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(o.etag)),
                last_modified: Some(timestamp(o.modified_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
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
            if o.version_id.is_some() {
                errors.push(S3ObjectError {
                    code: Some("NotImplemented".into()),
                    key: Some(o.key),
                    message: Some("versioning is not supported yet".into()),
                    version_id: o.version_id,
                });
                continue;
            }
            // Deleting an absent key succeeds, as in S3.
            match self.meta.delete_object(&bucket, &o.key).await {
                Ok(_) if quiet => {}
                Ok(_) => deleted.push(DeletedObject { key: Some(o.key), ..Default::default() }),
                Err(e) => {
                    tracing::warn!(error = %e, "a multi-object delete failed for one key");
                    errors.push(S3ObjectError {
                        code: Some("ServiceUnavailable".into()),
                        key: Some(o.key),
                        message: Some("the metadata store is unavailable; retry".into()),
                        version_id: None,
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput { deleted: Some(deleted), errors: Some(errors), ..Default::default() }))
    }
}
