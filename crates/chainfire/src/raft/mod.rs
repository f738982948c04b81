//! Replication: openraft with its log (group commit) and the state machine in two redb
//! databases, and a gRPC transport between members.

pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod types;
