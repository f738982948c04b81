//! Object listings: ListObjects (v1, markers) and ListObjectsV2 (continuation tokens) over one
//! walk of a bucket's keys that rolls keys up into common prefixes under a delimiter, and S3's
//! `encoding-type=url`.

use s3s::dto::{
    CommonPrefix, ETag, ListObjectsInput, ListObjectsOutput, ListObjectsV2Input, ListObjectsV2Output, Object, Owner,
};
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::access::Read;
use super::meta::Bucket;
use super::s3::{Gateway, db_error, timestamp};

/// Most keys a listing returns (S3's default and cap).
pub(super) const MAX_KEYS: usize = 1000;

/// One page of a listing.
pub(super) struct Listing {
    pub(super) contents: Vec<Object>,
    pub(super) prefixes: Vec<String>,
    pub(super) truncated: bool,
    /// The key or common prefix listed last (where the next page starts after).
    pub(super) last: Option<String>,
}

/// A page size from a client's `max-keys`, `max-parts` or `max-uploads` (named `what`):
/// S3's default and cap of 1000; a negative one is refused.
pub(super) fn page_size(asked: Option<i32>, what: &str) -> S3Result<usize> {
    match asked {
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "{what} must not be negative")),
        Some(n) => Ok(usize::try_from(n).unwrap_or(MAX_KEYS).min(MAX_KEYS)),
        None => Ok(MAX_KEYS),
    }
}

/// The common prefix `key` rolls up into under `prefix` and `delimiter`, if any.
pub(super) fn common_prefix(key: &str, prefix: &str, delimiter: Option<&str>) -> Option<String> {
    let d = delimiter?;
    let rest = key.strip_prefix(prefix)?;
    rest.find(d).map(|i| format!("{prefix}{}", &rest[..i + d.len()]))
}

/// Whether a listing asked for `encoding-type=url`.
pub(super) fn url_encoded(encoding: Option<&s3s::dto::EncodingType>) -> S3Result<bool> {
    match encoding.map(s3s::dto::EncodingType::as_str) {
        None => Ok(false),
        Some("url") => Ok(true),
        Some(other) => Err(s3_error!(InvalidArgument, "encoding-type {other:?}: only \"url\" is supported")),
    }
}

/// S3's URL encoding of keys in listings: every byte but unreserved characters and `/` as
/// `%XX` (clients decode with form rules, so `+` and spaces are escaped too).
pub(super) fn url_encode(s: &str) -> String {
    crate::client::s3::uri_encode(s, false)
}

