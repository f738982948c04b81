//! The S3 operations: buckets, objects and listings, over the metadata in flaredb and the
//! blocks on the storage nodes.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{SinkExt, StreamExt, TryStreamExt};
use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, Bucket as S3Bucket, CompleteMultipartUploadInput,
    CompleteMultipartUploadOutput, CopyObjectInput, CopyObjectOutput, CreateBucketInput, CreateBucketOutput,
    CreateMultipartUploadInput, CreateMultipartUploadOutput, DeleteBucketInput, DeleteBucketOutput,
    DeleteBucketTaggingInput, DeleteBucketTaggingOutput, DeleteObjectInput, DeleteObjectOutput,
    DeleteObjectTaggingInput, DeleteObjectTaggingOutput, DeleteObjectsInput, DeleteObjectsOutput, ETag,
    GetBucketLocationInput, GetBucketLocationOutput, GetBucketTaggingInput, GetBucketTaggingOutput,
    GetBucketVersioningInput, GetBucketVersioningOutput, GetObjectInput, GetObjectOutput, GetObjectTaggingInput,
    GetObjectTaggingOutput, HeadBucketInput, HeadBucketOutput, HeadObjectInput, HeadObjectOutput, ListBucketsInput,
    ListBucketsOutput, ListMultipartUploadsInput, ListMultipartUploadsOutput, ListObjectVersionsInput,
    ListObjectVersionsOutput, ListObjectsInput, ListObjectsOutput, ListObjectsV2Input, ListObjectsV2Output,
    ListPartsInput, ListPartsOutput, PutBucketTaggingInput, PutBucketTaggingOutput, PutBucketVersioningInput,
    PutBucketVersioningOutput, PutObjectInput, PutObjectOutput, PutObjectTaggingInput, PutObjectTaggingOutput,
    StreamingBlob, Timestamp, UploadPartInput, UploadPartOutput,
};
use s3s::dto::{
    DeleteBucketCorsInput, DeleteBucketCorsOutput, GetBucketCorsInput, GetBucketCorsOutput, PutBucketCorsInput,
    PutBucketCorsOutput, UploadPartCopyInput, UploadPartCopyOutput,
};
use s3s::dto::{
    DeleteBucketLifecycleInput, DeleteBucketLifecycleOutput, GetBucketLifecycleConfigurationInput,
    GetBucketLifecycleConfigurationOutput, PutBucketLifecycleConfigurationInput, PutBucketLifecycleConfigurationOutput,
};
use s3s::dto::{
    DeleteBucketPolicyInput, DeleteBucketPolicyOutput, GetBucketAclInput, GetBucketAclOutput, GetBucketPolicyInput,
    GetBucketPolicyOutput, GetBucketPolicyStatusInput, GetBucketPolicyStatusOutput, PutBucketAclInput,
    PutBucketAclOutput, PutBucketPolicyInput, PutBucketPolicyOutput,
};
use s3s::{S3, S3Error, S3Request, S3Response, S3Result, s3_error};

use super::access::{Public, Read, canned};
use super::auth::{IamKeys, KeyOwner};
use super::checksums;
use super::conditions::{Conditions, DeleteConditions, WriteConditions};
use super::meta::{Bucket, BucketDeletion, Meta, ObjectMeta, Put};
use super::tagging;
use super::versioning::version_header;
use crate::data::{Cluster, DataError};

/// Longest object key (S3's limit, in bytes).
pub const MAX_KEY_BYTES: usize = 1024;

/// Refuses a key a new object cannot have: over [`MAX_KEY_BYTES`], or holding a NUL (which
/// XML cannot carry and the version records use as a separator).
pub(super) fn check_key(key: &str) -> S3Result<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(s3_error!(KeyTooLongError, "keys are at most {MAX_KEY_BYTES} bytes"));
    }
    if key.contains('\0') {
        return Err(s3_error!(InvalidArgument, "keys cannot contain a NUL character"));
    }
    Ok(())
}

