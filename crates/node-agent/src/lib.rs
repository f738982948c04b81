//! The node agent: the one process on every UltraCloud node that runs the node's services.
//!
//! Services are child processes (by default the same `ultracloud` binary with the service's
//! subcommand), each described by a [`spec::ServiceSpec`]. The [`supervisor`] drives the running
//! children to a desired set of specs — an *assignment* — restarting crashed services with
//! exponential backoff and stopping removed ones. Today the assignment comes from the node's static
//! config ([`config::NodeConfig`] and its roles); the fleet scheduler will later feed the same
//! [`supervisor::SupervisorHandle::apply`] from chainfire, which is why the two are separate.

pub mod agent;
pub mod backoff;
pub mod child;
pub mod client;
pub mod config;
pub mod roles;
pub mod server;
pub mod spec;
pub mod status;
pub mod supervisor;
