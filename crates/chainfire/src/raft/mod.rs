//! Replication: openraft with its log and state machine in one redb database, and a gRPC
//! transport between members.

pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod types;
