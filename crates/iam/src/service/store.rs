//! iam's records in flaredb, under the `iam/` prefix.
//!
//! | key | value |
//! |---|---|
//! | `iam/keyring` | the signing keys (secret; readable only by iam) |
//! | `iam/version` | a counter bumped by every change that affects authorization |
//! | `iam/tenant/{id}` | [`Tenant`] |
//! | `iam/project/{tenant}/{id}` | [`Project`] |
//! | `iam/user/{id}` | [`User`] (argon2id hash, never the password) |
//! | `iam/sa/{id}` | [`ServiceAccount`] |
//! | `iam/apikey/{id}` | [`ApiKey`] (SHA-256 of the secret) |
//! | `iam/refresh/{id}` | [`RefreshRecord`] (SHA-256 of the secret) |
//! | `iam/role/{name}` | custom [`Role`] |
//! | `iam/binding/{subject}/{id}` | [`Binding`] |
//! | `iam/revoked/{what}` | [`Revocation`] |
//!
//! Creation uses compare-and-swap on an absent key, so two replicas racing to create the
//! same record cannot both succeed.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use ultracloud_flaredb::Client;
use ultracloud_flaredb::error::FlareError;

use super::model::{ApiKey, Project, RefreshRecord, Revocation, S3Credential, ServiceAccount, Tenant, User};
use crate::jwt::KeyRing;
use crate::policy::{Binding, Role};

const VERSION_KEY: &[u8] = b"iam/version";

