//! iam's integration tests: the service and its replicas on 127.0.0.1 ports.
//!
//! One test binary per crate: each binary links the whole workspace, so one is much faster
//! to build than one per file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report in tests

mod support;

mod replicas;
mod s3_credentials;
mod service;
