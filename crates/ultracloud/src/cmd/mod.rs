//! One module per top-level subcommand; each parses its flags and calls its library.

pub mod account;
pub mod bench;
pub mod bench_api;
pub mod bench_blocks;
pub mod bench_iam;
pub mod bench_vm;
pub mod ca;
pub mod chainfire;
pub mod cluster;
pub mod compute;
pub mod db;
pub mod doctor;
pub mod flaredb;
pub mod guest_image;
pub mod iam;
pub mod iam_admin;
pub mod lightningstor;
pub mod network;
pub mod node;
pub mod plasmavmc;
pub mod prismnet;
pub mod project;
pub mod quickstart;
pub mod s3;
pub mod session;
pub mod table;
