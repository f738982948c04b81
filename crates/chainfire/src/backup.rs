//! Backups: the file `etcdctl snapshot save` writes from chainfire, and restoring one into the
//! data dir of a member of a new cluster (`ultracloud chainfire restore`).
//!
//! The file is a dump of the store's tables, zero-padded to a multiple of 512 bytes and followed
//! by the SHA-256 of what precedes it — the framing etcdctl checks when it saves a snapshot.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::data_files::{LOG_FILE, SNAPSHOT_FILE, STORE_FILE};
use crate::lessor::Lessor;
use crate::mvcc::{Mvcc, Revisions};
use crate::raft::state_machine::StateMachine;
use crate::watch_hub::WatchHub;

/// A backup could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The backup file could not be read.
    #[error("cannot read backup {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a chainfire backup or is damaged.
    #[error("{path} is not an intact chainfire backup: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The data dir already holds a member's state.
    #[error("data dir {0} already holds chainfire state; restore into an empty directory")]
    NotEmpty(PathBuf),
    /// Writing the store failed.
    #[error("cannot write the restored store in {path}")]
    Write {
        /// The data dir.
        path: PathBuf,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Frames a store dump as a backup file.
pub fn frame(mut dump: Vec<u8>) -> Vec<u8> {
    dump.resize(dump.len().next_multiple_of(512), 0);
    let digest = Sha256::digest(&dump);
    dump.extend_from_slice(&digest);
    dump
}

/// Restores the backup `file` into the empty `data_dir`; returns the restored revisions. Start
/// the member afterwards with `--initial-cluster-state new`: the new cluster begins with the
/// backup's keys, leases and revisions.
pub fn restore(file: &Path, data_dir: &Path) -> Result<Revisions, RestoreError> {
    let bytes = std::fs::read(file).map_err(|source| RestoreError::Read { path: file.to_owned(), source })?;
    let corrupt = |reason: &str| RestoreError::Corrupt { path: file.to_owned(), reason: reason.to_owned() };
    if bytes.len() < 32 || (bytes.len() - 32) % 512 != 0 {
        return Err(corrupt("wrong size for a backup (expected 512-byte blocks and a SHA-256 trailer)"));
    }
    let (dump, digest) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(dump).as_slice() != digest {
        return Err(corrupt("SHA-256 mismatch"));
    }
    if [LOG_FILE, STORE_FILE, SNAPSHOT_FILE].iter().any(|f| data_dir.join(f).exists()) {
        return Err(RestoreError::NotEmpty(data_dir.to_owned()));
    }
    let write_err =
        |e: Box<dyn std::error::Error + Send + Sync>| RestoreError::Write { path: data_dir.to_owned(), source: e };
    std::fs::create_dir_all(data_dir).map_err(|e| write_err(Box::new(e)))?;
    let db = redb::Database::create(data_dir.join(STORE_FILE)).map_err(|e| write_err(Box::new(e)))?;
    let mvcc = Mvcc::open(Arc::new(db)).map_err(|e| write_err(Box::new(e)))?;
    let sm =
        StateMachine::new(mvcc.clone(), WatchHub::new(1, 0), Arc::new(Lessor::default()), data_dir.join(SNAPSHOT_FILE));
    sm.restore_backup(dump).map_err(|e| corrupt(&format!("cannot load the store dump: {e}")))?;
    sm.sync().map_err(|e| write_err(Box::new(e)))?;
    mvcc.revisions().map_err(|e| write_err(Box::new(e)))
}
