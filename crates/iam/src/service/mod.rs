//! The `ultracloud iam` service: stateless replicas over flaredb. See docs/iam.md.

pub mod api;
pub mod model;
pub mod source;
pub mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use ultracloud_flaredb::error::FlareError;
use ultracloud_runtime::config::{ConfigError, Validate};

use crate::authz::Authorizer;
use crate::credential::{self, Kind};
use crate::jwt::{Claims, KeyRing};
use crate::password::{self, Cost};
use crate::policy::{Binding, NODE_AGENT, OBJECT_GATEWAY, PLATFORM_SERVICE, Scope};
use crate::throttle::{Policy, Throttle};
use model::{ApiKey, RefreshRecord, ServiceAccount, User};
use source::LocalSource;
use store::{Store, binding_id};

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
    /// Refresh token lifetime in seconds.
    pub refresh_lifetime_secs: u64,
    /// Signing key rotation interval in seconds.
    pub key_rotation_secs: u64,
    /// The first system admin's password (default: generated and written to a 0600 file).
    pub admin_password: Option<String>,
    /// The API key of the `platform` service account other services use (`ucak_…`; default:
    /// generated on the first start and written to a 0600 file).
    pub platform_api_key: Option<String>,
    /// The API key of the `s3-gateway` service account lightningstor's gateways use (`ucak_…`;
    /// default: generated on the first start and written to a 0600 file).
    pub object_gateway_api_key: Option<String>,
    /// Node agents' API keys by worker name (`ucak_…`): each start makes sure the worker has
    /// its own service account `node-<name>`, bound to it and holding only the node-agent
    /// role, with this key. Workers never hold the platform key.
    #[serde(default)]
    pub node_api_keys: std::collections::BTreeMap<String, String>,
    /// TLS directory (`ca.pem`, `cert.pem`, `key.pem` from `ultracloud ca issue`): the API
    /// speaks TLS, and flaredb is reached over TLS with this node's certificate.
    pub tls_dir: Option<PathBuf>,
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
            refresh_lifetime_secs: 12 * 3600,
            key_rotation_secs: 24 * 3600,
            admin_password: None,
            platform_api_key: None,
            object_gateway_api_key: None,
            node_api_keys: Default::default(),
            tls_dir: None,
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
        if !(self.token_lifetime_secs..=30 * 24 * 3600).contains(&self.refresh_lifetime_secs) {
            return Err(ConfigError::invalid(
                "refresh_lifetime_secs",
                self.refresh_lifetime_secs,
                "token_lifetime_secs to 30 days",
            ));
        }
        for (field, key) in
            [("platform_api_key", &self.platform_api_key), ("object_gateway_api_key", &self.object_gateway_api_key)]
        {
            if key.as_ref().is_some_and(|k| credential::parse(Kind::ApiKey, k).is_none()) {
                return Err(ConfigError::invalid(field, "(hidden)", "an API key, ucak_<id>_<secret>"));
            }
        }
        for (node, key) in &self.node_api_keys {
            let name_ok = !node.is_empty()
                && node.len() <= 58
                && node.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !name_ok {
                return Err(ConfigError::invalid(
                    "node_api_keys",
                    node,
                    "worker names of 1-58 lowercase letters, digits, dashes",
                ));
            }
            if credential::parse(Kind::ApiKey, key).is_none() {
                return Err(ConfigError::invalid("node_api_keys", "(hidden)", "API keys, ucak_<id>_<secret>"));
            }
        }
        if self.admin_password.as_ref().is_some_and(|p| p.len() < 12) {
            return Err(ConfigError::invalid("admin_password", "(hidden)", "at least 12 characters"));
        }
        Ok(())
    }
}

