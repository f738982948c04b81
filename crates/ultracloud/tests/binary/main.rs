//! The `ultracloud` binary as real processes: services started with their flags, killed with
//! SIGKILL and restarted, driven by the CLI, etcdctl and the databases' clients.
//!
//! One test binary for the crate: each binary links the whole workspace, so one is much faster
//! to build than one per file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report in tests

mod flaredb_support;
mod ports;

mod chainfire_crash;
mod flaredb_cluster;
mod flaredb_jepsen;
mod iam_cli;
mod lightningstor_node;
mod node;
mod quickstart;
mod wire_security;

/// The tests that load the machine or take fixed ports (SIGKILLs under a write load, the
/// Jepsen-style bank, the quickstart's ports) hold it exclusively and run alone, as they did
/// as binaries of their own (the bank's operations time out when other tests take the CPU);
/// every other test shares it, two at a time.
static HEAVY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());
