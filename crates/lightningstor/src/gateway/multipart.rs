//! S3 multipart uploads: create, upload part (and part copy), complete, abort, list parts, list
//! uploads. Parts
//! stream into blocks like a PUT; completing stitches their block lists into one object in a
//! single metadata transaction (see [`super::uploads`]).

use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, CompleteMultipartUploadInput, CompleteMultipartUploadOutput,
    CreateMultipartUploadInput, CreateMultipartUploadOutput, ETag, ListMultipartUploadsInput,
    ListMultipartUploadsOutput, ListPartsInput, ListPartsOutput, MultipartUpload, Part, UploadPartInput,
    UploadPartOutput,
};
use s3s::dto::{CommonPrefix, CopyPartResult, UploadPartCopyInput, UploadPartCopyOutput};
use s3s::{S3Request, S3Response, S3Result, s3_error};

use futures::TryStreamExt;

use super::auth::KeyOwner;
use super::checksums;
use super::conditions::{self, WriteConditions};
use super::listing::{common_prefix, page_size};
use super::meta::Bucket;
use super::s3::{Gateway, check_key, db_error, now_ms, timestamp};
use super::tagging;
use super::uploads::{Completion, MAX_PART_NUMBER, PartMeta, Upload};
use super::versioning::version_header;

impl Gateway {
    /// Upload `id` of `bucket` for `key`, or NoSuchUpload.
    async fn upload_of(&self, bucket: &Bucket, id: &str, key: &str) -> S3Result<Upload> {
        match self.meta.upload(bucket, id).await.map_err(db_error)? {
            Some(u) if u.key == key => Ok(u),
            _ => Err(s3_error!(NoSuchUpload)),
        }
    }

