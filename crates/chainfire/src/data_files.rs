//! The files of a member's data directory: what the server opens and what a restore from a
//! backup ([`crate::backup`]) writes, named in one place below both.

/// The Raft log (and this member's identity), in the data dir.
pub const LOG_FILE: &str = "raft-log.redb";
/// The key-value store (the state machine), in the data dir.
pub const STORE_FILE: &str = "store.redb";
/// Name of the snapshot file in the data dir.
pub const SNAPSHOT_FILE: &str = "snapshot.bin";