/// Seconds since the epoch.
pub use crate::api::Issued;
pub use ultracloud_runtime::clock::now_secs;

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
    /// Token verification and authorization with caches kept current from flaredb.
    pub authz: Arc<Authorizer<LocalSource>>,
    ring: RwLock<KeyRing>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Iam {
    /// Connects to flaredb and loads (or creates) the signing keys.
    pub async fn start(config: IamConfig, cost: Cost) -> Result<Arc<Self>, FlareError> {
        let endpoints =
            config.flaredb_endpoints.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        let store = Store::new(ultracloud_flaredb::Client::new(endpoints)?);
        let ring = store.keyring(now_secs(), config.token_lifetime_secs).await?;
        let authz = Authorizer::new(LocalSource::new(store.clone(), config.token_lifetime_secs, config.issuer.clone()));
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(authz.clone().watch(shutdown.clone()));
        Ok(Arc::new(Self {
            config,
            store,
            throttle: Throttle::new(Policy::default()),
            cost,
            authz,
            ring: RwLock::new(ring),
            shutdown,
        }))
    }

    /// The current key ring.
    pub fn keys(&self) -> KeyRing {
        self.ring.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Reloads the keys from flaredb (another replica may have rotated them).
    pub async fn reload_keys(&self) -> Result<(), FlareError> {
        let ring = self.store.keyring(now_secs(), self.config.token_lifetime_secs).await?;
        *self.ring.write().unwrap_or_else(std::sync::PoisonError::into_inner) = ring;
        Ok(())
    }

    /// Issues an access token and a refresh token for `subject`.
    pub async fn issue(
        &self,
        subject: &str,
        tenant: Option<String>,
        akid: Option<String>,
    ) -> Result<Issued, Box<dyn std::error::Error + Send + Sync>> {
        let issued = now_secs();
        // A node agent's account binds its tokens to its worker.
        let node = match subject.strip_prefix("sa:") {
            Some(id) => self.store.service_account(id).await?.and_then(|sa| sa.node),
            None => None,
        };
        let claims = Claims {
            iss: self.config.issuer.clone(),
            aud: vec![crate::jwt::PLATFORM_AUDIENCE.to_owned()],
            sub: subject.to_owned(),
            tenant: tenant.clone(),
            iat: issued,
            nbf: issued,
            exp: issued + self.config.token_lifetime_secs,
            jti: credential::new_id(),
            akid: akid.clone(),
            node,
        };
        let access_token = self.keys().sign(&claims)?;
        let minted = credential::mint(Kind::Refresh);
        let record = RefreshRecord {
            id: minted.id.clone(),
            subject: subject.to_owned(),
            tenant,
            akid,
            hash: minted.hash.clone(),
            expires: issued + self.config.refresh_lifetime_secs,
        };
        self.store.create_refresh(&record).await?;
        Ok(Issued {
            access_token,
            token_type: "Bearer".into(),
            expires_in: self.config.token_lifetime_secs,
            refresh_token: minted.token,
            refresh_expires_in: self.config.refresh_lifetime_secs,
        })
    }

    /// Makes a change this replica just wrote take effect here at once (other replicas and
    /// guards follow through the version watch).
    pub async fn changed(&self) {
        if let Err(e) = self.authz.refresh().await {
            tracing::warn!(error = %e, "refreshing authorization caches failed");
        }
    }

    /// Stops the background tasks.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Rotates the signing keys when the newest is older than the rotation interval.
    pub async fn rotate_if_due(&self) -> Result<(), FlareError> {
        let ring = self.keys();
        let newest = ring.keys.iter().map(|k| k.created).max().unwrap_or(0);
        if now_secs() >= newest + self.config.key_rotation_secs {
            self.store.rotate_keys(now_secs(), self.config.token_lifetime_secs).await?;
            tracing::info!("signing keys rotated");
        }
        self.reload_keys().await
    }

    /// Creates the system admin, the `platform` service account (the controllers') and the
    /// `s3-gateway` one (lightningstor's gateways) on the very first start, and each worker's
    /// node-agent account on every start. Returns the secret files it wrote (a generated admin
    /// password, minted API keys).
    pub async fn bootstrap(&self, data_dir: &Path) -> Result<Vec<PathBuf>, Box<dyn std::error::Error + Send + Sync>> {
        let mut written = Vec::new();
        if self.store.user("admin").await?.is_none() {
            let (password, generated) = match &self.config.admin_password {
                Some(p) => (p.clone(), false),
                None => (generate_password(), true),
            };
            let user = User {
                id: "admin".into(),
                tenant: None,
                password_hash: password::hash(&password, self.cost)?,
                disabled: false,
            };
            // False: another replica bootstrapped first.
            if self.store.create_user(&user).await? {
                let b = Binding { subject: "user:admin".into(), role: "system-admin".into(), scope: Scope::System };
                self.store.bind(&binding_id(&b), &b).await?;
                if generated {
                    let path = data_dir.join("admin-password");
                    ultracloud_runtime::secret_file::write(&path, &password)?;
                    written.push(path);
                }
            }
        }
        let platform = Account {
            id: "platform".into(),
            role: PLATFORM_SERVICE,
            node: None,
            description: "UltraCloud's own services (policy lookups, service-to-service calls)".into(),
            key_file: "platform-api-key",
        };
        written.extend(self.ensure_account(&platform, self.config.platform_api_key.as_deref(), data_dir).await?);
        let gateway = Account {
            id: OBJECT_GATEWAY_ACCOUNT.into(),
            role: OBJECT_GATEWAY,
            node: None,
            description: "lightningstor's S3 gateways (resolving S3 access keys)".into(),
            key_file: "s3-gateway-api-key",
        };
        written.extend(self.ensure_account(&gateway, self.config.object_gateway_api_key.as_deref(), data_dir).await?);
        for (node, key) in &self.config.node_api_keys {
            let account = Account {
                id: node_account(node),
                role: NODE_AGENT,
                node: Some(node.clone()),
                description: format!("node agents of worker {node}"),
                key_file: "",
            };
            self.ensure_account(&account, Some(key), data_dir).await?;
        }
        Ok(written)
    }

    /// Makes sure a built-in service account exists with its role bound at system scope, and
    /// holds `key` when one is given. Without one, the replica that creates the account mints
    /// its key and writes it to `data_dir/<key_file>` (0600), returning that path. Idempotent:
    /// every replica runs it on every start, so a key given later is added then.
    async fn ensure_account(
        &self,
        account: &Account,
        key: Option<&str>,
        data_dir: &Path,
    ) -> Result<Option<PathBuf>, Box<dyn std::error::Error + Send + Sync>> {
        let subject = format!("sa:{}", account.id);
        let created = match self.store.service_account(&account.id).await? {
            Some(sa) if sa.node == account.node => false,
            Some(_) => return Err(format!("service account {} exists but is bound to another node", account.id).into()),
            None => {
                let sa = ServiceAccount {
                    id: account.id.clone(),
                    tenant: None,
                    description: account.description.clone(),
                    node: account.node.clone(),
                };
                // False: another replica created it first (and minted its key).
                self.store.create_service_account(&sa).await?
            }
        };
        let b = Binding { subject: subject.clone(), role: account.role.into(), scope: Scope::System };
        self.store.bind(&binding_id(&b), &b).await?;
        let minted = (key.is_none() && created).then(|| credential::mint(Kind::ApiKey));
        let presented = match (key, &minted) {
            (Some(k), _) => k,
            (None, Some(m)) => m.token.as_str(),
            (None, None) => return Ok(None),
        };
        let (id, secret) = credential::parse(Kind::ApiKey, presented)
            .ok_or_else(|| format!("the API key of {subject} is malformed"))?;
        let (id, hash) = (id.to_owned(), credential::hash(secret));
        match self.store.api_key(&id).await? {
            Some(k) if k.owner == subject && credential::matches(secret, &k.hash) => {}
            Some(_) => return Err(format!("API key {id} belongs to another subject than {subject}").into()),
            None => {
                let k = ApiKey {
                    id,
                    owner: subject.clone(),
                    tenant: None,
                    hash,
                    created: now_secs(),
                    expires: None,
                    description: format!("bootstrap key of {subject}"),
                };
                self.store.create_api_key(&k).await?;
            }
        }
        let Some(minted) = minted else { return Ok(None) };
        let path = data_dir.join(account.key_file);
        ultracloud_runtime::secret_file::write(&path, &minted.token)?;
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

/// The service account lightningstor's S3 gateways hold (the object-gateway role only).
pub const OBJECT_GATEWAY_ACCOUNT: &str = "s3-gateway";

/// A built-in service account [`Iam::bootstrap`] keeps in place.
struct Account {
    id: String,
    role: &'static str,
    node: Option<String>,
    description: String,
    /// Where a minted key is written, under the data dir.
    key_file: &'static str,
}

/// The service account of worker `node`'s agents.
pub fn node_account(node: &str) -> String {
    format!("node-{node}")
}

/// A random password of 24 characters from an unambiguous alphabet.
pub fn generate_password() -> String {
    use rand_core::RngCore;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 24];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// Connects to flaredb, retrying until it answers (flaredb may still be forming its cluster
/// when iam starts); `None` when shut down first.
async fn connect(
    config: &IamConfig,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<Option<Arc<Iam>>, FlareError> {
    let started = std::time::Instant::now();
    loop {
        match Iam::start(config.clone(), Cost::default()).await {
            Ok(iam) => return Ok(Some(iam)),
            Err(FlareError::Invalid(m)) => return Err(FlareError::Invalid(m)),
            // flaredb refused this node's certificate (or its absence): waiting cannot help.
            Err(FlareError::Refused(m)) => return Err(FlareError::Refused(m)),
            Err(e) => tracing::warn!(
                error = %e,
                endpoints = %config.flaredb_endpoints,
                waited_secs = started.elapsed().as_secs(),
                "waiting for flaredb"
            ),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Runs a replica until SIGTERM/SIGINT. Both listeners are bound first, so a port in use or a
/// bad address stops the start before anything else; `/readyz` reports not ready until flaredb
/// has answered.
pub fn run(
    config: IamConfig,
) -> ultracloud_runtime::Entry<'static, Result<(), Box<dyn std::error::Error + Send + Sync>>> {
    Box::pin(serve(config))
}

async fn serve(config: IamConfig) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let ctx = ultracloud_runtime::ServiceContext::start("iam", &config.data_dir)?;
    let tls = ultracloud_tls::setup(config.tls_dir.as_deref(), ultracloud_tls::ClientAuth::None)?;
    let listener = ultracloud_runtime::admin::bind(config.listen, "iam API").await?;
    let connected = Arc::new(std::sync::OnceLock::<Arc<Iam>>::new());
    let probe = connected.clone();
    ctx.readiness.add("flaredb", move || {
        let ok = probe.get().is_some();
        async move { if ok { Ok(()) } else { Err("waiting for flaredb".to_owned()) } }
    });
    let admin = ctx.start_admin(config.admin_listen, axum::Router::new()).await?;
    let Some(iam) = connect(&config, &ctx.shutdown).await? else { return Ok(()) };
    for path in iam.bootstrap(ctx.data_dir().path()).await? {
        println!("iam: first start; a generated secret is in {} (mode 0600)", path.display());
    }
    // Ready only once bootstrapped: whoever waits for /readyz may then read the key files.
    let _ = connected.set(iam.clone());
    tokio::spawn(iam.clone().duties(ctx.shutdown.clone()));
    tracing::info!(api = %config.listen, admin = %admin.local_addr, "iam ready");
    ultracloud_tls::serve::serve_api(&ctx, listener, api::router(iam.clone()), tls.as_ref()).await?;
    iam.stop();
    let _ = admin.task.await;
    Ok(())
}
