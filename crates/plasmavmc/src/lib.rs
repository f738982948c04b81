//! plasmavmc: tenants' virtual machines.
//!
//! The controller ([`server`], [`ops`]) keeps VMs, images and volumes in flaredb, places VMs on
//! workers ([`scheduler`]) and plugs their NICs into prismnet. The agent ([`agent`]) on each
//! worker runs one QEMU process per VM, controlled over QMP, and drives what runs towards what
//! the controller asks for.

pub mod agent;
pub mod api;
pub mod client;
pub mod image_fetch;
pub mod model;
pub mod network;
pub mod openapi;
pub mod ops;
pub mod plan;
pub mod records;
pub mod scheduler;
pub mod server;
pub mod service;
