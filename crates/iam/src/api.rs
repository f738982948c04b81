//! iam's wire types that its clients share with it — the guard in every service, the CLI —
//! so that the client side (`authz`, `guard`) depends on these and not on iam's server
//! (`service`), which uses them too.

use serde::{Deserialize, Serialize};

use crate::jwt::Claims;

/// Tokens issued at a login or refresh.
#[derive(Serialize, Deserialize)]
pub struct Issued {
    /// The access token (JWT).
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Exchange it once for new tokens at `POST /v1/auth/token` (`grant_type` `refresh_token`).
    pub refresh_token: String,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: u64,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").field("expires_in", &self.expires_in).finish_non_exhaustive()
    }
}

/// What a revocation applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Revoked {
    /// One access token (logout), by `jti`.
    Token(String),
    /// Every token of a subject issued up to `before` (user disabled or deleted).
    Subject(String),
    /// Every token issued for an API key up to `before` (key deleted).
    ApiKey(String),
}

impl Revoked {
    /// Its key suffix in the store.
    pub fn key(&self) -> String {
        match self {
            Revoked::Token(id) => format!("jti:{id}"),
            Revoked::Subject(id) => format!("sub:{id}"),
            Revoked::ApiKey(id) => format!("key:{id}"),
        }
    }
}

/// A revocation: tokens it matches and issued at or before `before` are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// What it applies to.
    pub what: Revoked,
    /// Tokens issued at or before this second are refused.
    pub before: u64,
    /// After this second no token it matches can still be valid, and it is dropped.
    pub expires: u64,
}

impl Revocation {
    /// Whether it refuses `claims`.
    pub fn refuses(&self, claims: &Claims) -> bool {
        let matches = match &self.what {
            Revoked::Token(jti) => *jti == claims.jti,
            Revoked::Subject(s) => *s == claims.sub,
            Revoked::ApiKey(k) => claims.akid.as_ref() == Some(k),
        };
        matches && claims.iat <= self.before
    }
}

/// `GET /v1/revocations`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Revocations {
    /// The version they belong to.
    pub version: u64,
    /// Every revocation in force.
    pub items: Vec<Revocation>,
}

/// The answer of `GET /v1/watch`.
#[derive(Debug, Serialize, Deserialize)]
pub struct WatchAnswer {
    /// The current authorization version (equal to `after` when nothing changed in time).
    pub version: u64,
}
