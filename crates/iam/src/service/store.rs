//! iam's records in flaredb, under the `iam/` prefix.
//!
//! | key | value |
//! |---|---|
//! | `iam/keyring` | the signing keys (secret; readable only by iam) |
//! | `iam/tenant/{id}` | [`Tenant`] |
//! | `iam/project/{tenant}/{id}` | [`Project`] |
//! | `iam/user/{id}` | [`User`] (argon2id hash, never the password) |
//! | `iam/user-name/{name}` | user ID (names are unique; claimed with compare-and-swap) |
//! | `iam/binding/{subject}/{id}` | [`Binding`] |

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use ultracloud_flaredb::Client;
use ultracloud_flaredb::error::FlareError;

use crate::jwt::KeyRing;
use crate::policy::Binding;

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// ID (also its name: lowercase letters, digits and dashes).
    pub id: String,
    /// Display name.
    pub display_name: String,
}

/// A project of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// Its tenant.
    pub tenant: String,
    /// ID (unique in the tenant).
    pub id: String,
}

/// A user.
#[derive(Clone, Serialize, Deserialize)]
pub struct User {
    /// ID.
    pub id: String,
    /// Login name (unique).
    pub name: String,
    /// Home tenant (`None`: a system user).
    pub tenant: Option<String>,
    /// argon2id hash of the password.
    pub password_hash: String,
    /// Disabled users cannot log in.
    pub disabled: bool,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

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

    async fn list<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, FlareError> {
        let rows = self.db.scan(prefix.as_bytes(), Some(&prefix_end(prefix)), 0, false).await?;
        rows.iter().map(|p| decode(&String::from_utf8_lossy(&p.key), &p.value)).collect()
    }

    /// Creates `key` = `value` only if absent; false when it exists.
    async fn create<T: Serialize>(&self, key: &str, value: &T) -> Result<bool, FlareError> {
        Ok(self.db.compare_and_swap(key.as_bytes(), None, Some(&encode(value)?)).await?.is_none())
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
        self.db.compare_and_swap(b"iam/keyring", current.as_deref(), Some(&encode(&ring)?)).await?;
        self.get("iam/keyring").await?.ok_or_else(|| FlareError::Internal("keyring vanished".into()))
    }

    /// Creates a tenant; false when the ID is taken.
    pub async fn create_tenant(&self, t: &Tenant) -> Result<bool, FlareError> {
        self.create(&format!("iam/tenant/{}", t.id), t).await
    }

    /// A tenant.
    pub async fn tenant(&self, id: &str) -> Result<Option<Tenant>, FlareError> {
        self.get(&format!("iam/tenant/{id}")).await
    }

    /// Every tenant.
    pub async fn tenants(&self) -> Result<Vec<Tenant>, FlareError> {
        self.list("iam/tenant/").await
    }

    /// Deletes a tenant record.
    pub async fn delete_tenant(&self, id: &str) -> Result<(), FlareError> {
        self.db.delete(format!("iam/tenant/{id}").as_bytes()).await
    }

    /// Creates a project; false when it exists.
    pub async fn create_project(&self, p: &Project) -> Result<bool, FlareError> {
        self.create(&format!("iam/project/{}/{}", p.tenant, p.id), p).await
    }

    /// The projects of a tenant.
    pub async fn projects(&self, tenant: &str) -> Result<Vec<Project>, FlareError> {
        self.list(&format!("iam/project/{tenant}/")).await
    }

    /// Creates a user, claiming its name; false when the name is taken.
    pub async fn create_user(&self, u: &User) -> Result<bool, FlareError> {
        let name_key = format!("iam/user-name/{}", u.name);
        if !self.create(&name_key, &u.id).await? {
            return Ok(false);
        }
        self.db.put(format!("iam/user/{}", u.id).as_bytes(), &encode(u)?).await?;
        Ok(true)
    }

    /// A user by login name.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>, FlareError> {
        let Some(id) = self.get::<String>(&format!("iam/user-name/{name}")).await? else { return Ok(None) };
        self.get(&format!("iam/user/{id}")).await
    }

    /// Every user.
    pub async fn users(&self) -> Result<Vec<User>, FlareError> {
        self.list("iam/user/").await
    }

    /// Grants a binding.
    pub async fn bind(&self, id: &str, b: &Binding) -> Result<(), FlareError> {
        self.db.put(format!("iam/binding/{}/{id}", b.subject).as_bytes(), &encode(b)?).await
    }

    /// The bindings of a subject.
    pub async fn bindings_of(&self, subject: &str) -> Result<Vec<Binding>, FlareError> {
        self.list(&format!("iam/binding/{subject}/")).await
    }
}
