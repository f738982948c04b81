//! Tags: on objects (PutObjectTagging, GetObjectTagging, DeleteObjectTagging, and the
//! `x-amz-tagging` header of PutObject, CreateMultipartUpload and CopyObject) and on buckets
//! (Put/Get/DeleteBucketTagging), with S3's limits.

use std::collections::BTreeMap;

use s3s::dto::{
    DeleteBucketTaggingInput, DeleteBucketTaggingOutput, DeleteObjectTaggingInput, DeleteObjectTaggingOutput,
    GetBucketTaggingInput, GetBucketTaggingOutput, GetObjectTaggingInput, GetObjectTaggingOutput,
    PutBucketTaggingInput, PutBucketTaggingOutput, PutObjectTaggingInput, PutObjectTaggingOutput, Tag, TagSet,
};
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::s3::{Gateway, db_error};
use super::versioning::{version_header, version_param};

/// Tags by key.
pub type Tags = BTreeMap<String, String>;

/// Most tags on an object (S3's limit).
pub const MAX_OBJECT_TAGS: usize = 10;
/// Most tags on a bucket (S3's limit).
pub const MAX_BUCKET_TAGS: usize = 50;
const MAX_TAG_KEY: usize = 128;
const MAX_TAG_VALUE: usize = 256;

fn check(tags: &Tags, max: usize) -> S3Result<()> {
    if tags.len() > max {
        return Err(s3_error!(InvalidTag, "at most {max} tags"));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > MAX_TAG_KEY {
            return Err(s3_error!(InvalidTag, "tag keys are 1 to {MAX_TAG_KEY} characters"));
        }
        if v.chars().count() > MAX_TAG_VALUE {
            return Err(s3_error!(InvalidTag, "tag values are at most {MAX_TAG_VALUE} characters"));
        }
        if k.starts_with("aws:") {
            return Err(s3_error!(InvalidTag, "the aws: prefix is reserved"));
        }
    }
    Ok(())
}

/// A request's tag set as tags (a key named twice is refused).
pub fn from_set(set: TagSet, max: usize) -> S3Result<Tags> {
    let mut tags = Tags::new();
    for t in set {
        let (Some(k), v) = (t.key, t.value) else { return Err(s3_error!(InvalidTag, "a tag without a key")) };
        if tags.insert(k, v.unwrap_or_default()).is_some() {
            return Err(s3_error!(InvalidTag, "a tag key is named twice"));
        }
    }
    check(&tags, max)?;
    Ok(tags)
}

/// Tags as a response's tag set.
pub fn to_set(tags: &Tags) -> TagSet {
    tags.iter().map(|(k, v)| Tag { key: Some(k.clone()), value: Some(v.clone()) }).collect()
}

/// The `x-amz-tagging` header (`k1=v1&k2=v2`, URL-encoded) as object tags.
pub fn from_header(header: Option<&str>) -> S3Result<Tags> {
    let mut tags = Tags::new();
    for pair in header.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (url_decode(k)?, url_decode(v)?);
        if tags.insert(k, v).is_some() {
            return Err(s3_error!(InvalidTag, "a tag key is named twice in x-amz-tagging"));
        }
    }
    check(&tags, MAX_OBJECT_TAGS)?;
    Ok(tags)
}

