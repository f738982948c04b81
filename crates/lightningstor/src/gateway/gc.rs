//! Garbage collection of blocks no object references any more.
//!
//! Blocks are shared (named by content: a copy, an identical object, a completed upload's parts
//! all point at the same blocks), so a delete or an overwrite cannot free blocks itself. A pass
//! instead marks and sweeps:
//!
//! 1. **Mark**, in one flaredb snapshot: every block listed by an object, an older version of
//!    one or a part of an upload in progress is live. Records the snapshot shows under a bucket or an upload that no
//!    longer exists (left by a PUT that raced the bucket's deletion) are invisible to clients;
//!    they are deleted and their blocks not marked.
//! 2. **Sweep**: each storage node lists its blocks; every block not marked is deleted — but
//!    only if the node last wrote it before `grace` ago. A PUT in flight writes its blocks
//!    before its record commits (after the snapshot, perhaps), and a PUT that reuses a block
//!    already stored refreshes its time; the grace period covers both, so it must exceed the
//!    longest PUT (default one hour).
//!
//! A copy re-writes its source's record in its own transaction, so a delete of the source that
//! races the copy conflicts with it instead of leaving the copy's blocks unmarked.
//!
//! Each pass first applies the buckets' lifecycle rules ([`super::expiry`]), so what they
//! expire is collected at once. One gateway runs a pass at a time, holding a lease in flaredb; the last report is kept there
//! for `ultracloud s3 admin gc --last`.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use ultracloud_flaredb::Client;
use ultracloud_flaredb::api::Pair;
use ultracloud_flaredb::error::FlareError;
use ultracloud_flaredb::ts::Ts;
use ultracloud_resource::store::{decode, encode, end_of};

use super::expiry::{self, ExpiryReport};
use super::meta::{BUCKETS, Bucket, Meta, OBJECTS, ObjectMeta};
use super::uploads::{PARTS, PartMeta, UPLOADS};
use super::versions::VERSIONS;
use crate::api::BlockId;
use crate::client::Collected;
use crate::data::Cluster;

const LEASE: &[u8] = b"lightningstor/gc/lease";
const REPORT: &[u8] = b"lightningstor/gc/report";

/// Rows read per page of the mark phase.
const PAGE: usize = 1000;
/// Deletes in flight per storage node.
const DELETES_IN_FLIGHT: usize = 8;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Who ran it (a gateway's or the CLI's random name).
    pub holder: String,
    /// Started (ms since the epoch).
    pub started_ms: u64,
    /// How long it took.
    pub millis: u64,
    /// The grace period: blocks written since `started_ms - grace_ms` were kept.
    pub grace_ms: u64,
    /// Object records marked.
    pub objects: u64,
    /// Older versions (and delete markers) marked.
    #[serde(default)]
    pub versions: u64,
    /// Part records of uploads in progress marked.
    pub parts: u64,
    /// Distinct blocks they reference.
    pub live_blocks: u64,
    /// Records under a deleted bucket or upload, deleted.
    pub orphans_removed: u64,
    /// Blocks listed on the storage nodes.
    pub blocks_seen: u64,
    /// Unreferenced blocks deleted (copies counted one by one).
    pub deleted: u64,
    /// Unreferenced blocks kept because they were written within the grace period.
    pub kept_recent: u64,
    /// Storage nodes swept completely.
    pub nodes_swept: u64,
    /// What the buckets' lifecycle rules expired, first.
    #[serde(default)]
    pub lifecycle: ExpiryReport,
    /// Up to ten problems (an unreachable node is swept next time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl GcReport {
    fn note(&mut self, error: String) {
        if self.errors.len() < 10 {
            self.errors.push(error);
        }
    }
}

/// What asking for a pass came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pass {
    /// It ran.
    Ran(GcReport),
    /// Another collector holds the lease until the given time (ms since the epoch).
    Busy {
        /// Its name.
        holder: String,
        /// When its lease ends.
        until_ms: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    holder: String,
    until_ms: u64,
}

/// The collector over one flaredb and the storage nodes.
#[derive(Debug)]
pub struct Collector {
    db: Client,
    cluster: std::sync::Arc<Cluster>,
    grace: Duration,
    name: String,
}

impl Collector {
    /// A collector that keeps unreferenced blocks younger than `grace`.
    pub fn new(db: Client, cluster: std::sync::Arc<Cluster>, grace: Duration) -> Self {
        Self { db, cluster, grace, name: ultracloud_resource::ids::new_id("gc") }
    }

