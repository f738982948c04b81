//! The controller kit: what every UltraCloud controller (prismnet, plasmavmc and the services
//! to come) builds on, so that each new service is small and looks like the others.
//!
//! - [`store`]: tenant-owned resources in flaredb — the [`Resource`] trait and its
//!   [`resource!`] macro, [`Store`] (get, owned get, list, name index, version), transaction
//!   helpers, and the refusal model (a refusal aborts the whole transaction);
//! - [`meta`]: labels, annotations and the store's stamps (revision, who, when), label
//!   selectors;
//! - [`page`]: `limit`/`page_token` pagination of every list;
//! - [`audit`]: the event recorded with every change;
//! - [`idempotency`]: `Idempotency-Key` on creates (a retry gets the first answer);
//! - [`ids`]: resource IDs and the one name rule;
//! - [`watch`]: the version long-poll agents follow (`GET /v1/watch?after=N`);
//! - [`http`]: the one mapping of store errors to `{"error":{"code","message"}}` answers, the
//!   list shape and `201 Created`;
//! - [`openapi`]: a service's OpenAPI document from its route table;
//! - [`setup`]: service start-up helpers (API key files, endpoint lists);
//! - [`client`]: the one HTTP client of a service's replicas (failover, safe retries, token
//!   renewal, error decoding) that every typed client wraps.

pub mod audit;
pub mod client;
pub mod http;
pub mod idempotency;
pub mod ids;
pub mod meta;
pub mod openapi;
pub mod page;
pub mod setup;
pub mod store;
pub mod watch;

pub use meta::{Labels, Meta, MetaPatch};
pub use store::{Owner, Resource, Store, StoreError};