impl Gateway {
    /// Up to `limit` entries (objects and common prefixes) of `bucket` under `prefix`, after
    /// `after`. An `after` that is itself a common prefix skips every key under it.
    pub(super) async fn list(
        &self,
        bucket: &Bucket,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<String>,
        limit: usize,
        encode: bool,
    ) -> S3Result<Listing> {
        let enc = |s: &str| if encode { url_encode(s) } else { s.to_owned() };
        let mut after = match after {
            Some(a) if common_prefix(&a, prefix, delimiter).as_deref() == Some(a.as_str()) => {
                Some(format!("{a}\u{10FFFF}"))
            }
            other => other,
        };
        let mut out = Listing { contents: Vec::new(), prefixes: Vec::new(), truncated: false, last: None };
        'pages: loop {
            let page = self.meta.objects(bucket, prefix, after.as_deref(), MAX_KEYS).await.map_err(db_error)?;
            for o in &page.objects {
                after = Some(o.key.clone());
                let full = out.contents.len() + out.prefixes.len() == limit;
                if let Some(common) = common_prefix(&o.key, prefix, delimiter) {
                    if out.last.as_deref() == Some(common.as_str()) {
                        continue;
                    }
                    if full {
                        out.truncated = true;
                        break 'pages;
                    }
                    // Skip the rest of this prefix: continue after its last possible key.
                    after = Some(format!("{common}\u{10FFFF}"));
                    out.prefixes.push(enc(&common));
                    out.last = Some(common);
                    continue 'pages;
                }
                if full {
                    out.truncated = true;
                    break 'pages;
                }
                out.last = Some(o.key.clone());
                out.contents.push(Object {
                    key: Some(enc(&o.key)),
                    size: i64::try_from(o.size).ok(),
                    e_tag: Some(ETag::Strong(o.etag.clone())),
                    last_modified: Some(timestamp(o.modified_ms)),
                    ..Default::default()
                });
            }
            if !page.more {
                break;
            }
        }
        Ok(out)
    }

    pub(super) async fn list_v1(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let bucket = self.readable(&req, &req.input.bucket, Read::List).await?;
        let input = req.input;
        let limit = page_size(input.max_keys, "max-keys")?;
        let encode = url_encoded(input.encoding_type.as_ref())?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let mut l = self.list(&bucket, &prefix, delimiter.as_deref(), input.marker.clone(), limit, encode).await?;
        // Version 1 lists every object's owner.
        with_owner(&bucket, &mut l.contents);
        // S3 gives NextMarker only with a delimiter; without one, clients use the last key.
        let next_marker = match (&delimiter, l.truncated) {
            (Some(_), true) => l.last.as_deref().map(|m| if encode { url_encode(m) } else { m.to_owned() }),
            _ => None,
        };
        let e = |s: Option<String>| s.map(|s| if encode { url_encode(&s) } else { s });
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(bucket.name),
            prefix: Some(e(input.prefix).unwrap_or_default()),
            marker: Some(e(input.marker).unwrap_or_default()),
            delimiter: e(input.delimiter),
            max_keys: i32::try_from(limit).ok(),
            is_truncated: Some(l.truncated),
            next_marker,
            contents: Some(l.contents),
            common_prefixes: Some(l.prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(p) }).collect()),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    pub(super) async fn list_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let bucket = self.readable(&req, &req.input.bucket, Read::List).await?;
        let input = req.input;
        let limit = page_size(input.max_keys, "max-keys")?;
        let encode = url_encoded(input.encoding_type.as_ref())?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        // The continuation token names where the last page stopped (opaque to clients).
        let after = match &input.continuation_token {
            Some(t) => Some(after_of_token(t)?),
            None => input.start_after.clone(),
        };
        let mut l = self.list(&bucket, &prefix, delimiter.as_deref(), after, limit, encode).await?;
        if input.fetch_owner == Some(true) {
            with_owner(&bucket, &mut l.contents);
        }
        let e = |s: Option<String>| s.map(|s| if encode { url_encode(&s) } else { s });
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(bucket.name),
            prefix: e(input.prefix),
            delimiter: e(input.delimiter),
            max_keys: i32::try_from(limit).ok(),
            key_count: Some(i32::try_from(l.contents.len() + l.prefixes.len()).unwrap_or(i32::MAX)),
            is_truncated: Some(l.truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: if l.truncated { l.last.as_deref().map(token_of) } else { None },
            start_after: e(input.start_after),
            contents: Some(l.contents),
            common_prefixes: Some(l.prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(p) }).collect()),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

/// Names each object's owner: the bucket's project (the ID versions are listed with too).
fn with_owner(bucket: &Bucket, objects: &mut [Object]) {
    let id = format!("{}/{}", bucket.tenant, bucket.project);
    for o in objects {
        o.owner = Some(Owner { id: Some(id.clone()), display_name: Some(id.clone()) });
    }
}

/// A continuation token: the key (or common prefix) to list after, opaque to clients.
fn token_of(after: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(after)
}

fn after_of_token(token: &str) -> S3Result<String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "the continuation token is not one this gateway gave"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_roll_up_into_common_prefixes_and_encode_for_urls() {
        assert_eq!(common_prefix("2026/trip/a", "", Some("/")).as_deref(), Some("2026/"));
        assert_eq!(common_prefix("2026/trip/a", "2026/", Some("/")).as_deref(), Some("2026/trip/"));
        assert_eq!(common_prefix("2026/a", "2026/", Some("/")), None);
        assert_eq!(common_prefix("2026/a", "", None), None);
        assert_eq!(common_prefix("a--b--c", "", Some("--")).as_deref(), Some("a--"));
        assert_eq!(url_encode("a b+c/ü%"), "a%20b%2Bc/%C3%BC%25");
        assert!(page_size(Some(-1), "max-keys").is_err());
        assert_eq!(page_size(Some(5000), "max-keys").unwrap(), MAX_KEYS);
        assert_eq!(after_of_token(&token_of("k/ü")).unwrap(), "k/ü");
        assert!(after_of_token("!!").is_err());
    }
}
