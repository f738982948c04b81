//! The `ultracloud iam` service: stateless replicas over flaredb. See docs/iam.md.

pub mod api;
pub mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use ultracloud_flaredb::error::FlareError;
use ultracloud_runtime::config::{ConfigError, Validate};

use crate::jwt::{KeyRing, Verifier};
use crate::password::{self, Cost};
use crate::policy::{Binding, Scope};
use crate::throttle::{Policy, Throttle};
use store::{Store, User};

/// iam's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IamConfig {
    /// Where the API listens.
    pub listen: SocketAddr,
    /// Admin listener (`/healthz`, `/readyz`, `/metrics`, `/version`).
    pub admin_listen: SocketAddr,
    /// Data dir (holds only the bootstrap admin password file; state is in flaredb).
    pub data_dir: PathBuf,
    /// flaredb nodes (`host:port,…`).
    pub flaredb_endpoints: String,
    /// Issuer named in tokens.
    pub issuer: String,
    /// Access token lifetime in seconds.
    pub token_lifetime_secs: u64,
    /// Signing key rotation interval in seconds.
    pub key_rotation_secs: u64,
    /// The first system admin's password (default: generated and written to a 0600 file).
    pub admin_password: Option<String>,
}

impl Default for IamConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8480)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9103)),
            data_dir: ultracloud_runtime::data_dir::default_root().join("iam"),
            flaredb_endpoints: "127.0.0.1:2479".into(),
            issuer: "ultracloud-iam".into(),
            token_lifetime_secs: 300,
            key_rotation_secs: 24 * 3600,
            admin_password: None,
        }
    }
}

impl Validate for IamConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.flaredb_endpoints.split(',').all(|s| s.trim().is_empty()) {
            return Err(ConfigError::invalid("flaredb_endpoints", &self.flaredb_endpoints, "host:port,…"));
        }
        if !(30..=3600).contains(&self.token_lifetime_secs) {
            return Err(ConfigError::invalid("token_lifetime_secs", self.token_lifetime_secs, "30 to 3600"));
        }
        if self.key_rotation_secs < 2 * self.token_lifetime_secs {
            return Err(ConfigError::invalid(
                "key_rotation_secs",
                self.key_rotation_secs,
                "at least 2 × token_lifetime_secs",
            ));
        }
        if self.admin_password.as_ref().is_some_and(|p| p.len() < 12) {
            return Err(ConfigError::invalid("admin_password", "(hidden)", "at least 12 characters"));
        }
        Ok(())
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// One iam replica.
#[derive(Debug)]
pub struct Iam {
    /// Its configuration.
    pub config: IamConfig,
    /// Records in flaredb.
    pub store: Store,
    /// Failed logins.
    pub throttle: Throttle,
    /// Password hashing cost.
    pub cost: Cost,
    ring: RwLock<(KeyRing, Verifier)>,
}

impl Iam {
    /// Connects to flaredb and loads (or creates) the signing keys.
    pub async fn start(config: IamConfig, cost: Cost) -> Result<Arc<Self>, FlareError> {
        let endpoints =
            config.flaredb_endpoints.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        let store = Store::new(ultracloud_flaredb::Client::new(endpoints)?);
        let ring = store.keyring(now_secs(), config.token_lifetime_secs).await?;
        let verifier = Verifier::new(&ring.jwks());
        Ok(Arc::new(Self {
            config,
            store,
            throttle: Throttle::new(Policy::default()),
            cost,
            ring: RwLock::new((ring, verifier)),
        }))
    }

    /// The current key ring and verifier.
    pub fn keys(&self) -> (KeyRing, Verifier) {
        self.ring.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Reloads the keys from flaredb (another replica may have rotated them).
    pub async fn reload_keys(&self) -> Result<(), FlareError> {
        let ring = self.store.keyring(now_secs(), self.config.token_lifetime_secs).await?;
        let verifier = Verifier::new(&ring.jwks());
        *self.ring.write().unwrap_or_else(std::sync::PoisonError::into_inner) = (ring, verifier);
        Ok(())
    }

    /// Rotates the signing keys when the newest is older than the rotation interval.
    pub async fn rotate_if_due(&self) -> Result<(), FlareError> {
        let (ring, _) = self.keys();
        let newest = ring.keys.iter().map(|k| k.created).max().unwrap_or(0);
        if now_secs() >= newest + self.config.key_rotation_secs {
            self.store.rotate_keys(now_secs(), self.config.token_lifetime_secs).await?;
            tracing::info!("signing keys rotated");
        }
        self.reload_keys().await
    }

    /// Creates the system admin on the very first start. Returns the password file it wrote.
    pub async fn bootstrap(
        &self,
        data_dir: &Path,
    ) -> Result<Option<PathBuf>, Box<dyn std::error::Error + Send + Sync>> {
        if self.store.user_by_name("admin").await?.is_some() {
            return Ok(None);
        }
        let (password, generated) = match &self.config.admin_password {
            Some(p) => (p.clone(), false),
            None => (generate_password(), true),
        };
        let user = User {
            id: "admin".into(),
            name: "admin".into(),
            tenant: None,
            password_hash: password::hash(&password, self.cost)?,
            disabled: false,
        };
        if !self.store.create_user(&user).await? {
            return Ok(None); // another replica bootstrapped first
        }
        self.store
            .bind(
                "system-admin",
                &Binding { subject: "user:admin".into(), role: "system-admin".into(), scope: Scope::System },
            )
            .await?;
        if !generated {
            return Ok(None);
        }
        let path = data_dir.join("admin-password");
        write_secret(&path, &password)?;
        Ok(Some(path))
    }

    /// Runs the background duties: key reload and rotation, until `shutdown`.
    pub async fn duties(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.rotate_if_due().await {
                tracing::warn!(error = %e, "key refresh failed");
            }
        }
    }
}

/// A random password of 24 characters from an unambiguous alphabet.
pub fn generate_password() -> String {
    use rand_core::RngCore;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 24];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// Writes a secret to a file only its owner can read (0600), replacing it.
pub fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Runs a replica until SIGTERM/SIGINT.
pub async fn run(config: IamConfig) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let ctx = ultracloud_runtime::ServiceContext::start("iam", &config.data_dir)?;
    let listener = ultracloud_runtime::admin::bind(config.listen, "iam API").await?;
    let iam = Iam::start(config.clone(), Cost::default()).await?;
    if let Some(path) = iam.bootstrap(ctx.data_dir().path()).await? {
        println!("iam: created the system admin `admin`; its password is in {} (mode 0600)", path.display());
    }
    tokio::spawn(iam.clone().duties(ctx.shutdown.clone()));
    let admin = ctx.start_admin(config.admin_listen, axum::Router::new()).await?;
    tracing::info!(api = %config.listen, admin = %admin.local_addr, "iam ready");
    ctx.serve_api(listener, api::router(iam)).await?;
    let _ = admin.task.await;
    Ok(())
}
