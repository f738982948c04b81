//! prismnet: tenant networking. The controller ([`server`], [`ops`], [`store`]) keeps VPCs,
//! subnets, routers, security groups, ports and service IPs in flaredb, tenant-scoped through
//! iam's guard, with an IPAM ([`ipam`]) that never hands out one address twice. The agent
//! ([`agent`]) realises each worker's [`plan`] with Linux bridges, VXLAN, taps/veths, dnsmasq
//! and nftables. docs/prismnet.md describes the whole.

pub mod agent;
pub mod api;
pub mod apply;
pub mod cidr;
pub mod client;
pub mod ipam;
pub mod model;
pub mod openapi;
pub mod ops;
pub mod plan;
pub mod server;
pub mod service;
pub mod store;