    pub(super) async fn create_multipart(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let who = self.caller(&req).await?;
        let input = req.input;
        check_key(&input.key)?;
        let bucket = self.owned(&who, &input.bucket).await?;
        let u = Upload {
            id: ultracloud_resource::ids::new_id("u"),
            key: input.key,
            initiated_ms: now_ms(),
            content_type: input.content_type,
            metadata: input.metadata.unwrap_or_default().into_iter().collect(),
            tags: tagging::from_header(input.tagging.as_deref())?,
        };
        if !self.meta.create_upload(&bucket, &u).await.map_err(db_error)? {
            return Err(s3_error!(NoSuchBucket, "the bucket was deleted meanwhile"));
        }
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(bucket.name),
            key: Some(u.key),
            upload_id: Some(u.id),
            ..Default::default()
        }))
    }

    /// The bucket of a part about to be written: a valid part number, the caller's bucket, an
    /// upload in progress for the key.
    async fn part_target(
        &self,
        who: &KeyOwner,
        bucket: &str,
        upload_id: &str,
        key: &str,
        part_number: i32,
    ) -> S3Result<Bucket> {
        if !(1..=MAX_PART_NUMBER).contains(&part_number) {
            return Err(s3_error!(InvalidArgument, "part numbers are 1 to {MAX_PART_NUMBER}"));
        }
        let bucket = self.owned(who, bucket).await?;
        self.upload_of(&bucket, upload_id, key).await?;
        Ok(bucket)
    }

    pub(super) async fn upload_one_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let who = self.caller(&req).await?;
        let input = req.input;
        let bucket = self.part_target(&who, &input.bucket, &input.upload_id, &input.key, input.part_number).await?;
        let wanted = checksums::wanted_by!(input)?;
        let written = self
            .write_body(
                input.body,
                input.content_md5.as_deref(),
                input.content_length,
                wanted,
                req.trailing_headers.as_ref(),
            )
            .await?;
        let p = PartMeta {
            number: input.part_number,
            size: written.size,
            etag: hex::encode(written.md5),
            modified_ms: now_ms(),
            blocks: written.blocks,
        };
        if !self.meta.put_part(&bucket, &input.upload_id, &p).await.map_err(db_error)? {
            return Err(s3_error!(NoSuchUpload, "the upload was completed or aborted meanwhile"));
        }
        let out = UploadPartOutput { e_tag: Some(ETag::Strong(p.etag)), ..Default::default() };
        Ok(S3Response::new(checksums::answer_with!(out, written.checksum.as_ref())))
    }

    /// UploadPartCopy: a part made of (a range of) another object. The bytes are read and
    /// written again — a range rarely falls on block boundaries, and a fresh write refreshes the
    /// blocks' time for garbage collection.
    pub(super) async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let who = self.caller(&req).await?;
        let input = req.input;
        let bucket = self.part_target(&who, &input.bucket, &input.upload_id, &input.key, input.part_number).await?;
        let conditions = conditions::copy_source_conditions!(input);
        let src = self.source_of(&who, &input.copy_source, &conditions).await?;
        let (start, end) = match input.copy_source_range.as_deref() {
            Some(r) => copy_range(r, src.meta.size)?,
            None => (0, src.meta.size),
        };
        let mut md5 = <s3s::crypto::Md5 as s3s::crypto::Checksum>::new();
        let body = Box::pin(self.cluster.read_range(src.meta.blocks.clone(), start, end).inspect_ok(|chunk| {
            s3s::crypto::Checksum::update(&mut md5, chunk);
        }));
        let blocks = self.cluster.write_stream(body).await.map_err(|e| {
            tracing::warn!(error = %e, "a part copy failed");
            s3_error!(ServiceUnavailable, "not enough storage nodes answered; retry")
        })?;
        let p = PartMeta {
            number: input.part_number,
            size: end - start,
            etag: hex::encode(s3s::crypto::Checksum::finalize(md5)),
            modified_ms: now_ms(),
            blocks,
        };
        if !self.meta.put_part(&bucket, &input.upload_id, &p).await.map_err(db_error)? {
            return Err(s3_error!(NoSuchUpload, "the upload was completed or aborted meanwhile"));
        }
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(p.etag)),
                last_modified: Some(timestamp(p.modified_ms)),
                ..Default::default()
            }),
            copy_source_version_id: version_header(&src.bucket, &src.meta),
            ..Default::default()
        }))
    }

    pub(super) async fn complete_multipart(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let who = self.caller(&req).await?;
        let input = req.input;
        let bucket = self.owned(&who, &input.bucket).await?;
        let mut listed = Vec::new();
        for p in input.multipart_upload.and_then(|m| m.parts).unwrap_or_default() {
            let (Some(number), Some(etag)) = (p.part_number, p.e_tag) else {
                return Err(s3_error!(MalformedXML, "every part needs a PartNumber and an ETag"));
            };
            listed.push((number, etag.value().to_owned()));
        }
        let conditions = WriteConditions { if_match: input.if_match, if_none_match: input.if_none_match };
        let done = self
            .meta
            .complete_upload(&bucket, &input.upload_id, &input.key, listed, &conditions)
            .await
            .map_err(db_error)?;
        let o = match done {
            Completion::Done(o) => o,
            Completion::NoSuchUpload => return Err(s3_error!(NoSuchUpload)),
            Completion::InvalidPart(n) => {
                return Err(s3_error!(InvalidPart, "part {n} was not uploaded, or its ETag differs"));
            }
            Completion::InvalidPartOrder => {
                return Err(s3_error!(InvalidPartOrder, "parts must be listed in ascending order, each once"));
            }
            Completion::EntityTooSmall(n) => {
                return Err(s3_error!(EntityTooSmall, "part {n} is under 5 MiB and not the last"));
            }
            Completion::NoParts => return Err(s3_error!(MalformedXML, "the part list is empty")),
            Completion::BucketGone => return Err(s3_error!(NoSuchBucket, "the bucket was deleted meanwhile")),
            Completion::Refused(refused) => return Err(refused.into()),
        };
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(bucket.name.clone()),
            key: Some(o.key.clone()),
            e_tag: Some(ETag::Strong(o.etag.clone())),
            location: Some(format!("/{}/{}", bucket.name, o.key)),
            version_id: super::versioning::version_header(&bucket, &o),
            ..Default::default()
        }))
    }

    pub(super) async fn abort_multipart(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let who = self.caller(&req).await?;
        let bucket = self.owned(&who, &req.input.bucket).await?;
        self.upload_of(&bucket, &req.input.upload_id, &req.input.key).await?;
        if !self.meta.abort_upload(&bucket, &req.input.upload_id).await.map_err(db_error)? {
            return Err(s3_error!(NoSuchUpload));
        }
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(super) async fn list_upload_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let who = self.caller(&req).await?;
        let input = req.input;
        let bucket = self.owned(&who, &input.bucket).await?;
        self.upload_of(&bucket, &input.upload_id, &input.key).await?;
        let limit = page_size(input.max_parts, "max-parts")?;
        let after = input.part_number_marker.unwrap_or(0);
        let (parts, more) = self.meta.parts(&input.upload_id, after, limit).await.map_err(db_error)?;
        let next = if more { parts.last().map(|p| p.number) } else { None };
        let parts = parts
            .into_iter()
            .map(|p| Part {
                part_number: Some(p.number),
                size: i64::try_from(p.size).ok(),
                e_tag: Some(ETag::Strong(p.etag)),
                last_modified: Some(timestamp(p.modified_ms)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(bucket.name),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: i32::try_from(limit).ok(),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next,
            is_truncated: Some(more),
            parts: Some(parts),
            ..Default::default()
        }))
    }

    pub(super) async fn list_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let who = self.caller(&req).await?;
        let input = req.input;
        let bucket = self.owned(&who, &input.bucket).await?;
        let limit = page_size(input.max_uploads, "max-uploads")?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        // After (key marker, upload ID marker): S3's order is by key, then by upload. A key
        // marker that is a common prefix skips every key under it.
        let marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone().unwrap_or_default();
        let marker_rolls_up = common_prefix(&marker, &prefix, delimiter.as_deref()).as_deref() == Some(marker.as_str());
        let after = |u: &Upload| {
            if marker_rolls_up && !marker.is_empty() {
                return u.key > marker && !u.key.starts_with(&marker);
            }
            marker.is_empty() || u.key > marker || (u.key == marker && !id_marker.is_empty() && u.id > id_marker)
        };
        let all = self.meta.uploads(&bucket).await.map_err(db_error)?;
        let (mut page, mut prefixes, mut more) = (Vec::<Upload>::new(), Vec::<String>::new(), false);
        for u in all.into_iter().filter(|u| u.key.starts_with(&prefix) && after(u)) {
            let common = common_prefix(&u.key, &prefix, delimiter.as_deref());
            if common.is_some() && prefixes.last() == common.as_ref() {
                continue;
            }
            if page.len() + prefixes.len() == limit {
                more = true;
                break;
            }
            match common {
                Some(c) => prefixes.push(c),
                None => page.push(u),
            }
        }
        // The next page starts after whichever came last: an upload or a common prefix.
        let last_upload = page.last().map(|u| (u.key.clone(), u.id.clone()));
        let (next_key, next_id) = match (more, prefixes.last(), last_upload) {
            (false, _, _) => (None, None),
            (true, Some(p), Some((k, _))) if *p > k => (Some(p.clone()), None),
            (true, _, Some((k, id))) => (Some(k), Some(id)),
            (true, Some(p), None) => (Some(p.clone()), None),
            (true, None, None) => (None, None),
        };
        let uploads = page
            .into_iter()
            .map(|u| MultipartUpload {
                key: Some(u.key),
                upload_id: Some(u.id),
                initiated: Some(timestamp(u.initiated_ms)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(bucket.name),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            max_uploads: i32::try_from(limit).ok(),
            is_truncated: Some(more),
            uploads: Some(uploads),
            delimiter: input.delimiter,
            common_prefixes: Some(prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(p) }).collect()),
            ..Default::default()
        }))
    }
}

