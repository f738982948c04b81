//! plasmavmc's integration tests: the controller, QEMU's migration wire, and real VMs.
//!
//! One test binary per crate: each binary links the whole workspace, so one is much faster
//! to build than one per file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report in tests

mod support;

mod controller;
mod migration_wire;
mod vms;
