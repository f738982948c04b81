//! flaredb: UltraCloud's transactional database. It holds the control state of every service
//! and is offered to tenants' applications.
//!
//! The key space is split into regions ([`region`]), each an openraft group whose state
//! machine is the Percolator-style multi-version store ([`mvcc`]); a meta group holds the
//! placement component's state ([`meta`], [`placement`]) and the timestamp oracle ([`tso`]).
//! [`node`] runs a node's replicas, [`server`] its HTTP API, [`client`] routes requests and
//! runs transactions. docs/flaredb.md has the whole picture.

pub mod api;
pub mod bench;
pub mod client;
pub mod config;
pub mod error;
pub mod latches;
pub mod meta;
pub mod mvcc;
pub mod node;
pub mod openapi;
pub mod placement;
pub mod raft;
pub mod region;
pub mod replica;
pub mod server;
pub mod service;
pub mod ts;
pub mod tso;

pub use client::Client;
pub use config::FlaredbConfig;