    /// Runs passes every `interval` until `shutdown` (skipping while another collector runs).
    pub fn spawn(self, interval: Duration, shutdown: tokio_util::sync::CancellationToken) {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
                match self.pass().await {
                    Ok(Pass::Ran(r)) => tracing::info!(
                        deleted = r.deleted,
                        kept_recent = r.kept_recent,
                        live_blocks = r.live_blocks,
                        orphans_removed = r.orphans_removed,
                        errors = r.errors.len(),
                        millis = r.millis,
                        "garbage collection pass"
                    ),
                    Ok(Pass::Busy { holder, .. }) => tracing::debug!(%holder, "another collector is running"),
                    Err(e) => tracing::warn!(error = %e, "garbage collection pass failed; next time"),
                }
            }
        });
    }

    /// One pass now, unless another collector holds the lease.
    pub async fn pass(&self) -> Result<Pass, FlareError> {
        let started_ms = ultracloud_runtime::clock::now_ms();
        // Long enough for a large cluster's pass; a pass that outlives it only overlaps the
        // next collector's, which is harmless (both delete only what neither marked).
        let lease = Lease { holder: self.name.clone(), until_ms: started_ms + 3_600_000 };
        let old = self.db.get(LEASE).await?;
        if let Some(bytes) = &old {
            let held: Lease = decode(LEASE, bytes)?;
            if held.holder != self.name && held.until_ms > started_ms {
                return Ok(Pass::Busy { holder: held.holder, until_ms: held.until_ms });
            }
        }
        let mine = encode(&lease)?;
        if let Some(now) = self.db.compare_and_swap(LEASE, old.as_deref(), Some(&mine)).await? {
            let held: Option<Lease> = now.map(|b| decode(LEASE, &b)).transpose()?;
            let (holder, until_ms) = held.map_or((String::new(), 0), |l| (l.holder, l.until_ms));
            return Ok(Pass::Busy { holder, until_ms });
        }
        let grace_ms = u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX);
        let mut report = GcReport { holder: self.name.clone(), started_ms, grace_ms, ..GcReport::default() };
        let outcome = self.mark_and_sweep(&mut report).await;
        report.millis = ultracloud_runtime::clock::now_ms().saturating_sub(started_ms);
        if let Err(e) = &outcome {
            report.note(format!("the pass stopped: {e}"));
        }
        let _ = self.db.put(REPORT, &encode(&report)?).await;
        let _ = self.db.compare_and_swap(LEASE, Some(&mine), None).await;
        outcome.map(|()| Pass::Ran(report))
    }

    async fn mark_and_sweep(&self, report: &mut GcReport) -> Result<(), FlareError> {
        // Lifecycle first: what it expires is collected by this same pass.
        report.lifecycle = expiry::apply(&Meta::new(self.db.clone()), report.started_ms).await?;
        let cutoff_ms = report.started_ms.saturating_sub(report.grace_ms);
        let live = self.mark(report).await?;
        report.live_blocks = live.len() as u64;
        let live = std::sync::Arc::new(live);
        let sweeps: Vec<_> = self
            .cluster
            .members()
            .map(|(name, node)| {
                let (name, node, live) = (name.to_owned(), node.clone(), live.clone());
                tokio::spawn(async move { (name, sweep(node, live, cutoff_ms).await) })
            })
            .collect();
        for joined in futures::future::join_all(sweeps).await {
            let (name, outcome) = joined.map_err(|e| FlareError::Internal(format!("a sweep task failed: {e}")))?;
            report.blocks_seen += outcome.seen;
            report.deleted += outcome.deleted;
            report.kept_recent += outcome.recent;
            match outcome.error {
                None => report.nodes_swept += 1,
                Some(e) => report.note(format!("storage node {name}: {e}")),
            }
        }
        Ok(())
    }

    /// The blocks the snapshot's objects and parts reference.
    async fn mark(&self, report: &mut GcReport) -> Result<HashSet<BlockId>, FlareError> {
        let ts = self.db.timestamp().await?;
        let buckets: HashSet<String> = self
            .rows(BUCKETS.as_bytes(), ts)
            .await?
            .iter()
            .map(|p| decode::<Bucket>(&p.key, &p.value).map(|b| b.id))
            .collect::<Result<_, _>>()?;
        let mut uploads = HashSet::new();
        let mut orphans = Vec::new();
        for p in self.rows(UPLOADS.as_bytes(), ts).await? {
            let (bucket, upload) = split_two(&p.key, UPLOADS);
            if buckets.contains(bucket) {
                uploads.insert(upload.to_owned());
            } else {
                orphans.push(p.key.clone());
            }
        }
        let mut live = HashSet::new();
        let mut mark =
            async |prefix: &str, owners: &HashSet<String>, blocks_of: fn(&Pair) -> Result<Vec<BlockId>, FlareError>| {
                let mut marked = 0u64;
                for p in self.rows(prefix.as_bytes(), ts).await? {
                    if owners.contains(split_two(&p.key, prefix).0) {
                        live.extend(blocks_of(&p)?);
                        marked += 1;
                    } else {
                        orphans.push(p.key);
                    }
                }
                Ok::<_, FlareError>(marked)
            };
        let part_blocks = |p: &Pair| Ok(decode::<PartMeta>(&p.key, &p.value)?.blocks.iter().map(|b| b.id).collect());
        let object_blocks =
            |p: &Pair| Ok(decode::<ObjectMeta>(&p.key, &p.value)?.blocks.iter().map(|b| b.id).collect());
        report.parts = mark(PARTS, &uploads, part_blocks).await?;
        report.objects = mark(OBJECTS, &buckets, object_blocks).await?;
        report.versions = mark(VERSIONS, &buckets, object_blocks).await?;
        for key in orphans {
            self.db.delete(&key).await?;
            report.orphans_removed += 1;
        }
        Ok(live)
    }

    /// Every row under `prefix` in the snapshot at `ts`.
    async fn rows(&self, prefix: &[u8], ts: Ts) -> Result<Vec<Pair>, FlareError> {
        let end = end_of(prefix);
        let mut out: Vec<Pair> = Vec::new();
        let mut start = prefix.to_vec();
        loop {
            let page = self.db.scan_at(&start, Some(&end), PAGE, false, ts).await?;
            let full = page.len() == PAGE;
            if let Some(last) = page.last() {
                start = [last.key.as_slice(), &[0]].concat();
            }
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }

    /// The last pass's report (by any collector).
    pub async fn last(db: &Client) -> Result<Option<GcReport>, FlareError> {
        db.get(REPORT).await?.map(|b| decode(REPORT, &b)).transpose()
    }
}