/// iam's view of flaredb.
#[derive(Debug, Clone)]
pub struct Store {
    db: Client,
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, FlareError> {
    serde_json::from_slice(bytes).map_err(|e| FlareError::Internal(format!("corrupt record {key}: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, FlareError> {
    serde_json::to_vec(v).map_err(|e| FlareError::Internal(e.to_string()))
}

/// The key just after every key starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// One page of a listing: the items and, when more may follow, the token of the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `page_token` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

impl Store {
    /// iam records in the flaredb reachable through `db`.
    pub fn new(db: Client) -> Self {
        Self { db }
    }

    async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, FlareError> {
        match self.db.get(key.as_bytes()).await? {
            Some(b) => Ok(Some(decode(key, &b)?)),
            None => Ok(None),
        }
    }

    async fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), FlareError> {
        self.db.put(key.as_bytes(), &encode(value)?).await
    }

    async fn delete(&self, key: &str) -> Result<(), FlareError> {
        self.db.delete(key.as_bytes()).await
    }

    async fn list<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, FlareError> {
        let rows = self.db.scan(prefix.as_bytes(), Some(&prefix_end(prefix)), 0, false).await?;
        rows.iter().map(|p| decode(&String::from_utf8_lossy(&p.key), &p.value)).collect()
    }

    /// Up to `limit` records under `prefix` after the page token `after` (the last key suffix
    /// of the previous page).
    pub async fn page<T: DeserializeOwned>(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<T>, FlareError> {
        let start = match after {
            // The smallest key after `prefix + after`.
            Some(a) => [prefix.as_bytes(), a.as_bytes(), b"\0"].concat(),
            None => prefix.as_bytes().to_vec(),
        };
        let rows = self.db.scan(&start, Some(&prefix_end(prefix)), limit + 1, false).await?;
        let more = rows.len() > limit;
        let rows = &rows[..rows.len().min(limit)];
        let next_page_token =
            more.then(|| rows.last().map(|p| String::from_utf8_lossy(&p.key[prefix.len()..]).into_owned())).flatten();
        let items =
            rows.iter().map(|p| decode(&String::from_utf8_lossy(&p.key), &p.value)).collect::<Result<_, _>>()?;
        Ok(Page { items, next_page_token })
    }

    /// Whether any key starts with `prefix`.
    async fn any(&self, prefix: &str) -> Result<bool, FlareError> {
        Ok(!self.db.scan(prefix.as_bytes(), Some(&prefix_end(prefix)), 1, false).await?.is_empty())
    }

    /// Creates `key` = `value` only if absent; false when it exists.
    async fn create<T: Serialize>(&self, key: &str, value: &T) -> Result<bool, FlareError> {
        Ok(self.db.compare_and_swap(key.as_bytes(), None, Some(&encode(value)?)).await?.is_none())
    }

    /// The authorization version: changes whenever bindings, roles, revocations or keys do.
    pub async fn version(&self) -> Result<u64, FlareError> {
        Ok(match self.db.get(VERSION_KEY).await? {
            Some(v) => String::from_utf8_lossy(&v).parse().unwrap_or_default(),
            None => 0,
        })
    }

    /// Bumps the authorization version (every replica and guard then drops its caches).
    pub async fn bump_version(&self) -> Result<u64, FlareError> {
        Ok(self.db.increment(VERSION_KEY, 1).await?.max(0).unsigned_abs())
    }

    /// The signing keys, created (once, cluster-wide) when missing.
    pub async fn keyring(&self, now: u64, token_lifetime: u64) -> Result<KeyRing, FlareError> {
        if let Some(r) = self.get::<KeyRing>("iam/keyring").await? {
            return Ok(r);
        }
        let mut ring = KeyRing::default();
        ring.rotate(now, token_lifetime);
        self.create("iam/keyring", &ring).await?;
        // Another replica may have won the race: everyone uses what is stored.
        self.get("iam/keyring").await?.ok_or_else(|| FlareError::Internal("keyring vanished".into()))
    }

    /// Rotates the signing keys (compare-and-swap: concurrent rotations do not both apply).
    pub async fn rotate_keys(&self, now: u64, token_lifetime: u64) -> Result<KeyRing, FlareError> {
        let current = self.db.get(b"iam/keyring").await?;
        let mut ring: KeyRing = match &current {
            Some(b) => decode("iam/keyring", b)?,
            None => KeyRing::default(),
        };
        ring.rotate(now, token_lifetime);
        if self.db.compare_and_swap(b"iam/keyring", current.as_deref(), Some(&encode(&ring)?)).await?.is_none() {
            self.bump_version().await?;
        }
        self.get("iam/keyring").await?.ok_or_else(|| FlareError::Internal("keyring vanished".into()))
    }

    // --- tenants and projects

    /// Creates a tenant; false when the ID is taken.
    pub async fn create_tenant(&self, t: &Tenant) -> Result<bool, FlareError> {
        self.create(&format!("iam/tenant/{}", t.id), t).await
    }

    /// A tenant.
    pub async fn tenant(&self, id: &str) -> Result<Option<Tenant>, FlareError> {
        self.get(&format!("iam/tenant/{id}")).await
    }

    /// A page of tenants.
    pub async fn tenants(&self, after: Option<&str>, limit: usize) -> Result<Page<Tenant>, FlareError> {
        self.page("iam/tenant/", after, limit).await
    }

    /// Whether the tenant still owns projects, users or service accounts (what blocks its
    /// deletion), naming the first kind found.
    pub async fn tenant_in_use(&self, id: &str) -> Result<Option<&'static str>, FlareError> {
        if self.any(&format!("iam/project/{id}/")).await? {
            return Ok(Some("projects"));
        }
        let users: Vec<User> = self.list("iam/user/").await?;
        if users.iter().any(|u| u.tenant.as_deref() == Some(id)) {
            return Ok(Some("users"));
        }
        let sas: Vec<ServiceAccount> = self.list("iam/sa/").await?;
        if sas.iter().any(|s| s.tenant.as_deref() == Some(id)) {
            return Ok(Some("service accounts"));
        }
        Ok(None)
    }

    /// Deletes a tenant record.
    pub async fn delete_tenant(&self, id: &str) -> Result<(), FlareError> {
        self.delete(&format!("iam/tenant/{id}")).await
    }

    /// Creates a project; false when it exists.
    pub async fn create_project(&self, p: &Project) -> Result<bool, FlareError> {
        self.create(&format!("iam/project/{}/{}", p.tenant, p.id), p).await
    }

    /// A project.
    pub async fn project(&self, tenant: &str, id: &str) -> Result<Option<Project>, FlareError> {
        self.get(&format!("iam/project/{tenant}/{id}")).await
    }

    /// A page of a tenant's projects.
    pub async fn projects(&self, tenant: &str, after: Option<&str>, limit: usize) -> Result<Page<Project>, FlareError> {
        self.page(&format!("iam/project/{tenant}/"), after, limit).await
    }

    /// Deletes a project.
    pub async fn delete_project(&self, tenant: &str, id: &str) -> Result<(), FlareError> {
        self.delete(&format!("iam/project/{tenant}/{id}")).await
    }

    // --- users and service accounts

    /// Creates a user; false when the name is taken.
    pub async fn create_user(&self, u: &User) -> Result<bool, FlareError> {
        self.create(&format!("iam/user/{}", u.id), u).await
    }

    /// A user.
    pub async fn user(&self, id: &str) -> Result<Option<User>, FlareError> {
        self.get(&format!("iam/user/{id}")).await
    }

    /// Replaces a user record.
    pub async fn put_user(&self, u: &User) -> Result<(), FlareError> {
        self.put(&format!("iam/user/{}", u.id), u).await
    }

    /// A page of users.
    pub async fn users(&self, after: Option<&str>, limit: usize) -> Result<Page<User>, FlareError> {
        self.page("iam/user/", after, limit).await
    }

    /// Deletes a user.
    pub async fn delete_user(&self, id: &str) -> Result<(), FlareError> {
        self.delete(&format!("iam/user/{id}")).await
    }

    /// Creates a service account; false when the ID is taken.
    pub async fn create_service_account(&self, sa: &ServiceAccount) -> Result<bool, FlareError> {
        self.create(&format!("iam/sa/{}", sa.id), sa).await
    }

    /// A service account.
    pub async fn service_account(&self, id: &str) -> Result<Option<ServiceAccount>, FlareError> {
        self.get(&format!("iam/sa/{id}")).await
    }

    /// A page of service accounts.
    pub async fn service_accounts(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ServiceAccount>, FlareError> {
        self.page("iam/sa/", after, limit).await
    }

    /// Deletes a service account.
    pub async fn delete_service_account(&self, id: &str) -> Result<(), FlareError> {
        self.delete(&format!("iam/sa/{id}")).await
    }

    // --- credentials

    /// Stores a new API key.
    pub async fn create_api_key(&self, k: &ApiKey) -> Result<bool, FlareError> {
        self.create(&format!("iam/apikey/{}", k.id), k).await
    }

    /// An API key.
    pub async fn api_key(&self, id: &str) -> Result<Option<ApiKey>, FlareError> {
        self.get(&format!("iam/apikey/{id}")).await
    }

    /// Every API key (for listing by owner).
    pub async fn api_keys(&self) -> Result<Vec<ApiKey>, FlareError> {
        self.list("iam/apikey/").await
    }

    /// Deletes an API key.
    pub async fn delete_api_key(&self, id: &str) -> Result<(), FlareError> {
        self.delete(&format!("iam/apikey/{id}")).await
    }

    /// Stores a new S3 credential; false when its access key ID is taken.
    pub async fn create_s3_credential(&self, c: &S3Credential) -> Result<bool, FlareError> {
        self.create(&format!("iam/s3cred/{}", c.view.access_key_id), c).await
    }

    /// An S3 credential by access key ID.
    pub async fn s3_credential(&self, access_key_id: &str) -> Result<Option<S3Credential>, FlareError> {
        self.get(&format!("iam/s3cred/{access_key_id}")).await
    }

    /// The S3 credentials of a project.
    pub async fn s3_credentials_of(&self, tenant: &str, project: &str) -> Result<Vec<S3Credential>, FlareError> {
        let all: Vec<S3Credential> = self.list("iam/s3cred/").await?;
        Ok(all.into_iter().filter(|c| c.view.tenant == tenant && c.view.project == project).collect())
    }

    /// Deletes an S3 credential.
    pub async fn delete_s3_credential(&self, access_key_id: &str) -> Result<(), FlareError> {
        self.delete(&format!("iam/s3cred/{access_key_id}")).await
    }

    /// Stores a refresh token.
    pub async fn create_refresh(&self, r: &RefreshRecord) -> Result<bool, FlareError> {
        self.create(&format!("iam/refresh/{}", r.id), r).await
    }

    /// Takes a refresh token whose record `proves` accepts (its holder's secret): returns it
    /// and deletes it, atomically (compare-and-swap), so it is used at most once even when
    /// presented twice at once. A record `proves` refuses is left where it was: a caller with a
    /// wrong secret never takes it, even for a moment, from its holder.
    pub async fn take_refresh(
        &self,
        id: &str,
        proves: impl FnOnce(&RefreshRecord) -> bool,
    ) -> Result<Option<RefreshRecord>, FlareError> {
        let key = format!("iam/refresh/{id}");
        let Some(bytes) = self.db.get(key.as_bytes()).await? else { return Ok(None) };
        let record: RefreshRecord = decode(&key, &bytes)?;
        if !proves(&record) || self.db.compare_and_swap(key.as_bytes(), Some(&bytes), None).await?.is_some() {
            return Ok(None);
        }
        Ok(Some(record))
    }

    /// Deletes every refresh token of `subject` (its password changed, or it was disabled).
    pub async fn delete_refresh_of(&self, subject: &str) -> Result<(), FlareError> {
        for r in self.list::<RefreshRecord>("iam/refresh/").await?.iter().filter(|r| r.subject == subject) {
            self.delete_refresh(&r.id).await?;
        }
        Ok(())
    }

    /// Deletes a refresh token.
    pub async fn delete_refresh(&self, id: &str) -> Result<(), FlareError> {
        self.delete(&format!("iam/refresh/{id}")).await
    }

    // --- roles and bindings

    /// Creates a custom role; false when the name is taken.
    pub async fn create_role(&self, r: &Role) -> Result<bool, FlareError> {
        self.create(&format!("iam/role/{}", r.name), r).await
    }

    /// A custom role.
    pub async fn role(&self, name: &str) -> Result<Option<Role>, FlareError> {
        self.get(&format!("iam/role/{name}")).await
    }

    /// A page of custom roles.
    pub async fn roles(&self, after: Option<&str>, limit: usize) -> Result<Page<Role>, FlareError> {
        self.page("iam/role/", after, limit).await
    }

    /// Replaces a custom role and bumps the version.
    pub async fn put_role(&self, r: &Role) -> Result<(), FlareError> {
        self.put(&format!("iam/role/{}", r.name), r).await?;
        self.bump_version().await.map(|_| ())
    }

    /// Deletes a custom role and bumps the version.
    pub async fn delete_role(&self, name: &str) -> Result<(), FlareError> {
        self.delete(&format!("iam/role/{name}")).await?;
        self.bump_version().await.map(|_| ())
    }

    /// Grants a binding (idempotent) and bumps the version.
    pub async fn bind(&self, id: &str, b: &Binding) -> Result<(), FlareError> {
        self.put(&format!("iam/binding/{}/{id}", b.subject), b).await?;
        self.bump_version().await.map(|_| ())
    }

    /// Removes a binding and bumps the version; false when there was none.
    pub async fn unbind(&self, subject: &str, id: &str) -> Result<bool, FlareError> {
        let key = format!("iam/binding/{subject}/{id}");
        if self.db.get(key.as_bytes()).await?.is_none() {
            return Ok(false);
        }
        self.delete(&key).await?;
        self.bump_version().await?;
        Ok(true)
    }

    /// The bindings of a subject.
    pub async fn bindings_of(&self, subject: &str) -> Result<Vec<Binding>, FlareError> {
        self.list(&format!("iam/binding/{subject}/")).await
    }

    /// Every binding.
    pub async fn bindings(&self) -> Result<Vec<Binding>, FlareError> {
        self.list("iam/binding/").await
    }

    /// Removes every binding of a subject (it is being deleted) and bumps the version.
    pub async fn unbind_all(&self, subject: &str) -> Result<(), FlareError> {
        for b in self.bindings_of(subject).await? {
            self.delete(&format!("iam/binding/{subject}/{}", binding_id(&b))).await?;
        }
        self.bump_version().await.map(|_| ())
    }

    // --- revocations

    /// Records a revocation and bumps the version.
    pub async fn revoke(&self, r: &Revocation) -> Result<(), FlareError> {
        self.put(&format!("iam/revoked/{}", r.what.key()), r).await?;
        self.bump_version().await.map(|_| ())
    }

    /// Every revocation that may still refuse a token at `now`; expired ones are dropped.
    pub async fn revocations(&self, now: u64) -> Result<Vec<Revocation>, FlareError> {
        let all: Vec<Revocation> = self.list("iam/revoked/").await?;
        let (live, dead): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| r.expires > now);
        for r in dead {
            // Best effort: another replica may be collecting the same entry.
            let _ = self.delete(&format!("iam/revoked/{}", r.what.key())).await;
        }
        Ok(live)
    }
}

/// A binding's ID: the same role at the same scope for the same subject is one binding.
pub fn binding_id(b: &Binding) -> String {
    use crate::policy::Scope;
    let scope = match &b.scope {
        Scope::System => "system".to_owned(),
        Scope::Tenant { tenant } => format!("t.{tenant}"),
        Scope::Project { tenant, project } => format!("p.{tenant}.{project}"),
    };
    format!("{}@{scope}", b.role)
}
