//! lightningstor's integration tests: a storage node's block API served on 127.0.0.1, driven
//! through the typed client and raw HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report in tests

mod data;
mod gateway;
mod node;
mod repair;
