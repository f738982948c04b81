//! iam: identity, tenancy and authorization for every UltraCloud API.
//!
//! Being built bottom up (docs/iam.md says what exists): [`jwt`] — Ed25519-signed access
//! tokens, the key ring with rotation and the JWKS document services verify against offline;
//! [`password`] — argon2id password hashes; [`throttle`] — failed-login throttling per user and
//! per source; [`policy`] — scopes, roles, bindings and authorization decisions. The service, its model in flaredb, and the shared authorization layer follow.

pub mod jwt;
pub mod password;
pub mod policy;
pub mod service;
pub mod throttle;
