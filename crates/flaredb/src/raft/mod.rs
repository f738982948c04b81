//! Raft plumbing of flaredb's groups: types, the state machine, the HTTP transport.

pub mod network;
pub mod state_machine;
pub mod types;
