//! chainfire: UltraCloud's replicated coordination store — membership, leases, leader election,
//! configuration and watches — speaking the etcd v3 gRPC API so every etcd client works with it.
//!
//! Layers, bottom up: [`mvcc`] (etcd's revisioned key-value model on redb), [`raft`] (openraft
//! with a group-commit log and the store in two redb files, and a gRPC transport), [`node`] (a
//! member: proposals forwarded to the leader, read-index reads, leases, membership), [`server`]
//! (the etcd services and the peer service, and start-up), [`client`] (helpers for the other
//! UltraCloud components over the `etcd-client` crate).

pub mod backup;
pub mod batcher;
pub mod bench;
pub mod client;
pub mod config;
pub mod data_files;
pub mod error;
pub mod lessor;
pub mod mvcc;
pub mod node;
pub mod pb;
pub mod raft;
pub mod server;
pub mod service;
pub mod tls;
pub mod watch_hub;

pub use config::ChainfireConfig;
pub use error::EtcdError;
