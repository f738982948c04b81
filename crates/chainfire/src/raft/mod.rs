//! Replication: openraft with its log (group commit, in the shared `ultracloud-raftlog` crate)
//! and the state machine in two redb databases, and a gRPC transport between members.

pub mod network;
pub mod state_machine;
pub mod types;

/// The Raft log of chainfire's single group.
pub type LogStore = ultracloud_raftlog::LogStore<types::TypeConfig>;
