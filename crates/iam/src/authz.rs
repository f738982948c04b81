//! The authorizer: offline token verification and cached authorization decisions, shared by
//! iam itself and by every service through [`crate::guard`].
//!
//! It keeps three caches, all filled from a [`PolicySource`] (iam's database inside iam, iam's
//! HTTP API elsewhere): the JWKS (refreshed at most once a second when a token names an unknown
//! key), the revocation list, and per-subject policies (bindings and the custom roles they
//! name). One number, the authorization *version*, changes with every change that affects a
//! decision; [`Authorizer::watch`] waits for it to change and then drops the caches, so a
//! revocation or a removed binding takes effect everywhere within one watch round trip. A full
//! refresh every [`BACKSTOP`] also covers a missed change.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use ultracloud_runtime::error::ApiError;

use crate::api::{Revocation, Revoked};
use crate::jwt::{Claims, Jwks, TokenError, Verifier};
use crate::policy::{self, Binding, Decision, Role, Scope};

/// How often caches are rebuilt even when no change was seen.
pub const BACKSTOP: Duration = Duration::from_secs(30);

/// Most per-subject policies kept; the cache starts afresh beyond this.
const MAX_POLICIES: usize = 10_000;
/// Most verified tokens remembered; the cache starts afresh beyond this.
const MAX_VERIFIED: usize = 10_000;

/// A subject's effective policy: its bindings and the custom roles they name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectPolicy {
    /// The subject.
    pub subject: String,
    /// Its bindings.
    pub bindings: Vec<Binding>,
    /// The custom roles its bindings name (built-in roles are known everywhere).
    pub roles: Vec<Role>,
}

impl SubjectPolicy {
    /// The decision for `action` on `scope`.
    pub fn decide(&self, action: &str, scope: &Scope) -> Decision {
        let mut roles = policy::builtin_roles();
        roles.extend(self.roles.iter().cloned());
        policy::authorize(&self.subject, action, scope, &self.bindings, &roles)
    }
}

/// Where the authorizer's caches come from.
pub trait PolicySource: Send + Sync + 'static {
    /// The published signing keys.
    fn jwks(&self) -> impl Future<Output = Result<Jwks, String>> + Send;
    /// Every revocation still in force.
    fn revocations(&self) -> impl Future<Output = Result<Vec<Revocation>, String>> + Send;
    /// A subject's policy.
    fn policy(&self, subject: &str) -> impl Future<Output = Result<SubjectPolicy, String>> + Send;
    /// Waits (up to some seconds) for the version to differ from `known`; returns the version.
    fn next_version(&self, known: u64) -> impl Future<Output = Result<u64, String>> + Send;
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No valid credentials: 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated but not allowed: 403.
    #[error("{0}")]
    Forbidden(String),
    /// iam could not be reached to decide: 503.
    #[error("authorization is unavailable: {0}")]
    Unavailable(String),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(m) => ApiError::unauthenticated(m),
            AuthError::Forbidden(m) => ApiError::forbidden(m),
            AuthError::Unavailable(m) => {
                tracing::warn!(error = %m, "authorization source unavailable");
                ApiError::unavailable("authorization is unavailable; retry")
            }
        }
    }
}

#[derive(Default)]
struct RevocationIndex {
    by_what: HashMap<Revoked, u64>,
}

impl RevocationIndex {
    fn new(list: Vec<Revocation>) -> Self {
        let mut by_what = HashMap::new();
        for r in list {
            let before = by_what.entry(r.what).or_insert(r.before);
            *before = (*before).max(r.before);
        }
        Self { by_what }
    }

    fn refuses(&self, c: &Claims) -> Option<&'static str> {
        let older = |what: Revoked| self.by_what.get(&what).is_some_and(|before| c.iat <= *before);
        if older(Revoked::Token(c.jti.clone())) {
            return Some("token has been revoked (logged out)");
        }
        if older(Revoked::Subject(c.sub.clone())) {
            return Some("token has been revoked (its subject was disabled or deleted)");
        }
        if c.akid.as_ref().is_some_and(|k| older(Revoked::ApiKey(k.clone()))) {
            return Some("token has been revoked (its API key was deleted)");
        }
        None
    }
}

#[derive(Default)]
struct Caches {
    loaded: bool,
    verifier: Verifier,
    /// Tokens this verifier has verified, with their claims: a signature is checked once per
    /// token, not once per request (as Kubernetes caches token reviews). Emptied with the key
    /// set; the validity window and revocations are still checked on every request.
    verified: HashMap<String, Claims>,
    revocations: RevocationIndex,
    policies: HashMap<String, Arc<SubjectPolicy>>,
    /// Bumped whenever the caches are dropped, so a policy fetched before that is not kept.
    generation: u64,
}

/// Verifies tokens and decides requests with caches kept current from a [`PolicySource`].
pub struct Authorizer<S> {
    source: S,
    caches: RwLock<Caches>,
    version: watch::Sender<u64>,
    last_jwks_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl<S> std::fmt::Debug for Authorizer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").field("version", &*self.version.borrow()).finish_non_exhaustive()
    }
}

