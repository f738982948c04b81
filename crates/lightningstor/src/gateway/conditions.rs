//! Conditional requests (RFC 9110 §13 as S3 applies them): If-Match, If-None-Match,
//! If-Modified-Since and If-Unmodified-Since on GET and HEAD, and their `x-amz-copy-source-if-*`
//! twins on a copy's source.

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

    /// On a GET or HEAD: 412 PreconditionFailed or 304 NotModified.
    pub fn check_read(&self, o: &ObjectMeta) -> Result<(), S3Error> {
        match self.evaluate(o) {
            Ok(()) => Ok(()),
            Err(Failed::Precondition) => Err(s3_error!(PreconditionFailed, "a precondition does not hold")),
            Err(Failed::NotModified) => Err(s3_error!(NotModified)),
        }
    }

    /// On a copy's source: every failure is 412 PreconditionFailed, as S3 answers.
    pub fn check_copy_source(&self, o: &ObjectMeta) -> Result<(), S3Error> {
        self.evaluate(o).map_err(|_| s3_error!(PreconditionFailed, "a copy-source precondition does not hold"))
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
