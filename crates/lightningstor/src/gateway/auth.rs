//! Who signed an S3 request: access keys resolved through iam, cached for a few seconds.
//!
//! s3s verifies every signature form itself (header SigV4, presigned URLs, aws-chunked
//! payloads, SigV2, POST policies) and asks for the access key's secret to do it; iam hands it
//! to callers holding `platform.s3_credential.resolve` (the gateway's service account). A
//! resolved key is kept in memory only, for [`CACHE_TTL`], so a deleted key stops working
//! within that time; secrets are never logged (s3s's `SecretKey` is zeroized on drop).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use s3s::S3Result;
use s3s::auth::{S3Auth, SecretKey};
use ultracloud_iam::api::S3Secret;
use ultracloud_tls::replicas::Client;

/// How long a resolved key is trusted without asking iam again.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

/// Most keys cached (a flood of made-up keys cannot grow the cache without bound).
const CACHE_MAX: usize = 10_000;

/// The project a key acts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    /// Tenant.
    pub tenant: String,
    /// Project.
    pub project: String,
    /// The subject that created the key.
    pub subject: String,
    /// The creator may only read in the project now: requests other than reads are refused.
    pub read_only: bool,
}

struct Cached {
    at: Instant,
    secret: SecretKey,
    owner: KeyOwner,
}

/// Resolves access keys through iam.
pub struct IamKeys {
    iam: Client,
    cache: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for IamKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IamKeys").finish_non_exhaustive()
    }
}

impl IamKeys {
    /// Keys resolved with `iam`, a client authenticated as the gateway's service account.
    pub fn new(iam: Client) -> Self {
        Self { iam, cache: Mutex::new(HashMap::new()) }
    }

    fn cached(&self, access_key: &str) -> Option<(SecretKey, KeyOwner)> {
        let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.get(access_key).filter(|c| c.at.elapsed() < CACHE_TTL).map(|c| (c.secret.clone(), c.owner.clone()))
    }

    /// The secret and project of `access_key`, from the cache or iam.
    pub async fn resolve(&self, access_key: &str) -> S3Result<(SecretKey, KeyOwner)> {
        if let Some(hit) = self.cached(access_key) {
            return Ok(hit);
        }
        let answer = self.iam.get(&["v1", "s3-credentials", access_key]).fetch::<S3Secret>().await;
        let found = match answer {
            Ok(found) => found,
            // Unknown, or not an access key's shape at all: the client's key is wrong.
            Err(e) if e.is_not_found() || e.status() == Some(400) => {
                return Err(s3s::s3_error!(InvalidAccessKeyId, "the access key is not known"));
            }
            // Its creator no longer holds a role in the project: the key acts as nobody.
            Err(e) if e.status() == Some(403) => {
                return Err(s3s::s3_error!(
                    AccessDenied,
                    "the access key's creator no longer holds a role in its project"
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot resolve an S3 access key through iam");
                return Err(s3s::s3_error!(ServiceUnavailable, "cannot check the access key now; retry"));
            }
        };
        let secret = SecretKey::from(found.secret_access_key);
        let owner = KeyOwner {
            tenant: found.record.tenant,
            project: found.record.project,
            subject: found.record.owner,
            read_only: found.read_only,
        };
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, c| c.at.elapsed() < CACHE_TTL);
        }
        if cache.len() < CACHE_MAX {
            cache.insert(
                access_key.to_owned(),
                Cached { at: Instant::now(), secret: secret.clone(), owner: owner.clone() },
            );
        }
        Ok((secret, owner))
    }
}

/// [`IamKeys`] as s3s's authentication provider (shared with the S3 handlers, which ask the
/// same cache which project a key acts in).
#[derive(Debug, Clone)]
pub struct KeyAuth(pub std::sync::Arc<IamKeys>);

#[async_trait::async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        Ok(self.0.resolve(access_key).await?.0)
    }
}
