//! prismnet's integration tests: the controller over a real flaredb and iam, and the dataplane in network namespaces.
//!
//! One test binary per crate: each binary links the whole workspace, so one is much faster
//! to build than one per file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report in tests

mod support;

mod controller;
mod dataplane;
