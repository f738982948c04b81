//! flaredb: UltraCloud's transactional database. It holds the control state of every service
//! and is offered to tenants' applications.
//!
//! This crate is being built bottom up (see docs/flaredb.md for the plan and what exists):
//! [`ts`] — hybrid timestamps; [`mvcc`] — the Percolator-style multi-version store of one
//! region (snapshot reads, prewrite/commit/rollback, lock resolution, garbage collection) on
//! redb. Regions as openraft groups, placement, the API and the client come next.

pub mod mvcc;
pub mod ts;
