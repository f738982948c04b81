//! lightningstor: UltraCloud's object store.
//!
//! Objects are cut into blocks; each block is named by the BLAKE3 hash of its bytes ([`api::BlockId`])
//! and kept on `replication` storage nodes chosen by a weighted rendezvous [`layout`]. A storage
//! node ([`node`], `ultracloud lightningstor-node`) is a durable, checksummed home for blocks
//! ([`blocks`]): it never acknowledges a write before the block and its directory entry are on
//! disk, and it refuses to hand out a block whose bytes no longer match its name. The S3 gateway
//! (metadata in flaredb) is built on these; see docs/lightningstor.md.

pub mod api;
pub mod blocks;
pub mod client;
pub mod config;
pub mod data;
pub mod gateway;
pub mod layout;
pub mod node;
pub mod repair;
pub mod service;

pub use api::BlockId;
pub use config::NodeConfig;
