//! Applying buckets' lifecycle rules ([`super::lifecycle`]): expiring newest versions (a
//! delete, so a delete marker under versioning), deleting older versions some days after they
//! stopped being the newest, removing delete markers left alone, aborting old multipart
//! uploads. Run at the start of each garbage-collection pass, under its lease, so the blocks
//! freed are collected by the same pass.
//!
//! Every action is conditional on what was read: a newest version is expired only if it is
//! still the newest (a PUT after the scan survives), and versions are deleted by their ID.

use serde::{Deserialize, Serialize};
use ultracloud_flaredb::error::FlareError;

use super::lifecycle::{DAY_MS, Rule};
use super::meta::{Bucket, Meta};
use super::versions::{VersionCursor, VersionEntry};

/// Rows read per page.
const PAGE: usize = 1000;

/// What applying the rules did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryReport {
    /// Buckets with rules.
    pub buckets: u64,
    /// Newest versions expired.
    pub expired: u64,
    /// Older versions (and older delete markers) deleted.
    pub noncurrent_deleted: u64,
    /// Delete markers removed for being a key's only version.
    pub markers_removed: u64,
    /// Multipart uploads aborted.
    pub uploads_aborted: u64,
}

/// Applies every bucket's rules as of `now_ms`.
pub async fn apply(meta: &Meta, now_ms: u64) -> Result<ExpiryReport, FlareError> {
    let mut report = ExpiryReport::default();
    for bucket in meta.all_buckets().await? {
        if !bucket.lifecycle.iter().any(|r| r.enabled) {
            continue;
        }
        report.buckets += 1;
        expire_newest(meta, &bucket, now_ms, &mut report).await?;
        if !bucket.versioning.is_unversioned() {
            expire_versions(meta, &bucket, now_ms, &mut report).await?;
        }
        abort_uploads(meta, &bucket, now_ms, &mut report).await?;
    }
    Ok(report)
}

async fn expire_newest(meta: &Meta, bucket: &Bucket, now_ms: u64, report: &mut ExpiryReport) -> Result<(), FlareError> {
    if !bucket.lifecycle.iter().any(|r| r.expiration_days.is_some() || r.expiration_date_ms.is_some()) {
        return Ok(());
    }
    let mut after: Option<String> = None;
    loop {
        let page = meta.objects(bucket, "", after.as_deref(), PAGE).await?;
        for o in &page.objects {
            if bucket.lifecycle.iter().any(|r| r.expires(o, now_ms)) && meta.expire_object(bucket, o, now_ms).await? {
                report.expired += 1;
            }
        }
        match page.objects.last() {
            Some(last) if page.more => after = Some(last.key.clone()),
            _ => return Ok(()),
        }
    }
}

async fn expire_versions(
    meta: &Meta,
    bucket: &Bucket,
    now_ms: u64,
    report: &mut ExpiryReport,
) -> Result<(), FlareError> {
    let wanted = |r: &Rule| r.noncurrent_days.is_some() || r.expired_object_delete_marker;
    if !bucket.lifecycle.iter().any(wanted) {
        return Ok(());
    }
    let mut after: Option<VersionCursor> = None;
    let mut group: Vec<VersionEntry> = Vec::new();
    loop {
        let (entries, more) = meta.versions(bucket, "", after.as_ref(), PAGE).await?;
        if let Some(last) = entries.last() {
            after = Some(VersionCursor { key: last.meta.key.clone(), rank: Some(last.rank.clone()) });
        }
        for e in entries {
            if group.first().is_some_and(|g| g.meta.key != e.meta.key) {
                expire_key(meta, bucket, &std::mem::take(&mut group), now_ms, report).await?;
            }
            group.push(e);
        }
        if !more {
            return expire_key(meta, bucket, &group, now_ms, report).await;
        }
    }
}

/// The rules' actions on one key's versions, newest first.
async fn expire_key(
    meta: &Meta,
    bucket: &Bucket,
    versions: &[VersionEntry],
    now_ms: u64,
    report: &mut ExpiryReport,
) -> Result<(), FlareError> {
    let mut left = versions.len();
    for (i, pair) in versions.windows(2).enumerate() {
        let (newer, older) = (&pair[0].meta, &pair[1].meta);
        // When it stopped being the newest: when the version after it was written.
        let since = newer.modified_ms;
        let due = bucket.lifecycle.iter().any(|r| {
            r.noncurrent_days.is_some_and(|d| now_ms >= since + u64::from(d) * DAY_MS)
                && i >= r.newer_noncurrent_versions.map_or(0, |n| n as usize)
                && r.matches(older)
        });
        if due && meta.delete_version(bucket, &older.key, older.version_id.as_deref()).await?.is_some() {
            report.noncurrent_deleted += 1;
            left -= 1;
        }
    }
    if let Some(newest) = versions.first().map(|v| &v.meta)
        && left == 1
        && newest.delete_marker
        && bucket
            .lifecycle
            .iter()
            .any(|r| r.enabled && r.expired_object_delete_marker && newest.key.starts_with(&r.prefix))
        && meta.delete_version(bucket, &newest.key, newest.version_id.as_deref()).await?.is_some()
    {
        report.markers_removed += 1;
    }
    Ok(())
}

async fn abort_uploads(meta: &Meta, bucket: &Bucket, now_ms: u64, report: &mut ExpiryReport) -> Result<(), FlareError> {
    if !bucket.lifecycle.iter().any(|r| r.abort_multipart_days.is_some()) {
        return Ok(());
    }
    for u in meta.uploads(bucket).await? {
        let due = bucket.lifecycle.iter().any(|r| {
            r.enabled
                && u.key.starts_with(&r.prefix)
                && r.abort_multipart_days.is_some_and(|d| now_ms >= u.initiated_ms + u64::from(d) * DAY_MS)
        });
        if due && meta.abort_upload(bucket, &u.id).await? {
            report.uploads_aborted += 1;
        }
    }
    Ok(())
}
