//! lightningstor's integration tests: a storage node's block API served on 127.0.0.1, driven
//! through the typed client and raw HTTP; the data path and repair over several nodes; the S3
//! gateway driven by the AWS CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report in tests

mod aws_cli;
mod checksum;
mod conditional;
mod cors;
mod crash;
mod data;
mod gateway;
mod gc;
mod hostile;
mod lifecycle;
mod node;
mod process;
mod public;
mod repair;
mod revocation;
mod s3cmd;
mod versioning;

/// flaredb and iam in-process: prismnet's test stack, shared rather than written again.
#[path = "../../../prismnet/tests/prismnet/support/mod.rs"]
mod stack;
