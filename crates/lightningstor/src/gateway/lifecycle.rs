//! Bucket lifecycle rules: Put/Get/DeleteBucketLifecycleConfiguration, kept on the bucket's
//! record. [`super::expiry`] applies them.

use std::collections::BTreeMap;

use s3s::dto::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, DeleteBucketLifecycleInput,
    DeleteBucketLifecycleOutput, ExpirationStatus, GetBucketLifecycleConfigurationInput,
    GetBucketLifecycleConfigurationOutput, LifecycleExpiration, LifecycleRule, LifecycleRuleAndOperator,
    LifecycleRuleFilter, NoncurrentVersionExpiration, PutBucketLifecycleConfigurationInput,
    PutBucketLifecycleConfigurationOutput, Tag,
};
use s3s::{S3Error, S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};

use super::meta::ObjectMeta;
use super::s3::{Gateway, db_error, timestamp};

/// Most rules a bucket holds (S3's limit).
const MAX_RULES: usize = 1000;
/// A day, the unit of every lifecycle age.
pub const DAY_MS: u64 = 24 * 3600 * 1000;

/// One lifecycle rule, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rule {
    /// Its ID (unique in the bucket).
    pub id: String,
    /// Whether it applies (`Status: Enabled`).
    pub enabled: bool,
    /// Keys it applies to start with this.
    pub prefix: String,
    /// Objects it applies to carry all these tags.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Objects it applies to are larger than this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_greater_than: Option<u64>,
    /// Objects it applies to are smaller than this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_less_than: Option<u64>,
    /// The newest version expires this many days after it was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_days: Option<u32>,
    /// The newest version expires from this time on (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_date_ms: Option<u64>,
    /// A delete marker left as a key's only version is removed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expired_object_delete_marker: bool,
    /// An older version is deleted this many days after it stopped being the newest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noncurrent_days: Option<u32>,
    /// … keeping this many of the newest older versions regardless.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newer_noncurrent_versions: Option<u32>,
    /// A multipart upload is aborted this many days after it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort_multipart_days: Option<u32>,
}

impl Rule {
    /// Whether the rule's filter takes an object with this key, tags and size.
    pub fn matches(&self, o: &ObjectMeta) -> bool {
        self.enabled
            && o.key.starts_with(&self.prefix)
            && self.tags.iter().all(|(k, v)| o.tags.get(k) == Some(v))
            && self.size_greater_than.is_none_or(|n| o.size > n)
            && self.size_less_than.is_none_or(|n| o.size < n)
    }

    /// Whether the newest version `o` has expired at `now_ms`.
    pub fn expires(&self, o: &ObjectMeta, now_ms: u64) -> bool {
        let by_age = self.expiration_days.is_some_and(|d| now_ms >= o.modified_ms + u64::from(d) * DAY_MS);
        let by_date = self.expiration_date_ms.is_some_and(|d| now_ms >= d);
        (by_age || by_date) && self.matches(o)
    }
}

fn days(what: &str, d: Option<i32>) -> S3Result<Option<u32>> {
    match d {
        None => Ok(None),
        Some(n) if n >= 1 => Ok(Some(n.unsigned_abs())),
        Some(n) => Err(s3_error!(InvalidArgument, "{what} is {n}: it must be a positive number of days")),
    }
}

fn size(what: &str, n: Option<i64>) -> S3Result<Option<u64>> {
    n.map(|n| u64::try_from(n).map_err(|_| s3_error!(InvalidArgument, "{what} must not be negative"))).transpose()
}

fn tag_pair(t: Tag) -> S3Result<(String, String)> {
    match (t.key, t.value) {
        (Some(k), Some(v)) => Ok((k, v)),
        _ => Err(s3_error!(MalformedXML, "a lifecycle filter's tag needs a Key and a Value")),
    }
}

