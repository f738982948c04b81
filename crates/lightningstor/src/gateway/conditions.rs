//! Conditional requests (RFC 9110 §13 as S3 applies them): If-Match, If-None-Match,
//! If-Modified-Since and If-Unmodified-Since on GET and HEAD, and their `x-amz-copy-source-if-*`
//! twins on a copy's source; conditional writes (If-Match and If-None-Match on PUT and
//! CompleteMultipartUpload) and deletes (If-Match, `x-amz-if-match-last-modified-time` and
//! `x-amz-if-match-size` on DELETE; ETag, LastModifiedTime and Size per key of DeleteObjects).
//! Writes and deletes are checked inside the transaction that changes the key, so a racing
//! writer can never slip between the check and the change.

use s3s::dto::{ETagCondition, Timestamp};
use s3s::{S3Error, s3_error};

use super::meta::ObjectMeta;

/// The four conditions a request may carry.
#[derive(Debug, Default)]
pub struct Conditions {
    /// If-Match.
    pub if_match: Option<ETagCondition>,
    /// If-None-Match.
    pub if_none_match: Option<ETagCondition>,
    /// If-Modified-Since.
    pub if_modified_since: Option<Timestamp>,
    /// If-Unmodified-Since.
    pub if_unmodified_since: Option<Timestamp>,
}

/// The `x-amz-copy-source-if-*` conditions of a CopyObject or UploadPartCopy input (they
/// share names), taken out of it.
macro_rules! copy_source_conditions {
    ($input:expr) => {
        $crate::gateway::conditions::Conditions {
            if_match: $input.copy_source_if_match,
            if_none_match: $input.copy_source_if_none_match,
            if_modified_since: $input.copy_source_if_modified_since,
            if_unmodified_since: $input.copy_source_if_unmodified_since,
        }
    };
}
pub(crate) use copy_source_conditions;

/// Why a condition failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// 412: If-Match or If-Unmodified-Since.
    Precondition,
    /// 304 on a read: If-None-Match or If-Modified-Since.
    NotModified,
}

fn matches(c: &ETagCondition, etag: &str) -> bool {
    match c {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value().trim_matches('"') == etag,
    }
}

fn secs(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

impl Conditions {
    /// Evaluates the conditions against `o` in RFC 9110's order: If-Match (else
    /// If-Unmodified-Since), then If-None-Match (else If-Modified-Since). HTTP dates have whole
    /// seconds: an object modified within the second named counts as not modified since.
    pub fn evaluate(&self, o: &ObjectMeta) -> Result<(), Failed> {
        let modified = i64::try_from(o.modified_ms / 1000).unwrap_or(i64::MAX);
        match (&self.if_match, &self.if_unmodified_since) {
            (Some(c), _) if !matches(c, &o.etag) => return Err(Failed::Precondition),
            (None, Some(t)) if modified > secs(t) => return Err(Failed::Precondition),
            _ => {}
        }
        match (&self.if_none_match, &self.if_modified_since) {
            (Some(c), _) if matches(c, &o.etag) => Err(Failed::NotModified),
            (None, Some(t)) if modified <= secs(t) => Err(Failed::NotModified),
            _ => Ok(()),
        }
    }

    /// On a GET or HEAD: 412 PreconditionFailed, or 304 NotModified with the object's ETag
    /// (RFC 9110 §15.4.5: a 304 names the representation the client already has).
    pub fn check_read(&self, o: &ObjectMeta) -> Result<(), S3Error> {
        match self.evaluate(o) {
            Ok(()) => Ok(()),
            Err(Failed::Precondition) => Err(s3_error!(PreconditionFailed, "a precondition does not hold")),
            Err(Failed::NotModified) => {
                let mut e = s3_error!(NotModified);
                if let Ok(etag) = http::HeaderValue::from_str(&format!("\"{}\"", o.etag)) {
                    e.set_headers(http::HeaderMap::from_iter([(http::header::ETAG, etag)]));
                }
                Err(e)
            }
        }
    }

    /// On a copy's source: every failure is 412 PreconditionFailed, as S3 answers.
    pub fn check_copy_source(&self, o: &ObjectMeta) -> Result<(), S3Error> {
        self.evaluate(o).map_err(|_| s3_error!(PreconditionFailed, "a copy-source precondition does not hold"))
    }
}

/// Why a conditional write or delete was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 412: the key's object (or version) is not the one the condition names.
    Precondition,
    /// 404: If-Match on a write, and the key has no object.
    NoSuchKey,
}

