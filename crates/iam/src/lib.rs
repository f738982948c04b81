//! iam: identity, tenancy and authorization for every UltraCloud API.
//!
//! [`jwt`] — Ed25519-signed access tokens, the key ring with rotation and the JWKS document;
//! [`password`] — argon2id password hashes; [`credential`] — API keys and refresh tokens (shown
//! once, stored hashed); [`throttle`] — failed-login throttling per user and per source;
//! [`policy`] — scopes, roles, bindings and authorization decisions; [`authz`] — the cached,
//! offline authorizer; [`guard`] — the axum layer every service puts in front of its API;
//! [`service`] — the `ultracloud iam` service itself. docs/iam.md describes the whole.

pub mod api;
pub mod authz;
pub mod credential;
pub mod guard;
pub mod jwt;
pub mod password;
pub mod policy;
pub mod service;
pub mod throttle;
