//! A storage node's blocks on disk: one file per block, `blocks/<first two hex digits>/<name>`.
//!
//! A write goes to `tmp/`, is fsync'd, renamed into place and its directory fsync'd before it is
//! acknowledged; the directory fsyncs of concurrent writes are batched (one per directory per
//! batch — a group commit), and ext4's journal already merges their file fsyncs. A read checks
//! the bytes against the name: a block that no longer matches is moved to `corrupt/` (kept for
//! inspection, never served) and reported, so the gateway reads another copy and the repair
//! restores this one.
//!
//! Garbage collection deletes a block only when it was last written before a cut-off
//! ([`BlockStore::delete_if_older`]); a write of a block already here refreshes its time (under
//! the same per-block lock), so a block a PUT in flight has just reused is never collected
//! under it.
//!
//! Memory: a block is held whole while it is written or read, so a node needs about
//! `max_block_bytes` per request in flight.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::api::{BlockId, ScrubReport};

/// Why a block operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The bytes sent are not the named block.
    #[error("the body's BLAKE3 hash is {actual}, not the block's name {named}")]
    Mismatch {
        /// The name in the request.
        named: BlockId,
        /// The name of the bytes that came.
        actual: BlockId,
    },
    /// The stored bytes no longer match the name (set aside; read another copy).
    #[error("block {0} is corrupt on this node (set aside; read another copy)")]
    Corrupt(BlockId),
    /// The disk failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BlockError + 'a {
    move |source| BlockError::Io { what, path: path.to_owned(), source }
}

/// Locks striping the block space: a reuse's refresh and a collection's check-and-delete of
/// the same block never interleave.
const STRIPES: usize = 64;

/// What [`BlockStore::delete_if_older`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collected {
    /// Deleted.
    Deleted,
    /// Kept: written (or reused) at or after the cut-off.
    Recent,
    /// Not on this node.
    Missing,
}

/// The blocks of one node.
#[derive(Debug)]
pub struct BlockStore {
    stripes: Arc<[Mutex<()>]>,
    root: PathBuf,
    fsync: bool,
    dirs: mpsc::Sender<(PathBuf, oneshot::Sender<std::io::Result<()>>)>,
    blocks: AtomicU64,
    bytes: AtomicU64,
    corrupt: AtomicU64,
    tmp_seq: AtomicU64,
    last_scrub: Mutex<Option<(u64, ScrubReport)>>,
}