impl From<Refusal> for S3Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Precondition => s3_error!(PreconditionFailed, "a precondition does not hold"),
            Refusal::NoSuchKey => s3_error!(NoSuchKey, "If-Match: the key has no object to match"),
        }
    }
}

/// What a PUT or CompleteMultipartUpload requires of its key's current object.
#[derive(Debug, Default, Clone)]
pub struct WriteConditions {
    /// If-Match: write only over this object (`*`: over any object).
    pub if_match: Option<ETagCondition>,
    /// If-None-Match: write only if the current object is not this one (`*`: only if the key
    /// has none — "create only").
    pub if_none_match: Option<ETagCondition>,
}

impl WriteConditions {
    /// Whether there is anything to check (most writes carry no condition).
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }

    /// Checks the key's `current` object (`None`: no object, or a delete marker is newest).
    pub fn check(&self, current: Option<&ObjectMeta>) -> Result<(), Refusal> {
        match (&self.if_match, current) {
            (Some(_), None) => return Err(Refusal::NoSuchKey),
            (Some(c), Some(o)) if !matches(c, &o.etag) => return Err(Refusal::Precondition),
            _ => {}
        }
        match (&self.if_none_match, current) {
            (Some(c), Some(o)) if matches(c, &o.etag) => Err(Refusal::Precondition),
            _ => Ok(()),
        }
    }
}

/// What a DELETE (or one key of DeleteObjects) requires of the version it removes.
#[derive(Debug, Default, Clone)]
pub struct DeleteConditions {
    /// If-Match (a delete marker matches only `*`).
    pub if_match: Option<ETagCondition>,
    /// `x-amz-if-match-last-modified-time`: the version was written in this second.
    pub last_modified: Option<Timestamp>,
    /// `x-amz-if-match-size`: the version holds this many bytes.
    pub size: Option<i64>,
}