/// A rule from S3's XML, checked.
fn from_dto(r: LifecycleRule) -> S3Result<Rule> {
    if r.transitions.as_ref().is_some_and(|t| !t.is_empty())
        || r.noncurrent_version_transitions.as_ref().is_some_and(|t| !t.is_empty())
    {
        return Err(s3_error!(NotImplemented, "transitions: lightningstor has one storage class"));
    }
    let id = r.id.unwrap_or_default();
    if id.len() > 255 {
        return Err(s3_error!(InvalidArgument, "a rule ID is at most 255 characters"));
    }
    let enabled = match r.status.as_str() {
        ExpirationStatus::ENABLED => true,
        ExpirationStatus::DISABLED => false,
        other => return Err(s3_error!(MalformedXML, "rule {id:?}: Status {other:?} is Enabled or Disabled")),
    };
    let mut rule = Rule { id, enabled, prefix: r.prefix.unwrap_or_default(), ..Rule::default() };
    if let Some(f) = r.filter {
        let LifecycleRuleFilter { and, object_size_greater_than, object_size_less_than, prefix, tag } = f;
        if let Some(p) = prefix {
            rule.prefix = p;
        }
        if let Some(t) = tag {
            let (k, v) = tag_pair(t)?;
            rule.tags.insert(k, v);
        }
        rule.size_greater_than = size("ObjectSizeGreaterThan", object_size_greater_than)?;
        rule.size_less_than = size("ObjectSizeLessThan", object_size_less_than)?;
        if let Some(a) = and {
            rule.prefix = a.prefix.unwrap_or(rule.prefix);
            for t in a.tags.unwrap_or_default() {
                let (k, v) = tag_pair(t)?;
                rule.tags.insert(k, v);
            }
            rule.size_greater_than =
                size("ObjectSizeGreaterThan", a.object_size_greater_than)?.or(rule.size_greater_than);
            rule.size_less_than = size("ObjectSizeLessThan", a.object_size_less_than)?.or(rule.size_less_than);
        }
    }
    if let Some(e) = r.expiration {
        rule.expiration_days = days("Expiration Days", e.days)?;
        rule.expiration_date_ms = e.date.map(|d| {
            let secs = time::OffsetDateTime::from(d).unix_timestamp();
            u64::try_from(secs).unwrap_or(0).saturating_mul(1000)
        });
        rule.expired_object_delete_marker = e.expired_object_delete_marker.unwrap_or(false);
        if rule.expiration_days.is_some() && rule.expiration_date_ms.is_some() {
            return Err(s3_error!(MalformedXML, "rule {:?}: Expiration has Days or a Date, not both", rule.id));
        }
        if rule.expired_object_delete_marker && (rule.expiration_days.is_some() || rule.expiration_date_ms.is_some()) {
            return Err(s3_error!(
                MalformedXML,
                "rule {:?}: ExpiredObjectDeleteMarker cannot be combined with Days or a Date",
                rule.id
            ));
        }
    }
    if let Some(n) = r.noncurrent_version_expiration {
        rule.noncurrent_days = days("NoncurrentDays", n.noncurrent_days)?;
        rule.newer_noncurrent_versions = n
            .newer_noncurrent_versions
            .map(|v| {
                u32::try_from(v).map_err(|_| s3_error!(InvalidArgument, "NewerNoncurrentVersions must not be negative"))
            })
            .transpose()?;
    }
    if let Some(a) = r.abort_incomplete_multipart_upload {
        rule.abort_multipart_days = days("DaysAfterInitiation", a.days_after_initiation)?;
    }
    let acts = rule.expiration_days.is_some()
        || rule.expiration_date_ms.is_some()
        || rule.expired_object_delete_marker
        || rule.noncurrent_days.is_some()
        || rule.abort_multipart_days.is_some();
    if !acts {
        return Err(s3_error!(MalformedXML, "rule {:?} has no action", rule.id));
    }
    if rule.abort_multipart_days.is_some() && !rule.tags.is_empty() {
        return Err(s3_error!(InvalidRequest, "rule {:?}: aborting uploads cannot be filtered by tags", rule.id));
    }
    Ok(rule)
}

fn i32_of(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored rule as S3's XML.
fn to_dto(r: &Rule) -> LifecycleRule {
    let tags: Vec<Tag> = r.tags.iter().map(|(k, v)| Tag { key: Some(k.clone()), value: Some(v.clone()) }).collect();
    let sized = r.size_greater_than.is_some() || r.size_less_than.is_some();
    let filter =
        if tags.len() > 1 || (!tags.is_empty() && (sized || !r.prefix.is_empty())) || (sized && !r.prefix.is_empty()) {
            LifecycleRuleFilter {
                and: Some(LifecycleRuleAndOperator {
                    prefix: Some(r.prefix.clone()),
                    tags: Some(tags),
                    object_size_greater_than: r.size_greater_than.map(i64_of),
                    object_size_less_than: r.size_less_than.map(i64_of),
                }),
                ..Default::default()
            }
        } else {
            LifecycleRuleFilter {
                prefix: Some(r.prefix.clone()),
                tag: tags.into_iter().next(),
                object_size_greater_than: r.size_greater_than.map(i64_of),
                object_size_less_than: r.size_less_than.map(i64_of),
                ..Default::default()
            }
        };
    let expires = r.expiration_days.is_some() || r.expiration_date_ms.is_some() || r.expired_object_delete_marker;
    LifecycleRule {
        id: (!r.id.is_empty()).then(|| r.id.clone()),
        status: ExpirationStatus::from_static(if r.enabled {
            ExpirationStatus::ENABLED
        } else {
            ExpirationStatus::DISABLED
        }),
        filter: Some(filter),
        expiration: expires.then(|| LifecycleExpiration {
            days: r.expiration_days.map(i32_of),
            date: r.expiration_date_ms.map(timestamp),
            expired_object_delete_marker: r.expired_object_delete_marker.then_some(true),
        }),
        noncurrent_version_expiration: r.noncurrent_days.map(|d| NoncurrentVersionExpiration {
            noncurrent_days: Some(i32_of(d)),
            newer_noncurrent_versions: r.newer_noncurrent_versions.map(i32_of),
        }),
        abort_incomplete_multipart_upload: r
            .abort_multipart_days
            .map(|d| AbortIncompleteMultipartUpload { days_after_initiation: Some(i32_of(d)) }),
        noncurrent_version_transitions: None,
        prefix: None,
        transitions: None,
    }
}

/// The rules of a configuration, checked (IDs given to rules without one, as S3 does).
pub fn rules_of(config: BucketLifecycleConfiguration) -> S3Result<Vec<Rule>> {
    if config.rules.is_empty() || config.rules.len() > MAX_RULES {
        return Err(s3_error!(MalformedXML, "a lifecycle configuration has 1 to {MAX_RULES} rules"));
    }
    let mut rules = config.rules.into_iter().map(from_dto).collect::<Result<Vec<_>, S3Error>>()?;
    for (i, r) in rules.iter_mut().enumerate() {
        if r.id.is_empty() {
            r.id = format!("rule-{}", i + 1);
        }
    }
    let mut ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(s3_error!(InvalidArgument, "rule ID {:?} is used twice", w[0]));
    }
    Ok(rules)
}