impl BlockStore {
    /// Opens (or creates) the store under `root`; `fsync`: make writes durable before they are
    /// acknowledged (off only for benchmarks that say so). Leftovers of interrupted writes in
    /// `tmp/` are removed; the held blocks are counted.
    pub fn open(root: &Path, fsync: bool) -> Result<Arc<Self>, BlockError> {
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io("clearing", &tmp))?;
        }
        for dir in [root.join("blocks"), tmp.clone(), root.join("corrupt")] {
            std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        }
        let (mut blocks, mut bytes) = (0u64, 0u64);
        for shard in 0..=255u8 {
            let dir = root.join("blocks").join(hex::encode([shard]));
            std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
            for entry in std::fs::read_dir(&dir).map_err(io("listing", &dir))? {
                let entry = entry.map_err(io("listing", &dir))?;
                blocks += 1;
                bytes += entry.metadata().map_err(io("reading", &entry.path()))?.len();
            }
        }
        if fsync {
            sync_dir(root).map_err(io("syncing", root))?;
            let blocks = root.join("blocks");
            sync_dir(&blocks).map_err(io("syncing", &blocks))?;
        }
        let (dirs, queue) = mpsc::channel(4096);
        tokio::spawn(sync_dirs(queue));
        Ok(Arc::new(Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            root: root.to_owned(),
            fsync,
            dirs,
            blocks: AtomicU64::new(blocks),
            bytes: AtomicU64::new(bytes),
            corrupt: AtomicU64::new(0),
            tmp_seq: AtomicU64::new(0),
            last_scrub: Mutex::new(None),
        }))
    }

    fn path(&self, id: &BlockId) -> PathBuf {
        let name = id.to_string();
        self.root.join("blocks").join(&name[..2]).join(name)
    }

    /// Stores `data` as block `id` (checked: it must be the BLAKE3 hash of `data`). `Ok(false)`:
    /// it was already here. Returns only once the block is durable (with fsync on).
    pub async fn put(&self, id: BlockId, data: Bytes) -> Result<bool, BlockError> {
        let path = self.path(&id);
        let tmp = self.root.join("tmp").join(format!("{id}.{}", self.tmp_seq.fetch_add(1, Ordering::Relaxed)));
        let fsync = self.fsync;
        let len = data.len() as u64;
        let stripes = self.stripes.clone();
        let created = tokio::task::spawn_blocking(move || -> Result<bool, BlockError> {
            let actual = BlockId::of(&data);
            if actual != id {
                return Err(BlockError::Mismatch { named: id, actual });
            }
            {
                let _stripe = lock(&stripes, &id);
                if path.exists() {
                    // Reused: its time says so, or a collection running now could take it.
                    refresh(&path, fsync).map_err(io("refreshing", &path))?;
                    return Ok(false);
                }
            }
            let mut f = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
            f.write_all(&data).map_err(io("writing", &tmp))?;
            if fsync {
                f.sync_data().map_err(io("syncing", &tmp))?;
            }
            drop(f);
            // A link, not a rename: of two writers of the same block exactly one creates it.
            let linked = match std::fs::hard_link(&tmp, &path) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(BlockError::Io { what: "linking into", path, source: e });
                }
            };
            std::fs::remove_file(&tmp).map_err(io("removing", &tmp))?;
            Ok(linked)
        })
        .await
        .map_err(|e| BlockError::Io {
            what: "writing",
            path: self.path(&id),
            source: std::io::Error::other(e),
        })??;
        if created {
            if self.fsync {
                let dir = self.path(&id).parent().map(Path::to_path_buf).unwrap_or_default();
                self.sync_dir_batched(dir).await?;
            }
            self.blocks.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(len, Ordering::Relaxed);
        }
        Ok(created)
    }

    async fn sync_dir_batched(&self, dir: PathBuf) -> Result<(), BlockError> {
        let (done, answer) = oneshot::channel();
        let stopped = || BlockError::Io {
            what: "syncing",
            path: dir.clone(),
            source: std::io::Error::other("the directory syncer stopped"),
        };
        self.dirs.send((dir.clone(), done)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?.map_err(io("syncing", &dir))
    }

    /// Block `id`'s bytes, checked against its name; `None` when this node does not hold it.
    pub async fn get(&self, id: BlockId) -> Result<Option<Bytes>, BlockError> {
        let path = self.path(&id);
        // Read and checked off the async workers: hashing a block takes a while.
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || std::fs::read(&path).map(|d| (BlockId::of(&d) == id, d)))
                .await
                .map_err(|e| BlockError::Io {
                    what: "reading",
                    path: self.path(&id),
                    source: std::io::Error::other(e),
                })?
        };
        let data = match read {
            Ok((true, d)) => d,
            Ok((false, d)) => {
                self.set_aside(id, d.len() as u64)?;
                return Err(BlockError::Corrupt(id));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BlockError::Io { what: "reading", path, source: e }),
        };
        Ok(Some(Bytes::from(data)))
    }

    /// Whether this node holds block `id` (without reading it).
    pub fn has(&self, id: BlockId) -> bool {
        self.path(&id).exists()
    }

    /// Removes block `id`; `Ok(false)` when it was not here.
    pub async fn delete(&self, id: BlockId) -> Result<bool, BlockError> {
        let path = self.path(&id);
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(BlockError::Io { what: "reading", path, source: e }),
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(BlockError::Io { what: "removing", path, source: e }),
        }
        self.blocks.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(len, Ordering::Relaxed);
        Ok(true)
    }

    /// Removes block `id` if it was last written (or reused) before `cutoff`: garbage
    /// collection's delete, which never takes a block a write has just put to use.
    pub async fn delete_if_older(&self, id: BlockId, cutoff: SystemTime) -> Result<Collected, BlockError> {
        let (path, stripes) = (self.path(&id), self.stripes.clone());
        let removed = tokio::task::spawn_blocking(move || -> Result<Option<u64>, BlockError> {
            let _stripe = lock(&stripes, &id);
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(BlockError::Io { what: "reading", path, source: e }),
            };
            if meta.modified().map_err(io("reading the time of", &path))? >= cutoff {
                return Ok(Some(u64::MAX));
            }
            match std::fs::remove_file(&path) {
                Ok(()) => Ok(Some(meta.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(BlockError::Io { what: "removing", path, source: e }),
            }
        })
        .await
        .map_err(|e| BlockError::Io {
            what: "removing",
            path: self.path(&id),
            source: std::io::Error::other(e),
        })??;
        Ok(match removed {
            None => Collected::Missing,
            Some(u64::MAX) => Collected::Recent,
            Some(len) => {
                self.blocks.fetch_sub(1, Ordering::Relaxed);
                self.bytes.fetch_sub(len, Ordering::Relaxed);
                Collected::Deleted
            }
        })
    }

    /// Up to `limit` block names after `after`, ascending.
    pub fn list(&self, after: Option<BlockId>, limit: usize) -> Result<Vec<BlockId>, BlockError> {
        let first_shard = after.map_or(0, |a| a.as_bytes()[0]);
        let mut out = Vec::new();
        for shard in first_shard..=255u8 {
            let dir = self.root.join("blocks").join(hex::encode([shard]));
            let mut names = BTreeSet::new();
            for entry in std::fs::read_dir(&dir).map_err(io("listing", &dir))? {
                let entry = entry.map_err(io("listing", &dir))?;
                // Anything that is not a block name is not ours to list.
                if let Some(id) = entry.file_name().to_str().and_then(|n| n.parse::<BlockId>().ok())
                    && after.is_none_or(|a| id > a)
                {
                    names.insert(id);
                }
            }
            for id in names {
                if out.len() == limit {
                    return Ok(out);
                }
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Reads every block and sets aside those whose bytes no longer match their name; the
    /// report is kept as the last scrub's.
    pub async fn scrub(&self) -> Result<ScrubReport, BlockError> {
        let report = self.scrub_all().await?;
        *self.last_scrub.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((ultracloud_runtime::clock::now_ms(), report.clone()));
        Ok(report)
    }

    /// When the last scrub finished (ms since the epoch) and what it found.
    pub fn last_scrub(&self) -> Option<(u64, ScrubReport)> {
        self.last_scrub.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    async fn scrub_all(&self) -> Result<ScrubReport, BlockError> {
        let mut report = ScrubReport::default();
        let mut after = None;
        loop {
            let page = self.list(after, 1024)?;
            let Some(last) = page.last().copied() else { return Ok(report) };
            for id in page {
                match self.get(id).await {
                    Ok(_) => report.checked += 1,
                    Err(BlockError::Corrupt(id)) => {
                        report.checked += 1;
                        report.corrupt.push(id);
                    }
                    Err(e) => return Err(e),
                }
            }
            after = Some(last);
        }
    }

    fn set_aside(&self, id: BlockId, len: u64) -> Result<(), BlockError> {
        let path = self.path(&id);
        let dest = self.root.join("corrupt").join(format!("{id}.{}", ultracloud_runtime::clock::now_ms()));
        tracing::error!(block = %id, kept = %dest.display(), "block bytes do not match its name; set aside");
        match std::fs::rename(&path, &dest) {
            Ok(()) => {
                self.blocks.fetch_sub(1, Ordering::Relaxed);
                self.bytes.fetch_sub(len, Ordering::Relaxed);
                self.corrupt.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            // Another reader set it aside first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BlockError::Io { what: "setting aside", path, source: e }),
        }
    }

    /// (blocks held, their bytes, corrupt blocks found since start).
    pub fn counts(&self) -> (u64, u64, u64) {
        (self.blocks.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed), self.corrupt.load(Ordering::Relaxed))
    }

    /// Whether writes are fsync'd.
    pub fn fsync(&self) -> bool {
        self.fsync
    }

    /// Free bytes on the store's filesystem.
    pub fn free_bytes(&self) -> u64 {
        nix::sys::statvfs::statvfs(&self.root).map(|s| s.blocks_available() * s.fragment_size()).unwrap_or(0)
    }
}

fn lock<'a>(stripes: &'a [Mutex<()>], id: &BlockId) -> std::sync::MutexGuard<'a, ()> {
    stripes[usize::from(id.as_bytes()[1]) % stripes.len()].lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets a block's time to now (durably with `fsync`: a crash must not make it look old).
fn refresh(path: &Path, fsync: bool) -> std::io::Result<()> {
    let f = std::fs::File::options().write(true).open(path)?;
    f.set_modified(SystemTime::now())?;
    if fsync {
        f.sync_all()?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The group commit of directory entries: every directory asked for while the last batch was
/// syncing is synced once, and everyone waiting on it answered.
async fn sync_dirs(mut queue: mpsc::Receiver<(PathBuf, oneshot::Sender<std::io::Result<()>>)>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while let Ok(next) = queue.try_recv() {
            batch.push(next);
        }
        let dirs: BTreeSet<PathBuf> = batch.iter().map(|(d, _)| d.clone()).collect();
        let results = tokio::task::spawn_blocking(move || {
            dirs.into_iter().map(|d| (sync_dir(&d).map_err(|e| e.to_string()), d)).collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (dir, done) in batch {
            let result = match results.iter().find(|(_, d)| *d == dir) {
                Some((Ok(()), _)) => Ok(()),
                Some((Err(e), _)) => Err(std::io::Error::other(e.clone())),
                None => Err(std::io::Error::other("the sync task failed")),
            };
            let _ = done.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn blocks_are_checked_on_the_way_in_and_out_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path(), true).unwrap();
        let data = Bytes::from_static(b"some block");
        let id = BlockId::of(&data);
        assert!(store.put(id, data.clone()).await.unwrap());
        assert!(!store.put(id, data.clone()).await.unwrap(), "the same bytes again change nothing");
        let wrong = BlockId::of(b"other");
        assert!(matches!(store.put(wrong, data.clone()).await, Err(BlockError::Mismatch { .. })));
        assert_eq!(store.get(id).await.unwrap(), Some(data.clone()));
        assert_eq!(store.get(wrong).await.unwrap(), None);
        assert_eq!(store.counts(), (1, 10, 0));
        drop(store);

        let store = BlockStore::open(dir.path(), true).unwrap();
        assert_eq!(store.counts(), (1, 10, 0), "counted again on open");
        // Bit rot: the block is refused, set aside, and no longer listed.
        std::fs::write(store.path(&id), b"some blocK").unwrap();
        assert!(matches!(store.get(id).await, Err(BlockError::Corrupt(c)) if c == id));
        assert_eq!(store.counts(), (0, 0, 1));
        assert_eq!(store.get(id).await.unwrap(), None);
        assert_eq!(std::fs::read_dir(dir.path().join("corrupt")).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn listing_pages_in_order_and_scrub_finds_rot() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path(), false).unwrap();
        let mut ids = Vec::new();
        for i in 0..50u32 {
            let data = Bytes::from(format!("block {i}"));
            let id = BlockId::of(&data);
            store.put(id, data).await.unwrap();
            ids.push(id);
        }
        ids.sort();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store.list(after, 7).unwrap();
            let Some(last) = page.last().copied() else { break };
            seen.extend(page);
            after = Some(last);
        }
        assert_eq!(seen, ids);
        std::fs::write(store.path(&ids[3]), b"rotten").unwrap();
        assert!(store.last_scrub().is_none());
        let report = store.scrub().await.unwrap();
        assert_eq!(store.last_scrub().map(|s| s.1), Some(report.clone()), "kept for the node's status");
        assert_eq!((report.checked, report.corrupt), (50, vec![ids[3]]));
        assert!(store.delete(ids[0]).await.unwrap());
        assert!(!store.delete(ids[0]).await.unwrap());
        assert_eq!(store.counts().0, 48);
    }

    #[tokio::test]
    async fn collection_takes_only_blocks_older_than_the_cutoff_and_reuse_refreshes_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path(), true).unwrap();
        let (old, reused) = (Bytes::from_static(b"old block"), Bytes::from_static(b"reused block"));
        let (old_id, reused_id) = (BlockId::of(&old), BlockId::of(&reused));
        store.put(old_id, old).await.unwrap();
        store.put(reused_id, reused.clone()).await.unwrap();
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        for id in [old_id, reused_id] {
            std::fs::File::options().write(true).open(store.path(&id)).unwrap().set_modified(an_hour_ago).unwrap();
        }
        // A PUT reuses one of them: written again, it is refreshed, not duplicated.
        assert!(!store.put(reused_id, reused).await.unwrap());
        let cutoff = SystemTime::now() - Duration::from_secs(60);
        assert_eq!(store.delete_if_older(old_id, cutoff).await.unwrap(), Collected::Deleted);
        assert_eq!(store.delete_if_older(reused_id, cutoff).await.unwrap(), Collected::Recent);
        assert_eq!(store.delete_if_older(old_id, cutoff).await.unwrap(), Collected::Missing);
        assert_eq!(store.counts(), (1, 12, 0));
        assert!(store.has(reused_id));
    }
}
