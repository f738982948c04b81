//! chainfire's integration tests: real servers on 127.0.0.1 ports, etcd's own client and etcdctl.
//!
//! One test binary per crate: each binary links the whole workspace, so one is much faster
//! to build than one per file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report in tests

mod common;

mod backup;
mod client;
mod cluster;
mod errors;
mod etcdctl;
mod http;
mod kv;
mod lease;
mod storage_suite;
mod watch;