impl DeleteConditions {
    /// Whether there is anything to check.
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.last_modified.is_none() && self.size.is_none()
    }

    /// Checks `target`, the version the delete would remove or hide: the named version, or
    /// the key's newest (a delete marker included). `None`: there is nothing to delete, which
    /// is no refusal — deleting what is absent succeeds, as in S3.
    pub fn check(&self, target: Option<&ObjectMeta>) -> Result<(), Refusal> {
        let Some(o) = target else { return Ok(()) };
        let modified = i64::try_from(o.modified_ms / 1000).unwrap_or(i64::MAX);
        let holds = self.if_match.as_ref().is_none_or(|c| matches(c, &o.etag))
            && self.last_modified.as_ref().is_none_or(|t| secs(t) == modified)
            && self.size.is_none_or(|s| u64::try_from(s).ok() == Some(o.size));
        if holds { Ok(()) } else { Err(Refusal::Precondition) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::dto::ETag;
    use std::time::{Duration, UNIX_EPOCH};

    fn object() -> ObjectMeta {
        ObjectMeta {
            key: "k".into(),
            size: 1,
            etag: "abc".into(),
            content_type: None,
            metadata: Default::default(),
            modified_ms: 1_000_500, // 1000.5 s after the epoch
            blocks: Vec::new(),
            tags: Default::default(),
            version_id: None,
            delete_marker: false,
            checksum: None,
        }
    }

    fn at(secs: u64) -> Timestamp {
        Timestamp::from(UNIX_EPOCH + Duration::from_secs(secs))
    }

    fn etag(v: &str) -> Option<ETagCondition> {
        Some(ETagCondition::ETag(ETag::Strong(v.into())))
    }

    #[test]
    fn not_modified_names_the_etag() {
        let c = Conditions { if_none_match: etag("abc"), ..Default::default() };
        let e = c.check_read(&object()).unwrap_err();
        assert_eq!(e.code().as_str(), "NotModified");
        assert_eq!(e.headers().and_then(|h| h.get("etag")).map(|v| v.to_str().unwrap()), Some("\"abc\""));
    }

    #[test]
    fn writes_match_the_current_object() {
        let o = object();
        let w = |m: Option<ETagCondition>, n: Option<ETagCondition>| WriteConditions { if_match: m, if_none_match: n };
        let any = || Some(ETagCondition::Any);
        assert!(w(None, None).is_empty());
        assert_eq!(w(None, None).check(None), Ok(()));
        // Create-only.
        assert_eq!(w(None, any()).check(None), Ok(()));
        assert_eq!(w(None, any()).check(Some(&o)), Err(Refusal::Precondition));
        assert_eq!(w(None, etag("abc")).check(Some(&o)), Err(Refusal::Precondition));
        assert_eq!(w(None, etag("other")).check(Some(&o)), Ok(()));
        // Compare-and-swap on the ETag; If-Match on nothing is 404.
        assert_eq!(w(etag("abc"), None).check(Some(&o)), Ok(()));
        assert_eq!(w(any(), None).check(Some(&o)), Ok(()));
        assert_eq!(w(etag("other"), None).check(Some(&o)), Err(Refusal::Precondition));
        assert_eq!(w(any(), None).check(None), Err(Refusal::NoSuchKey));
        assert_eq!(w(etag("abc"), None).check(None), Err(Refusal::NoSuchKey));
    }

    #[test]
    fn deletes_match_the_version_they_remove() {
        let o = object();
        let marker = ObjectMeta::marker("k", 5_000);
        let d = |f: fn(&mut DeleteConditions)| {
            let mut c = DeleteConditions::default();
            f(&mut c);
            c
        };
        assert!(d(|_| {}).is_empty());
        // Nothing to delete: no refusal, whatever is asked.
        assert_eq!(d(|c| c.if_match = etag("nope")).check(None), Ok(()));
        assert_eq!(d(|c| c.if_match = etag("abc")).check(Some(&o)), Ok(()));
        assert_eq!(d(|c| c.if_match = etag("nope")).check(Some(&o)), Err(Refusal::Precondition));
        assert_eq!(d(|c| c.if_match = Some(ETagCondition::Any)).check(Some(&marker)), Ok(()));
        assert_eq!(d(|c| c.if_match = etag("abc")).check(Some(&marker)), Err(Refusal::Precondition));
        assert_eq!(d(|c| c.last_modified = Some(at(1000))).check(Some(&o)), Ok(()), "same second");
        assert_eq!(d(|c| c.last_modified = Some(at(999))).check(Some(&o)), Err(Refusal::Precondition));
        assert_eq!(d(|c| c.size = Some(1)).check(Some(&o)), Ok(()));
        assert_eq!(d(|c| c.size = Some(2)).check(Some(&o)), Err(Refusal::Precondition));
        assert_eq!(d(|c| c.size = Some(-1)).check(Some(&o)), Err(Refusal::Precondition));
    }

    #[test]
    fn conditions_follow_rfc_9110s_order() {
        let o = object();
        let c = |f: fn(&mut Conditions)| {
            let mut c = Conditions::default();
            f(&mut c);
            c.evaluate(&o)
        };
        assert_eq!(c(|_| {}), Ok(()));
        assert_eq!(c(|c| c.if_match = etag("abc")), Ok(()));
        assert_eq!(c(|c| c.if_match = Some(ETagCondition::Any)), Ok(()));
        assert_eq!(c(|c| c.if_match = etag("other")), Err(Failed::Precondition));
        assert_eq!(c(|c| c.if_none_match = etag("abc")), Err(Failed::NotModified));
        assert_eq!(c(|c| c.if_none_match = Some(ETagCondition::Any)), Err(Failed::NotModified));
        assert_eq!(c(|c| c.if_none_match = etag("other")), Ok(()));
        assert_eq!(c(|c| c.if_modified_since = Some(at(1000))), Err(Failed::NotModified), "same second");
        assert_eq!(c(|c| c.if_modified_since = Some(at(999))), Ok(()));
        assert_eq!(c(|c| c.if_unmodified_since = Some(at(1000))), Ok(()));
        assert_eq!(c(|c| c.if_unmodified_since = Some(at(999))), Err(Failed::Precondition));
        // If-Match wins over If-Unmodified-Since; If-None-Match over If-Modified-Since.
        assert_eq!(
            c(|c| {
                c.if_match = etag("abc");
                c.if_unmodified_since = Some(at(1));
            }),
            Ok(())
        );
        assert_eq!(
            c(|c| {
                c.if_none_match = etag("other");
                c.if_modified_since = Some(at(5000));
            }),
            Ok(())
        );
        // A failed If-Match is reported before a matching If-None-Match.
        assert_eq!(
            c(|c| {
                c.if_match = etag("other");
                c.if_none_match = etag("abc");
            }),
            Err(Failed::Precondition)
        );
    }
}