/// Form URL decoding: `+` is a space, `%XX` a byte; the result must be UTF-8.
fn url_decode(s: &str) -> S3Result<String> {
    let bad = || s3_error!(InvalidArgument, "x-amz-tagging is not URL-encoded key=value pairs");
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [bytes.next().ok_or_else(bad)?, bytes.next().ok_or_else(bad)?];
                let hex = std::str::from_utf8(&hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

impl Gateway {
    pub(super) async fn put_tags(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let who = self.caller(&req).await?;
        let input = req.input;
        let tags = from_set(input.tagging.tag_set, MAX_OBJECT_TAGS)?;
        let bucket = self.owned(&who, &input.bucket).await?;
        let version = input.version_id.as_deref().map(version_param).transpose()?;
        if !self.meta.set_object_tags(&bucket, &input.key, version.clone(), tags).await.map_err(db_error)? {
            return Err(if version.is_some() { s3_error!(NoSuchVersion) } else { s3_error!(NoSuchKey) });
        }
        Ok(S3Response::new(PutObjectTaggingOutput::default()))
    }

    pub(super) async fn get_tags(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let who = self.caller(&req).await?;
        let bucket = self.owned(&who, &req.input.bucket).await?;
        let o = self.object_version(&bucket, &req.input.key, req.input.version_id.as_deref()).await?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set: to_set(&o.tags),
            version_id: version_header(&bucket, &o),
        }))
    }

    pub(super) async fn delete_tags(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let who = self.caller(&req).await?;
        let bucket = self.owned(&who, &req.input.bucket).await?;
        let version = req.input.version_id.as_deref().map(version_param).transpose()?;
        if !self.meta.set_object_tags(&bucket, &req.input.key, version.clone(), Tags::new()).await.map_err(db_error)? {
            return Err(if version.is_some() { s3_error!(NoSuchVersion) } else { s3_error!(NoSuchKey) });
        }
        Ok(S3Response::new(DeleteObjectTaggingOutput::default()))
    }

    pub(super) async fn put_bucket_tags(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        let who = self.caller(&req).await?;
        let input = req.input;
        let tags = from_set(input.tagging.tag_set, MAX_BUCKET_TAGS)?;
        let bucket = self.owned(&who, &input.bucket).await?;
        if !self.meta.set_bucket_tags(&bucket, tags).await.map_err(db_error)? {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(S3Response::new(PutBucketTaggingOutput::default()))
    }

    pub(super) async fn get_bucket_tags(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        let who = self.caller(&req).await?;
        let bucket = self.owned(&who, &req.input.bucket).await?;
        if bucket.tags.is_empty() {
            return Err(s3_error!(NoSuchTagSet));
        }
        Ok(S3Response::new(GetBucketTaggingOutput { tag_set: to_set(&bucket.tags) }))
    }

    pub(super) async fn delete_bucket_tags(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        let who = self.caller(&req).await?;
        let bucket = self.owned(&who, &req.input.bucket).await?;
        if !self.meta.set_bucket_tags(&bucket, Tags::new()).await.map_err(db_error)? {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(S3Response::new(DeleteBucketTaggingOutput::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_keep_s3s_limits_and_the_header_decodes() {
        let tags = from_header(Some("project=blue&cost+center=r%26d&empty=")).unwrap();
        assert_eq!(tags["project"], "blue");
        assert_eq!(tags["cost center"], "r&d");
        assert_eq!(tags["empty"], "");
        assert!(from_header(Some("a=1&a=2")).is_err(), "twice");
        assert!(from_header(Some("a=%zz")).is_err());
        assert!(from_header(None).unwrap().is_empty());
        let many: String = (0..11).map(|i| format!("k{i}=v&")).collect();
        assert!(from_header(Some(&many)).is_err(), "eleven object tags");
        let set = |pairs: &[(&str, &str)]| -> TagSet {
            pairs.iter().map(|(k, v)| Tag { key: Some((*k).into()), value: Some((*v).into()) }).collect()
        };
        assert!(from_set(set(&[("aws:x", "1")]), 10).is_err(), "reserved prefix");
        assert!(from_set(set(&[(&"k".repeat(129), "1")]), 10).is_err());
        assert!(from_set(set(&[("k", &"v".repeat(257))]), 10).is_err());
        assert!(from_set(set(&[("", "v")]), 10).is_err());
        let ok = from_set(set(&[("b", "2"), ("a", "1")]), 10).unwrap();
        assert_eq!(to_set(&ok).iter().map(|t| t.key.clone().unwrap()).collect::<Vec<_>>(), ["a", "b"]);
    }
}