/// A request body stored as blocks.
pub(super) struct Written {
    pub(super) blocks: Vec<crate::data::BlockRef>,
    pub(super) size: u64,
    pub(super) md5: [u8; 16],
    pub(super) checksum: Option<checksums::Stored>,
}

/// The gateway: S3 on lightningstor.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub(super) meta: Meta,
    pub(super) cluster: Arc<Cluster>,
    pub(super) keys: Arc<IamKeys>,
}

pub(super) fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

/// A metadata failure: the database is unreachable or refused; the client may retry.
pub(super) fn db_error(e: ultracloud_flaredb::error::FlareError) -> S3Error {
    tracing::warn!(error = %e, "metadata operation failed");
    s3_error!(ServiceUnavailable, "the metadata store is unavailable; retry")
}

/// A data-path failure while writing or reading blocks.
fn data_error(e: DataError) -> S3Error {
    match e {
        // The request body failed: what s3s's verification said decides the code.
        DataError::Source(msg) => {
            let lower = msg.to_ascii_lowercase();
            if lower.contains("signature") {
                s3_error!(SignatureDoesNotMatch, "a chunk's signature does not match")
            } else if lower.contains("sha256") {
                s3_error!(BadDigest, "the body does not match x-amz-content-sha256")
            } else {
                s3_error!(IncompleteBody, "the request body ended early: {msg}")
            }
        }
        other => {
            tracing::warn!(error = %other, "data path failed");
            s3_error!(ServiceUnavailable, "not enough storage nodes answered; retry")
        }
    }
}

impl Gateway {
    /// The project the request's access key acts in (s3s verified its signature already).
    pub(super) async fn caller<T>(&self, req: &S3Request<T>) -> S3Result<KeyOwner> {
        let Some(c) = &req.credentials else {
            return Err(s3_error!(AccessDenied, "anonymous requests are not allowed"));
        };
        Ok(self.keys.resolve(&c.access_key).await?.1)
    }

    /// The bucket `name` if the caller's project owns it.
    pub(super) async fn owned(&self, who: &KeyOwner, name: &str) -> S3Result<Bucket> {
        match self.meta.bucket(name).await.map_err(db_error)? {
            Some(b) if b.tenant == who.tenant && b.project == who.project => Ok(b),
            // S3 answers 403 for a bucket that exists but is someone else's.
            Some(_) => Err(s3_error!(AccessDenied, "the bucket belongs to another project")),
            None => Err(s3_error!(NoSuchBucket)),
        }
    }

    pub(super) async fn object_of(&self, bucket: &Bucket, key: &str) -> S3Result<ObjectMeta> {
        self.meta.object(bucket, key).await.map_err(db_error)?.ok_or_else(|| s3_error!(NoSuchKey))
    }

    /// Streams a request body into blocks, checking Content-MD5, Content-Length and the
    /// `x-amz-checksum-*` the request names (`checksum`; its value perhaps in `trailers`). On
    /// a refusal the blocks written stay unreferenced: garbage, never visible.
    pub(super) async fn write_body(
        &self,
        body: Option<StreamingBlob>,
        content_md5: Option<&str>,
        content_length: Option<i64>,
        checksum: Option<checksums::Wanted>,
        trailers: Option<&s3s::TrailingHeaders>,
    ) -> S3Result<Written> {
        let want_md5 = match content_md5 {
            Some(b64) => Some(
                base64_decode(b64)
                    .filter(|d| d.len() == 16)
                    .ok_or_else(|| s3_error!(InvalidDigest, "Content-MD5 is not the base64 of 16 bytes"))?,
            ),
            None => None,
        };
        let mut md5 = <s3s::crypto::Md5 as s3s::crypto::Checksum>::new();
        let mut hasher = checksum.map(checksums::Hasher::new);
        let mut size = 0u64;
        let blocks = match body {
            Some(body) => {
                let body = body.inspect_ok(|chunk| {
                    s3s::crypto::Checksum::update(&mut md5, chunk);
                    if let Some(h) = &mut hasher {
                        h.update(chunk);
                    }
                    size += chunk.len() as u64;
                });
                self.cluster.write_stream(body).await.map_err(data_error)?
            }
            None => Vec::new(),
        };
        let digest = s3s::crypto::Checksum::finalize(md5);
        if want_md5.is_some_and(|w| w.as_slice() != digest.as_slice()) {
            return Err(s3_error!(BadDigest, "the body does not match Content-MD5"));
        }
        if content_length.is_some_and(|n| u64::try_from(n).ok() != Some(size)) {
            return Err(s3_error!(IncompleteBody, "the body is {size} bytes, not Content-Length"));
        }
        let checksum = hasher.map(|h| h.finish(trailers)).transpose()?;
        Ok(Written { blocks, size, md5: digest, checksum })
    }

