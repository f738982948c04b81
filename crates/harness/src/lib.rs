//! The multi-node test cluster behind `ultracloud cluster`: six hardware-like nodes made of
//! Linux network namespaces on one machine, booted from a prebuilt binary, and the smoke
//! checks (formation, replication, protocol surfaces, fault injection) run against them.
//!
//! [`topology`] says what the cluster is; [`sys`] runs the system tools (`ip`, `nft`);
//! [`network`] builds and removes the lab network; [`state`] is the state directory and file;
//! [`nodes`] writes node configurations and starts, stops and kills node agents; [`lab`] is the
//! lifecycle the CLI drives (build, start, status, stop, clean); [`smoke`] holds the checks.
//! [`quickstart`] is the one-node stack `ultracloud quickstart` runs and proves.
//! docs/test-cluster.md describes the whole.

pub mod lab;
pub mod network;
pub mod nodes;
pub mod probe;
pub mod quickstart;
pub mod smoke;
pub mod state;
pub mod sys;
pub mod topology;
