//! The shared service runtime of UltraCloud.
//!
//! Every UltraCloud service (chainfire, flaredb, iam, …) is a long-running process with the same
//! operational surface, so that operators learn it once: layered typed configuration
//! ([`config`]), an exclusively locked data directory ([`data_dir`]), an admin HTTP listener with
//! health, readiness, Prometheus metrics and version ([`admin`], [`metrics`]), `tracing` logs
//! ([`logging`]), graceful shutdown on SIGTERM/SIGINT ([`shutdown`]) and one JSON error shape for
//! HTTP APIs ([`error`]). [`service::ServiceContext`] ties them together for a service's `main`.

pub mod actor;
pub mod admin;
pub mod clock;
pub mod config;
pub mod data_dir;
pub mod endpoints;
pub mod entry;
pub mod error;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod prerequisite;
pub mod process;
pub mod readiness;
pub mod secret_file;
pub mod service;
pub mod shutdown;
pub mod test_port;
pub mod version;

pub use entry::Entry;
pub use error::ApiError;
pub use service::ServiceContext;