impl Gateway {
    pub(super) async fn put_lifecycle(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let who = self.caller(&req).await?;
        let input = req.input;
        let bucket = self.owned(&who, &input.bucket).await?;
        let Some(config) = input.lifecycle_configuration else {
            return Err(s3_error!(MalformedXML, "the request has no lifecycle configuration"));
        };
        let rules = rules_of(config)?;
        if !self.meta.set_lifecycle(&bucket, rules).await.map_err(db_error)? {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(S3Response::new(PutBucketLifecycleConfigurationOutput::default()))
    }

    pub(super) async fn get_lifecycle(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let who = self.caller(&req).await?;
        let bucket = self.owned(&who, &req.input.bucket).await?;
        if bucket.lifecycle.is_empty() {
            return Err(s3_error!(NoSuchLifecycleConfiguration));
        }
        Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(bucket.lifecycle.iter().map(to_dto).collect()),
            ..Default::default()
        }))
    }

    pub(super) async fn delete_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        let who = self.caller(&req).await?;
        let bucket = self.owned(&who, &req.input.bucket).await?;
        if !self.meta.set_lifecycle(&bucket, Vec::new()).await.map_err(db_error)? {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(S3Response::new(DeleteBucketLifecycleOutput::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, size: u64, modified_ms: u64, tags: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            size,
            tags: tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            delete_marker: false,
            ..ObjectMeta::marker(key, modified_ms)
        }
    }

    #[test]
    fn filters_and_ages_decide_what_expires() {
        let rule = Rule {
            id: "logs".into(),
            enabled: true,
            prefix: "logs/".into(),
            tags: [("tier".to_owned(), "cold".to_owned())].into(),
            size_greater_than: Some(10),
            expiration_days: Some(2),
            ..Rule::default()
        };
        let now = 10 * DAY_MS;
        let old = object("logs/a", 100, now - 3 * DAY_MS, &[("tier", "cold"), ("x", "y")]);
        assert!(rule.expires(&old, now));
        assert!(!rule.expires(&object("logs/a", 100, now - DAY_MS, &[("tier", "cold")]), now), "too young");
        assert!(!rule.expires(&object("other/a", 100, 0, &[("tier", "cold")]), now), "prefix");
        assert!(!rule.expires(&object("logs/a", 100, 0, &[("tier", "hot")]), now), "tag");
        assert!(!rule.expires(&object("logs/a", 5, 0, &[("tier", "cold")]), now), "size");
        assert!(!Rule { enabled: false, ..rule.clone() }.expires(&old, now), "disabled");
        let dated = Rule { expiration_days: None, expiration_date_ms: Some(now), ..rule };
        assert!(dated.expires(&old, now) && !dated.expires(&old, now - 1));
    }

    #[test]
    fn rules_round_trip_through_s3_xml_types_and_bad_ones_are_refused() {
        let rule = Rule {
            id: "r".into(),
            enabled: true,
            prefix: "p/".into(),
            tags: [("a".to_owned(), "b".to_owned())].into(),
            expiration_days: Some(30),
            noncurrent_days: Some(7),
            newer_noncurrent_versions: Some(2),
            ..Rule::default()
        };
        let back = rules_of(BucketLifecycleConfiguration { rules: vec![to_dto(&rule)] }).unwrap();
        assert_eq!(back, vec![rule.clone()]);
        let aborts = Rule { id: "u".into(), enabled: true, abort_multipart_days: Some(1), ..Rule::default() };
        assert_eq!(rules_of(BucketLifecycleConfiguration { rules: vec![to_dto(&aborts)] }).unwrap(), vec![aborts]);
        let refused = |r: Rule| rules_of(BucketLifecycleConfiguration { rules: vec![to_dto(&r)] }).unwrap_err();
        assert_eq!(
            refused(Rule { expiration_days: None, noncurrent_days: None, ..rule.clone() }).code().as_str(),
            "MalformedXML"
        );
        assert_eq!(refused(Rule { expiration_days: Some(0), ..rule.clone() }).code().as_str(), "InvalidArgument");
        let twice = BucketLifecycleConfiguration { rules: vec![to_dto(&rule), to_dto(&rule)] };
        assert_eq!(rules_of(twice).unwrap_err().code().as_str(), "InvalidArgument");
    }
}