    /// `bytes start..end` of `o` as a response body. A task reads the blocks ahead into a small
    /// channel, so the body holds at most a few blocks whatever the object's size.
    fn body(&self, o: &ObjectMeta, start: u64, end: u64) -> StreamingBlob {
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
        let (cluster, blocks) = (self.cluster.clone(), o.blocks.clone());
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(cluster.read_range(blocks, start, end));
            while let Some(item) = stream.next().await {
                let item = item.map_err(|e| {
                    tracing::warn!(error = %e, "a block could not be read for a GET");
                    std::io::Error::other(e.to_string())
                });
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return; // the client went away, or the body ends with the error
                }
            }
        });
        StreamingBlob::wrap(rx)
    }
}

/// Refuses a request that asks for server-side encryption (SSE-S3, SSE-KMS or SSE-C): the
/// gateway does not encrypt at rest, and storing the object anyway would let the client
/// believe it encrypted (ceph's s3-tests found the headers silently ignored).
macro_rules! refuse_encryption {
    ($input:expr, $($field:ident),+) => {
        if $($input.$field.is_some())||+ {
            return Err(s3_error!(
                NotImplemented,
                "server-side encryption (x-amz-server-side-encryption*) is not offered by this gateway"
            ));
        }
    };
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let who = self.caller(&req).await?;
        let acl_read = canned(req.input.acl.as_ref())?.unwrap_or(false);
        let b = Bucket {
            name: req.input.bucket.clone(),
            id: crate::gateway::new_id(),
            tenant: who.tenant.clone(),
            project: who.project.clone(),
            created_ms: now_ms(),
            tags: Default::default(),
            versioning: Default::default(),
            lifecycle: Vec::new(),
            cors: Vec::new(),
            public: Public { acl_read, policy: None },
        };
        match self.meta.create_bucket(&b).await.map_err(db_error)? {
            None => Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{}", b.name)) })),
            Some(old) if old.tenant == who.tenant && old.project == who.project => {
                Err(s3_error!(BucketAlreadyOwnedByYou))
            }
            Some(_) => Err(s3_error!(BucketAlreadyExists)),
        }
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        let who = self.caller(&req).await?;
        self.owned(&who, &req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let who = self.caller(&req).await?;
        self.owned(&who, &req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let who = self.caller(&req).await?;
        let buckets = self.meta.buckets_of(&who.tenant, &who.project).await.map_err(db_error)?;
        let buckets = buckets
            .into_iter()
            .map(|b| S3Bucket { name: Some(b.name), creation_date: Some(timestamp(b.created_ms)), bucket_region: None })
            .collect();
        Ok(S3Response::new(ListBucketsOutput { buckets: Some(buckets), ..Default::default() }))
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        let who = self.caller(&req).await?;
        let b = self.owned(&who, &req.input.bucket).await?;
        match self.meta.delete_bucket(&b.name).await.map_err(db_error)? {
            BucketDeletion::Deleted => Ok(S3Response::new(DeleteBucketOutput::default())),
            BucketDeletion::NotEmpty => Err(s3_error!(BucketNotEmpty)),
            BucketDeletion::Missing => Err(s3_error!(NoSuchBucket)),
        }
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        refuse_encryption!(req.input, server_side_encryption, sse_customer_algorithm, ssekms_key_id);
        let who = self.caller(&req).await?;
        let input = req.input;
        check_key(&input.key)?;
        let bucket = self.owned(&who, &input.bucket).await?;
        // Refused before a byte is stored.
        let tags = tagging::from_header(input.tagging.as_deref())?;
        let wanted = checksums::wanted_by!(input)?;
        let conditions = WriteConditions { if_match: input.if_match, if_none_match: input.if_none_match };
        if !conditions.is_empty() {
            // Early, to spare the upload of a body that cannot be kept; the transaction that
            // installs the object checks again.
            conditions.check(self.meta.object(&bucket, &input.key).await.map_err(db_error)?.as_ref())?;
        }
        let written = self
            .write_body(
                input.body,
                input.content_md5.as_deref(),
                input.content_length,
                wanted,
                req.trailing_headers.as_ref(),
            )
            .await?;
        let o = ObjectMeta {
            key: input.key,
            size: written.size,
            etag: hex::encode(written.md5),
            content_type: input.content_type,
            metadata: input.metadata.unwrap_or_default().into_iter().collect(),
            modified_ms: now_ms(),
            blocks: written.blocks,
            tags,
            version_id: None,
            delete_marker: false,
            checksum: written.checksum,
        };
        let o = match self.meta.put_object(&bucket, &o, &conditions).await.map_err(db_error)? {
            Put::Written(o) => o,
            Put::BucketGone => return Err(s3_error!(NoSuchBucket, "the bucket was deleted during the upload")),
            // The blocks just written are referenced by nothing: garbage collection takes them.
            Put::Refused(refused) => return Err(refused.into()),
        };
        let out = PutObjectOutput {
            version_id: version_header(&bucket, &o),
            e_tag: Some(ETag::Strong(o.etag.clone())),
            size: i64::try_from(o.size).ok(),
            ..Default::default()
        };
        Ok(S3Response::new(checksums::answer_with!(out, o.checksum.as_ref())))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        refuse_encryption!(req.input, sse_customer_algorithm);
        let bucket = self.readable(&req, &req.input.bucket, Read::Object).await?;
        let o = self.object_version(&bucket, &req.input.key, req.input.version_id.as_deref()).await?;
        let conditions = Conditions {
            if_match: req.input.if_match.clone(),
            if_none_match: req.input.if_none_match.clone(),
            if_modified_since: req.input.if_modified_since.clone(),
            if_unmodified_since: req.input.if_unmodified_since.clone(),
        };
        conditions.check_read(&o)?;
        let (range, content_range) = match &req.input.range {
            Some(r) => {
                let range = r.check(o.size)?;
                let content_range = format!("bytes {}-{}/{}", range.start, range.end.saturating_sub(1), o.size);
                (range, Some(content_range))
            }
            None => (0..o.size, None),
        };
        // Checksums are of the whole object: given only when it is asked for whole.
        let whole =
            content_range.is_none() && req.input.checksum_mode.as_ref().is_some_and(|m| m.as_str() == "ENABLED");
        let body = self.body(&o, range.start, range.end);
        let out = GetObjectOutput {
            body: Some(body),
            content_length: i64::try_from(range.end - range.start).ok(),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(ETag::Strong(o.etag.clone())),
            last_modified: Some(timestamp(o.modified_ms)),
            content_type: o.content_type.clone(),
            metadata: (!o.metadata.is_empty()).then(|| o.metadata.clone().into_iter().collect()),
            tag_count: (!o.tags.is_empty()).then(|| i32::try_from(o.tags.len()).unwrap_or(i32::MAX)),
            version_id: version_header(&bucket, &o),
            ..Default::default()
        };
        Ok(S3Response::new(checksums::answer_with!(out, o.checksum.as_ref().filter(|_| whole))))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        refuse_encryption!(req.input, sse_customer_algorithm);
        let bucket = self.readable(&req, &req.input.bucket, Read::Object).await?;
        let o = self.object_version(&bucket, &req.input.key, req.input.version_id.as_deref()).await?;
        let input = req.input;
        let conditions = Conditions {
            if_match: input.if_match,
            if_none_match: input.if_none_match,
            if_modified_since: input.if_modified_since,
            if_unmodified_since: input.if_unmodified_since,
        };
        conditions.check_read(&o)?;
        let asked = input.checksum_mode.as_ref().is_some_and(|m| m.as_str() == "ENABLED");
        let out = HeadObjectOutput {
            content_length: i64::try_from(o.size).ok(),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(ETag::Strong(o.etag.clone())),
            last_modified: Some(timestamp(o.modified_ms)),
            content_type: o.content_type.clone(),
            metadata: (!o.metadata.is_empty()).then(|| o.metadata.clone().into_iter().collect()),
            version_id: version_header(&bucket, &o),
            ..Default::default()
        };
        Ok(S3Response::new(checksums::answer_with!(out, o.checksum.as_ref().filter(|_| asked))))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let who = self.caller(&req).await?;
        let bucket = self.owned(&who, &req.input.bucket).await?;
        let input = req.input;
        let conditions = DeleteConditions {
            if_match: input.if_match,
            last_modified: input.if_match_last_modified_time,
            size: input.if_match_size,
        };
        // Deleting an absent key (or version) succeeds, as in S3.
        let (marker, version_id) =
            self.delete_key(&bucket, &input.key, input.version_id.as_deref(), &conditions).await?;
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: marker.then_some(true),
            version_id,
            ..Default::default()
        }))
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        self.put_versioning(req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.get_versioning(req).await
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        self.put_lifecycle(req).await
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        self.get_lifecycle(req).await
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        self.delete_lifecycle(req).await
    }

    async fn put_bucket_cors(&self, req: S3Request<PutBucketCorsInput>) -> S3Result<S3Response<PutBucketCorsOutput>> {
        self.put_cors(req).await
    }

    async fn get_bucket_cors(&self, req: S3Request<GetBucketCorsInput>) -> S3Result<S3Response<GetBucketCorsOutput>> {
        self.get_cors(req).await
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        self.delete_cors(req).await
    }

    async fn put_bucket_acl(&self, req: S3Request<PutBucketAclInput>) -> S3Result<S3Response<PutBucketAclOutput>> {
        self.put_acl(req).await
    }

    async fn get_bucket_acl(&self, req: S3Request<GetBucketAclInput>) -> S3Result<S3Response<GetBucketAclOutput>> {
        self.get_acl(req).await
    }

    async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        self.put_policy(req).await
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        self.get_policy(req).await
    }

    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        self.delete_policy(req).await
    }

    async fn get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        self.policy_status(req).await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        self.list_versions(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        refuse_encryption!(req.input, server_side_encryption, sse_customer_algorithm, ssekms_key_id);
        self.create_multipart(req).await
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        refuse_encryption!(req.input, sse_customer_algorithm);
        self.upload_one_part(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        refuse_encryption!(req.input, sse_customer_algorithm, copy_source_sse_customer_algorithm);
        self.upload_part_copy(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.complete_multipart(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.abort_multipart(req).await
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        self.list_upload_parts(req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.list_uploads(req).await
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        self.list_v1(req).await
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.list_v2(req).await
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        refuse_encryption!(
            req.input,
            server_side_encryption,
            sse_customer_algorithm,
            ssekms_key_id,
            copy_source_sse_customer_algorithm
        );
        self.copy(req).await
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.delete_many(req).await
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        self.put_tags(req).await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        self.get_tags(req).await
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        self.delete_tags(req).await
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        self.put_bucket_tags(req).await
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        self.get_bucket_tags(req).await
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        self.delete_bucket_tags(req).await
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()
}
