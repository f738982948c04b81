//! iam's records: what is stored in flaredb and shown through the API.

use serde::{Deserialize, Serialize};

pub use crate::api::{Revocation, Revoked, ServiceAccount, Tenant};

/// A project of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// Its tenant.
    pub tenant: String,
    /// ID (unique in the tenant).
    pub id: String,
}

/// A user (a person who logs in with a password).
#[derive(Clone, Serialize, Deserialize)]
pub struct User {
    /// ID, also the login name (unique).
    pub id: String,
    /// Home tenant (`None`: a system user).
    pub tenant: Option<String>,
    /// argon2id hash of the password.
    pub password_hash: String,
    /// Disabled users cannot log in, and their tokens are revoked.
    pub disabled: bool,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// A user as the API shows it (never the hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    /// ID (login name).
    pub id: String,
    /// Home tenant.
    pub tenant: Option<String>,
    /// Whether it is disabled.
    pub disabled: bool,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self { id: u.id.clone(), tenant: u.tenant.clone(), disabled: u.disabled }
    }
}

/// An S3 credential's stored record. Unlike an API key's, the secret itself is kept: SigV4
/// signatures are verified with it (see docs/lightningstor.md, "Credentials").
#[derive(Clone, Serialize, Deserialize)]
pub struct S3Credential {
    /// What is listed.
    pub view: crate::api::S3CredentialView,
    /// The secret access key.
    pub secret: String,
}

impl std::fmt::Debug for S3Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credential").field("view", &self.view).finish_non_exhaustive()
    }
}

/// An API key's stored record (the key itself is shown once and never stored).
#[derive(Clone, Serialize, Deserialize)]
pub struct ApiKey {
    /// ID (the middle part of the key).
    pub id: String,
    /// Whose key: `user:<id>` or `sa:<id>`.
    pub owner: String,
    /// The owner's home tenant.
    pub tenant: Option<String>,
    /// SHA-256 of the key's secret.
    pub hash: String,
    /// Created (seconds since the epoch).
    pub created: u64,
    /// Expires (seconds since the epoch), if ever.
    pub expires: Option<u64>,
    /// What it is for.
    #[serde(default)]
    pub description: String,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey").field("id", &self.id).field("owner", &self.owner).finish_non_exhaustive()
    }
}

/// An API key as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyView {
    /// ID.
    pub id: String,
    /// Owner subject.
    pub owner: String,
    /// Owner's home tenant.
    pub tenant: Option<String>,
    /// Created.
    pub created: u64,
    /// Expires.
    pub expires: Option<u64>,
    /// What it is for.
    pub description: String,
}

impl From<&ApiKey> for ApiKeyView {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id.clone(),
            owner: k.owner.clone(),
            tenant: k.tenant.clone(),
            created: k.created,
            expires: k.expires,
            description: k.description.clone(),
        }
    }
}

/// A refresh token's stored record: one use, then replaced.
#[derive(Clone, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// ID.
    pub id: String,
    /// The subject it refreshes.
    pub subject: String,
    /// The subject's home tenant.
    pub tenant: Option<String>,
    /// The API key the session started from, if any.
    pub akid: Option<String>,
    /// SHA-256 of its secret.
    pub hash: String,
    /// Expires (seconds since the epoch).
    pub expires: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::Claims;

    #[test]
    fn revocations_match_what_they_name_and_only_older_tokens() {
        let c = Claims {
            iss: "i".into(),
            aud: vec![crate::jwt::PLATFORM_AUDIENCE.into()],
            sub: "user:a".into(),
            tenant: None,
            iat: 100,
            nbf: 100,
            exp: 400,
            jti: "j1".into(),
            akid: Some("k1".into()),
            node: None,
        };
        let r = |what, before| Revocation { what, before, expires: 1000 };
        assert!(r(Revoked::Token("j1".into()), u64::MAX).refuses(&c));
        assert!(!r(Revoked::Token("j2".into()), u64::MAX).refuses(&c));
        assert!(r(Revoked::Subject("user:a".into()), 100).refuses(&c));
        assert!(!r(Revoked::Subject("user:a".into()), 99).refuses(&c), "a newer token is fine");
        assert!(!r(Revoked::Subject("user:b".into()), 100).refuses(&c));
        assert!(r(Revoked::ApiKey("k1".into()), 100).refuses(&c));
        assert!(!r(Revoked::ApiKey("k2".into()), 100).refuses(&c));
    }
}