/// `x-amz-copy-source-range: bytes=first-last` of an object of `size` bytes, as `start..end`.
fn copy_range(raw: &str, size: u64) -> S3Result<(u64, u64)> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "x-amz-copy-source-range {raw:?}: bytes=first-last, zero-based offsets with first <= last"
        )
    };
    let (first, last) = raw.strip_prefix("bytes=").and_then(|r| r.split_once('-')).ok_or_else(bad)?;
    let (first, last): (u64, u64) = (first.parse().map_err(|_| bad())?, last.parse().map_err(|_| bad())?);
    if first > last {
        return Err(bad());
    }
    if last >= size {
        return Err(s3_error!(InvalidRange, "the range ends past the source's {size} bytes"));
    }
    Ok((first, last + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges_are_inclusive_and_checked() {
        assert_eq!(copy_range("bytes=0-9", 100).unwrap(), (0, 10));
        assert_eq!(copy_range("bytes=99-99", 100).unwrap(), (99, 100));
        assert_eq!(copy_range("bytes=0-100", 100).unwrap_err().code().as_str(), "InvalidRange");
        for bad in ["0-9", "bytes=9-0", "bytes=-5", "bytes=a-b", "bytes=1-2,4-5"] {
            assert_eq!(copy_range(bad, 100).unwrap_err().code().as_str(), "InvalidArgument", "{bad}");
        }
    }
}
