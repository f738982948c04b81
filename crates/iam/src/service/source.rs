//! iam's own [`PolicySource`]: the authorizer inside iam reads flaredb directly.

use std::time::{Duration, Instant};

use super::model::Revocation;
use super::now_secs;
use super::store::Store;
use crate::authz::{PolicySource, SubjectPolicy};
use crate::jwt::Jwks;
use crate::policy;

/// How often an iam replica polls the authorization version in flaredb.
pub const VERSION_POLL: Duration = Duration::from_millis(200);

/// How long one version wait lasts before answering "unchanged".
pub const VERSION_WAIT: Duration = Duration::from_secs(20);

/// Policy data straight from flaredb.
#[derive(Debug, Clone)]
pub struct LocalSource {
    store: Store,
    token_lifetime: u64,
    issuer: String,
}

impl LocalSource {
    /// A source over `store`, for tokens iam issues as `issuer`.
    pub fn new(store: Store, token_lifetime: u64, issuer: String) -> Self {
        Self { store, token_lifetime, issuer }
    }
}

/// A subject's policy read from the store.
pub async fn subject_policy(store: &Store, subject: &str) -> Result<SubjectPolicy, String> {
    let bindings = store.bindings_of(subject).await.map_err(|e| e.to_string())?;
    let builtin = policy::builtin_roles();
    let mut roles = Vec::new();
    for b in &bindings {
        if builtin.iter().any(|r| r.name == b.role) || roles.iter().any(|r: &policy::Role| r.name == b.role) {
            continue;
        }
        if let Some(r) = store.role(&b.role).await.map_err(|e| e.to_string())? {
            roles.push(r);
        }
    }
    Ok(SubjectPolicy { subject: subject.to_owned(), bindings, roles })
}

impl PolicySource for LocalSource {
    async fn jwks(&self) -> Result<Jwks, String> {
        let mut jwks = self.store.keyring(now_secs(), self.token_lifetime).await.map_err(|e| e.to_string())?.jwks();
        // Guards learn the issuer with the keys, so they refuse tokens naming another.
        jwks.issuer = Some(self.issuer.clone());
        Ok(jwks)
    }

    async fn revocations(&self) -> Result<Vec<Revocation>, String> {
        self.store.revocations(now_secs()).await.map_err(|e| e.to_string())
    }

    async fn policy(&self, subject: &str) -> Result<SubjectPolicy, String> {
        subject_policy(&self.store, subject).await
    }

    async fn next_version(&self, known: u64) -> Result<u64, String> {
        let start = Instant::now();
        loop {
            let v = self.store.version().await.map_err(|e| e.to_string())?;
            if v != known || start.elapsed() >= VERSION_WAIT {
                return Ok(v);
            }
            tokio::time::sleep(VERSION_POLL).await;
        }
    }
}
