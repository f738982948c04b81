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
mod node;
mod quickstart;
mod wire_security;

/// Held by the tests that load the machine or take fixed ports (clusters under faults, the
/// quickstart), so that they run one at a time as they did as binaries of their own; light
/// tests run beside them.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
