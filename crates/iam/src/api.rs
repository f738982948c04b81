//! iam's wire types that its clients share with it — the guard in every service, the CLI —
//! so that the client side (`authz`, `guard`) depends on these and not on iam's server
//! (`service`), which uses them too: the requests (`TokenRequest`, `NewUser`, …), the
//! records a client sends whole (`Tenant`, `ServiceAccount`, `Role`, `Binding`) and what the
//! server answers.

use serde::{Deserialize, Serialize};

use crate::jwt::Claims;
pub use crate::policy::{Binding, Role, Scope};

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

/// `POST /v1/auth/token`: one of three grants.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "grant_type", rename_all = "snake_case")]
pub enum TokenRequest {
    /// A user's name and password.
    Password {
        /// Login name.
        username: String,
        /// Password.
        password: String,
    },
    /// An API key (`ucak_…`).
    ApiKey {
        /// The key.
        api_key: String,
    },
    /// A refresh token (`ucrt_…`), used once.
    RefreshToken {
        /// The token.
        refresh_token: String,
    },
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenRequest::Password { username, .. } => write!(f, "Password {{ username: {username:?}, .. }}"),
            TokenRequest::ApiKey { .. } => f.write_str("ApiKey { .. }"),
            TokenRequest::RefreshToken { .. } => f.write_str("RefreshToken { .. }"),
        }
    }
}

/// `POST /v1/auth/logout`.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    /// The session's refresh token, to revoke with the access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// `POST /v1/tenants/{tenant}/projects`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    /// Project ID.
    pub id: String,
}

/// `POST /v1/users`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name (also the ID).
    pub name: String,
    /// Home tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Initial password (at least 12 characters).
    pub password: String,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser").field("name", &self.name).field("tenant", &self.tenant).finish_non_exhaustive()
    }
}

/// `PATCH /v1/users/{id}`.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// Disable (revokes the user's tokens) or enable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// A new password (revokes the user's tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl std::fmt::Debug for UserPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPatch").field("disabled", &self.disabled).finish_non_exhaustive()
    }
}

/// `POST /v1/api-keys`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Whose key (`user:<id>` or `sa:<id>`); default: the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Lifetime in seconds (default: until deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}

/// `POST /v1/authorize`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    /// The subject (`user:<id>`, `sa:<id>`).
    pub subject: String,
    /// The action (`service.resource.verb`).
    pub action: String,
    /// The resource's scope.
    pub scope: Scope,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// ID (also its name: lowercase letters, digits and dashes).
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub display_name: String,
}

/// A service account: a non-human subject (`sa:<id>`) that authenticates with API keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    /// ID (unique).
    pub id: String,
    /// Home tenant (`None`: a platform service account).
    pub tenant: Option<String>,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// The worker it is bound to, for a node agent's account (platform accounts only): its
    /// tokens carry the node, and agent routes admit them only for that host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// `POST /v1/tenants/{tenant}/projects/{project}/s3-credentials`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewS3Credential {
    /// What it is for.
    #[serde(default)]
    pub description: String,
}

/// An S3 credential as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3CredentialView {
    /// The access key ID (what S3 clients send in the clear).
    pub access_key_id: String,
    /// The tenant whose project it acts in.
    pub tenant: String,
    /// The project: its buckets are the ones the key reaches.
    pub project: String,
    /// Who created it (`user:<id>` or `sa:<id>`); requests signed with it act as this subject.
    pub owner: String,
    /// Created (seconds since the epoch).
    pub created: u64,
    /// What it is for.
    pub description: String,
}

/// The answer to creating an S3 credential: the secret, shown this once.
#[derive(Clone, Serialize, Deserialize)]
pub struct CreatedS3Credential {
    /// The credential.
    #[serde(flatten)]
    pub record: S3CredentialView,
    /// The secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for CreatedS3Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedS3Credential").field("record", &self.record).finish_non_exhaustive()
    }
}

/// `GET /v1/s3-credentials/{access_key_id}` (S3 gateways only): what verifying a signature
/// made with the key needs, and what the key's creator may do in its project now.
#[derive(Clone, Serialize, Deserialize)]
pub struct S3Secret {
    /// The credential.
    #[serde(flatten)]
    pub record: S3CredentialView,
    /// The secret access key.
    pub secret_access_key: String,
    /// The creator may only read objects in the project now (a viewer): the gateway refuses
    /// every other request signed with the key.
    #[serde(default)]
    pub read_only: bool,
}

impl std::fmt::Debug for S3Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Secret")
            .field("record", &self.record)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}