use ultracloud_runtime::clock::now_secs;

impl<S: PolicySource> Authorizer<S> {
    /// An authorizer over `source`; caches load on first use.
    pub fn new(source: S) -> Arc<Self> {
        Arc::new(Self {
            source,
            caches: RwLock::new(Caches::default()),
            version: watch::Sender::new(0),
            last_jwks_fetch: tokio::sync::Mutex::new(None),
        })
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.source
    }

    fn caches(&self) -> std::sync::RwLockReadGuard<'_, Caches> {
        self.caches.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn caches_mut(&self) -> std::sync::RwLockWriteGuard<'_, Caches> {
        self.caches.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The last authorization version seen.
    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// A receiver that sees every new version.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Reloads keys and revocations and drops cached policies.
    pub async fn refresh(&self) -> Result<(), AuthError> {
        let jwks = self.source.jwks().await.map_err(AuthError::Unavailable)?;
        let revocations = self.source.revocations().await.map_err(AuthError::Unavailable)?;
        let mut c = self.caches_mut();
        c.verifier = Verifier::new(&jwks);
        c.verified.clear();
        c.revocations = RevocationIndex::new(revocations);
        c.policies.clear();
        c.generation += 1;
        c.loaded = true;
        Ok(())
    }

    async fn ensure_loaded(&self) -> Result<(), AuthError> {
        if self.caches().loaded { Ok(()) } else { self.refresh().await }
    }

    /// Refetches the JWKS after a token named an unknown key, at most once a second.
    async fn refresh_jwks(&self) -> Result<(), AuthError> {
        let mut last = self.last_jwks_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let jwks = self.source.jwks().await.map_err(AuthError::Unavailable)?;
        let mut c = self.caches_mut();
        c.verifier = Verifier::new(&jwks);
        c.verified.clear();
        Ok(())
    }

    /// The claims of a valid, unrevoked bearer token.
    pub async fn authenticate(&self, token: &str) -> Result<Claims, AuthError> {
        self.ensure_loaded().await?;
        let now = now_secs();
        let cached = self.caches().verified.get(token).cloned();
        let claims = match cached {
            Some(claims) => {
                claims.valid_at(now).map_err(|e| AuthError::Unauthenticated(e.to_string()))?;
                claims
            }
            None => self.verify(token, now).await?,
        };
        if let Some(why) = self.caches().revocations.refuses(&claims) {
            return Err(AuthError::Unauthenticated(why.into()));
        }
        Ok(claims)
    }

    /// Checks a token's signature and claims, remembering the claims of a good one.
    async fn verify(&self, token: &str, now: u64) -> Result<Claims, AuthError> {
        let first = self.caches().verifier.verify(token, now);
        let verified = match first {
            Err(TokenError::UnknownKey(_)) => {
                // A key created since the JWKS was fetched (rotation on another replica).
                self.refresh_jwks().await?;
                self.caches().verifier.verify(token, now)
            }
            other => other,
        }
        .map_err(|e| AuthError::Unauthenticated(e.to_string()))?;
        let mut c = self.caches_mut();
        if c.verified.len() >= MAX_VERIFIED {
            c.verified.clear();
        }
        c.verified.insert(token.to_owned(), verified.clone());
        Ok(verified)
    }

    /// A subject's policy, from the cache or the source.
    pub async fn policy(&self, subject: &str) -> Result<Arc<SubjectPolicy>, AuthError> {
        let generation = {
            let c = self.caches();
            if let Some(p) = c.policies.get(subject) {
                return Ok(p.clone());
            }
            c.generation
        };
        let p = Arc::new(self.source.policy(subject).await.map_err(AuthError::Unavailable)?);
        let mut c = self.caches_mut();
        if c.generation == generation {
            if c.policies.len() >= MAX_POLICIES {
                c.policies.clear();
            }
            c.policies.insert(subject.to_owned(), p.clone());
        }
        Ok(p)
    }

    /// The decision for `claims`' subject doing `action` on `scope`.
    pub async fn decide(&self, claims: &Claims, action: &str, scope: &Scope) -> Result<Decision, AuthError> {
        Ok(self.policy(&claims.sub).await?.decide(action, scope))
    }

    /// `Ok` when allowed, else [`AuthError::Forbidden`] with the reason.
    pub async fn require(&self, claims: &Claims, action: &str, scope: &Scope) -> Result<(), AuthError> {
        let d = self.decide(claims, action, scope).await?;
        if d.allowed { Ok(()) } else { Err(AuthError::Forbidden(d.reason)) }
    }