/// `prefix{first}/{rest}` → (first, rest).
fn split_two<'a>(key: &'a [u8], prefix: &str) -> (&'a str, &'a str) {
    let tail = std::str::from_utf8(&key[prefix.len().min(key.len())..]).unwrap_or("");
    tail.split_once('/').unwrap_or((tail, ""))
}

#[derive(Debug, Default)]
struct Swept {
    seen: u64,
    deleted: u64,
    recent: u64,
    error: Option<String>,
}

/// Deletes the unmarked blocks of one node that it wrote before `cutoff_ms`.
async fn sweep(node: crate::client::NodeClient, live: std::sync::Arc<HashSet<BlockId>>, cutoff_ms: u64) -> Swept {
    let mut out = Swept::default();
    let mut after = None;
    loop {
        let page = match node.list(after, PAGE).await {
            Ok(p) => p,
            Err(e) => {
                out.error = Some(format!("listing: {e}"));
                return out;
            }
        };
        out.seen += page.items.len() as u64;
        let garbage: Vec<BlockId> = page.items.iter().filter(|id| !live.contains(id)).copied().collect();
        let mut results = futures::stream::iter(garbage.into_iter().map(|id| {
            let node = node.clone();
            async move { (id, node.collect(id, cutoff_ms).await) }
        }))
        .buffer_unordered(DELETES_IN_FLIGHT);
        while let Some((id, result)) = results.next().await {
            match result {
                Ok(Collected::Deleted) => out.deleted += 1,
                Ok(Collected::Recent) => out.recent += 1,
                Ok(Collected::Missing) => {}
                Err(e) => {
                    out.error.get_or_insert_with(|| format!("deleting {id}: {e}"));
                }
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_split_into_their_owner_and_name() {
        assert_eq!(split_two(b"lightningstor/object/b123/dir/file.txt", OBJECTS), ("b123", "dir/file.txt"));
        assert_eq!(split_two(b"lightningstor/part/u9/00001", PARTS), ("u9", "00001"));
        assert_eq!(split_two(b"lightningstor/upload/b1/u2", UPLOADS), ("b1", "u2"));
    }
}