    /// Keeps the caches current until `shutdown`: waits for version changes (and refreshes
    /// every [`BACKSTOP`] regardless).
    pub async fn watch(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let mut last_refresh = Instant::now();
        loop {
            let known = self.version();
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                v = self.source.next_version(known) => v,
            };
            let changed = match next {
                Ok(v) if v != known => Some(v),
                Ok(_) => None,
                Err(e) => {
                    tracing::debug!(error = %e, "authorization version watch failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            };
            if changed.is_some() || last_refresh.elapsed() >= BACKSTOP {
                match self.refresh().await {
                    Ok(()) => {
                        last_refresh = Instant::now();
                        if let Some(v) = changed {
                            self.version.send_replace(v);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "authorization refresh failed; retrying"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::jwt::KeyRing;

    /// A source held in memory (unit tests only).
    #[derive(Default)]
    struct Memory {
        ring: Mutex<KeyRing>,
        revocations: Mutex<Vec<Revocation>>,
        bindings: Mutex<Vec<Binding>>,
        fetches: Mutex<u32>,
    }

    impl PolicySource for Arc<Memory> {
        async fn jwks(&self) -> Result<Jwks, String> {
            Ok(self.ring.lock().unwrap().jwks())
        }
        async fn revocations(&self) -> Result<Vec<Revocation>, String> {
            Ok(self.revocations.lock().unwrap().clone())
        }
        async fn policy(&self, subject: &str) -> Result<SubjectPolicy, String> {
            *self.fetches.lock().unwrap() += 1;
            let bindings = self.bindings.lock().unwrap().iter().filter(|b| b.subject == subject).cloned().collect();
            Ok(SubjectPolicy { subject: subject.into(), bindings, roles: vec![] })
        }
        async fn next_version(&self, known: u64) -> Result<u64, String> {
            Ok(known)
        }
    }

    fn claims(jti: &str) -> Claims {
        let now = now_secs();
        Claims {
            iss: "iam".into(),
            aud: vec![crate::jwt::PLATFORM_AUDIENCE.into()],
            sub: "user:a".into(),
            tenant: None,
            iat: now,
            nbf: now,
            exp: now + 60,
            jti: jti.into(),
            akid: None,
            node: None,
        }
    }

    #[tokio::test]
    async fn verifies_caches_and_honours_revocations_after_refresh() {
        let mem = Arc::new(Memory::default());
        mem.ring.lock().unwrap().rotate(now_secs(), 60);
        mem.bindings.lock().unwrap().push(Binding {
            subject: "user:a".into(),
            role: "viewer".into(),
            scope: Scope::Tenant { tenant: "acme".into() },
        });
        let authz = Authorizer::new(mem.clone());
        let token = mem.ring.lock().unwrap().sign(&claims("j1")).unwrap();
        let c = authz.authenticate(&token).await.unwrap();
        let scope = Scope::Project { tenant: "acme".into(), project: "p".into() };
        assert!(authz.decide(&c, "compute.vm.read", &scope).await.unwrap().allowed);
        assert!(matches!(authz.require(&c, "compute.vm.create", &scope).await, Err(AuthError::Forbidden(_))));
        assert_eq!(*mem.fetches.lock().unwrap(), 1, "the policy is fetched once and cached");

        // A revocation is honoured once the caches are refreshed.
        mem.revocations.lock().unwrap().push(Revocation {
            what: Revoked::Token("j1".into()),
            before: u64::MAX,
            expires: u64::MAX,
        });
        assert!(authz.authenticate(&token).await.is_ok(), "not yet seen");
        authz.refresh().await.unwrap();
        assert!(
            matches!(authz.authenticate(&token).await, Err(AuthError::Unauthenticated(m)) if m.contains("revoked"))
        );

        // A key rotated in after the JWKS was cached is fetched on demand.
        mem.ring.lock().unwrap().rotate(now_secs(), 60);
        let newer = mem.ring.lock().unwrap().sign(&claims("j2")).unwrap();
        assert!(authz.authenticate(&newer).await.is_ok());
    }

    #[tokio::test]
    async fn a_remembered_token_is_checked_for_expiry_and_forgotten_with_its_key() {
        let mem = Arc::new(Memory::default());
        mem.ring.lock().unwrap().rotate(now_secs(), 60);
        let authz = Authorizer::new(mem.clone());
        let token = mem.ring.lock().unwrap().sign(&claims("j1")).unwrap();
        assert!(authz.authenticate(&token).await.is_ok());
        assert!(authz.authenticate(&token).await.is_ok(), "again, from the cache");
        let mut tampered = token.clone();
        let last = if tampered.ends_with('A') { "B" } else { "A" };
        tampered.replace_range(tampered.len() - 1.., last);
        assert!(authz.authenticate(&tampered).await.is_err(), "another string is verified afresh");
        let mut stale = claims("j2");
        stale.exp = now_secs() + 1;
        let short = mem.ring.lock().unwrap().sign(&stale).unwrap();
        assert!(authz.authenticate(&short).await.is_ok());
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let expired = authz.authenticate(&short).await.unwrap_err();
        assert!(matches!(&expired, AuthError::Unauthenticated(m) if m.contains("expired")), "{expired:?}");

        // Keys replaced (every old one retired): what they signed is no longer good.
        mem.ring.lock().unwrap().rotate(now_secs(), 0);
        authz.refresh().await.unwrap();
        let gone = authz.authenticate(&token).await.unwrap_err();
        assert!(matches!(&gone, AuthError::Unauthenticated(m) if m.contains("unknown key")), "{gone:?}");
    }
}
