//! The guard every UltraCloud service puts in front of its API.
//!
//! ```text
//! let guard = Guard::connect(GuardConfig { endpoints, api_key })?;   // the service's own key
//! Router::new()
//!     .route("/v1/tenants/{tenant}/projects/{project}/vms", post(create_vm))
//!     .route_layer(guard.require("compute.vm.create"))
//! ```
//!
//! [`Guard::require`] is a tower layer that verifies the bearer token offline against a cached
//! JWKS, refuses revoked tokens, takes the request's scope from its path alone (parameters
//! `tenant` and `project`; a path without them addresses the platform, system scope — never a
//! header, never the caller's home tenant), checks the action against the subject's cached
//! policy, and answers 401/403/503 with the platform's JSON error. [`Guard::require_node`] is
//! the node authorizer of agent routes: a platform action, and a caller holding a node's
//! credential may only name its own node in the path's `host`. Handlers then read the [`Principal`]. Caches follow iam's
//! authorization version through a long poll (`GET /v1/watch`), so changes arrive within one
//! round trip. The guard talks to iam with the service's own service-account token
//! ([`TokenSource`]), which is also what the service uses for calls to other services.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use ultracloud_runtime::error::ApiError;
use ultracloud_tls::replicas::{Call, Client, ClientError, Credentials, TokenFuture};

use crate::api::{Issued, Revocation, Revocations, WatchAnswer};
use crate::authz::{AuthError, Authorizer, PolicySource, SubjectPolicy};
use crate::jwt::{Claims, Jwks};
use crate::policy::{Decision, Scope};

/// The bearer token of a request, or 401.
pub fn bearer(headers: &http::HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthenticated("missing Authorization: Bearer <token>"))?;
    header.strip_prefix("Bearer ").ok_or_else(|| ApiError::unauthenticated("Authorization must be a Bearer token"))
}

/// Where iam is and who the service is.
#[derive(Clone)]
pub struct GuardConfig {
    /// iam replicas, as `http://host:port` (tried in turn).
    pub endpoints: Vec<String>,
    /// The service's service-account API key (`ucak_…`).
    pub api_key: String,
}

impl std::fmt::Debug for GuardConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardConfig").field("endpoints", &self.endpoints).finish_non_exhaustive()
    }
}

/// A service account's access token, fetched with its API key and renewed before it expires;
/// the [`Credentials`] of every client the service makes for calls to other services.
#[derive(Debug)]
pub struct TokenSource {
    iam: Client,
    api_key: String,
    cached: Mutex<Option<(String, Instant)>>,
}

impl TokenSource {
    /// A token source on its own (for agents that call services but serve no guarded API).
    pub fn new(iam_endpoints: Vec<String>, api_key: String) -> Result<Arc<Self>, String> {
        let iam = Client::new("iam", &iam_endpoints).map_err(|e| e.to_string())?.with_timeout(CALL_TIMEOUT);
        Ok(Arc::new(Self { iam, api_key, cached: Mutex::default() }))
    }

    /// A bearer token for calls to iam or other services.
    pub async fn token(&self) -> Result<String, String> {
        if let Some((t, renew_at)) = &*self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
            && Instant::now() < *renew_at
        {
            return Ok(t.clone());
        }
        let body = serde_json::json!({"grant_type": "api_key", "api_key": self.api_key});
        // A grant only issues a token: repeating it is harmless.
        let issued: Issued =
            self.iam.post(&["v1", "auth", "token"]).json(&body).retry_safe().fetch().await.map_err(|e| match e {
                ClientError::Refused { status, message, .. } => {
                    format!("iam refused the service's API key: {message} (HTTP {status})")
                }
                other => other.to_string(),
            })?;
        // Renew at 80% of the lifetime, so a token in use never expires mid-flight.
        let renew_at = Instant::now() + Duration::from_secs(issued.expires_in * 4 / 5);
        *self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((issued.access_token.clone(), renew_at));
        Ok(issued.access_token)
    }

    /// Drops the cached token (after a 401), so the next call fetches a new one.
    pub fn forget(&self) {
        *self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// A client of `service` at `endpoints` that authenticates with this source's tokens.
    pub fn client<S: AsRef<str>>(self: &Arc<Self>, service: &str, endpoints: &[S]) -> Result<Client, ClientError> {
        Ok(Client::new(service, endpoints)?.with_credentials(self.clone()))
    }
}

impl Credentials for TokenSource {
    fn token(&self, renew: bool) -> TokenFuture<'_> {
        if renew {
            self.forget();
        }
        Box::pin(TokenSource::token(self))
    }
}

/// iam's HTTP API as a [`PolicySource`].
#[derive(Debug)]
pub struct HttpSource {
    /// iam, with the service's own token.
    iam: Client,
}

impl HttpSource {
    async fn get<T: DeserializeOwned>(
        &self,
        path: &[&str],
        call: impl FnOnce(Call<'_>) -> Call<'_>,
    ) -> Result<T, String> {
        call(self.iam.get(path)).fetch().await.map_err(|e| format!("/{}: {e}", path.join("/")))
    }
}

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

impl PolicySource for HttpSource {
    async fn jwks(&self) -> Result<Jwks, String> {
        self.get(&[".well-known", "jwks.json"], |c| c).await
    }

    async fn revocations(&self) -> Result<Vec<Revocation>, String> {
        let r: Revocations = self.get(&["v1", "revocations"], |c| c).await?;
        Ok(r.items)
    }

    async fn policy(&self, subject: &str) -> Result<SubjectPolicy, String> {
        self.get(&["v1", "policy", subject], |c| c).await
    }

    async fn next_version(&self, known: u64) -> Result<u64, String> {
        let w: WatchAnswer =
            self.get(&["v1", "watch"], |c| c.query("after", known).timeout(Duration::from_secs(30))).await?;
        Ok(w.version)
    }
}

/// A service's connection to iam: authorizer, token source, background watch.
#[derive(Debug)]
pub struct Guard {
    authz: Arc<Authorizer<HttpSource>>,
    tokens: Arc<TokenSource>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Guard {
    /// Connects lazily (nothing is fetched until the first request) and starts the watch.
    pub fn connect(config: GuardConfig) -> Result<Arc<Self>, String> {
        let tokens = TokenSource::new(config.endpoints, config.api_key)?;
        let iam = tokens.iam.clone().with_credentials(tokens.clone());
        let authz = Authorizer::new(HttpSource { iam });
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(authz.clone().watch(shutdown.clone()));
        Ok(Arc::new(Self { authz, tokens, shutdown }))
    }

    /// The authorizer (for decisions inside handlers, e.g. filtering lists).
    pub fn authorizer(&self) -> &Arc<Authorizer<HttpSource>> {
        &self.authz
    }

    /// The service's own token source, for service-to-service calls.
    pub fn tokens(&self) -> &Arc<TokenSource> {
        &self.tokens
    }

    /// A layer that admits a request only when its caller may do `action` in its scope.
    pub fn require(self: &Arc<Self>, action: &'static str) -> RequireLayer<HttpSource> {
        RequireLayer::new(self.authz.clone(), action)
    }

    /// The layer of an agent route: `action` must be a platform action (system scope; no
    /// tenant role holds one), and a node agent's token may only name its own node in the
    /// path's `host` (Kubernetes' node authorizer). Panics at router build time on a
    /// non-platform action, a programming error no request can cause.
    pub fn require_node(self: &Arc<Self>, action: &'static str) -> RequireLayer<HttpSource> {
        assert!(crate::policy::is_platform_action(action), "agent routes need a platform action, not {action}");
        RequireLayer::for_node(self.authz.clone(), action)
    }
}

/// The authenticated caller of a request and the scope it addressed (set by [`RequireLayer`]).
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's claims.
    pub claims: Claims,
    /// The scope resolved from the request.
    pub scope: Scope,
    policy: Arc<SubjectPolicy>,
}

impl Principal {
    /// The decision for `action` on `scope` (cached policy; no round trip).
    pub fn decide(&self, action: &str, scope: &Scope) -> Decision {
        self.policy.decide(action, scope)
    }

    /// Whether `action` on `scope` is allowed.
    pub fn may(&self, action: &str, scope: &Scope) -> bool {
        self.decide(action, scope).allowed
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            tracing::error!("a handler reads the Principal on a route without Guard::require");
            ApiError::new(http::StatusCode::INTERNAL_SERVER_ERROR, "internal", "route is not guarded")
        })
    }
}

/// The scope a request addresses, from its path alone: `tenant` and `project` parameters, or
/// the platform (system scope) when the path names no tenant. Headers and the caller's home
/// tenant never choose a scope: a tenant-scoped route names its tenant in the path.
pub fn resolve_scope(path: &[(String, String)]) -> Scope {
    let param = |name: &str| path.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    match (param("tenant"), param("project")) {
        (Some(tenant), Some(project)) => Scope::Project { tenant, project },
        (Some(tenant), None) => Scope::Tenant { tenant },
        (None, _) => Scope::System,
    }
}

/// The node authorizer: a token bound to a node (a node agent's) may address only that node
/// in the path's `host` parameter; tokens bound to no node (platform services, operators)
/// are left to their roles.
pub fn check_node(path: &[(String, String)], claims: &Claims) -> Result<(), ApiError> {
    let Some(node) = &claims.node else { return Ok(()) };
    match path.iter().find(|(k, _)| k == "host") {
        Some((_, host)) if host != node => {
            Err(ApiError::forbidden(format!("the credential of node {node} may not act for host {host}")))
        }
        _ => Ok(()),
    }
}

/// Authenticates and authorizes one request; the [`Principal`] on success. With `node`, the
/// node authorizer applies too (see [`check_node`]).
pub async fn admit<S: PolicySource>(
    authz: &Authorizer<S>,
    action: &str,
    node: bool,
    parts: &mut Parts,
) -> Result<Principal, ApiError> {
    let claims = authz.authenticate(bearer(&parts.headers)?).await?;
    let path: Vec<(String, String)> = match RawPathParams::from_request_parts(parts, &()).await {
        Ok(p) => p.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        Err(_) => Vec::new(),
    };
    let scope = resolve_scope(&path);
    let policy = authz.policy(&claims.sub).await?;
    let d = policy.decide(action, &scope);
    if !d.allowed {
        return Err(AuthError::Forbidden(d.reason).into());
    }
    if node {
        check_node(&path, &claims)?;
    }
    Ok(Principal { claims, scope, policy })
}

/// See [`Guard::require`].
pub struct RequireLayer<S> {
    authz: Arc<Authorizer<S>>,
    action: &'static str,
    node: bool,
}

impl<S> Clone for RequireLayer<S> {
    fn clone(&self) -> Self {
        Self { authz: self.authz.clone(), action: self.action, node: self.node }
    }
}

impl<S> RequireLayer<S> {
    /// A layer over any authorizer (iam itself, tests).
    pub fn new(authz: Arc<Authorizer<S>>, action: &'static str) -> Self {
        Self { authz, action, node: false }
    }

    /// The same layer with the node authorizer (see [`Guard::require_node`]).
    pub fn for_node(authz: Arc<Authorizer<S>>, action: &'static str) -> Self {
        Self { authz, action, node: true }
    }
}

impl<S, I> tower::Layer<I> for RequireLayer<S> {
    type Service = RequireService<S, I>;

    fn layer(&self, inner: I) -> Self::Service {
        RequireService { authz: self.authz.clone(), action: self.action, node: self.node, inner }
    }
}

/// See [`Guard::require`].
pub struct RequireService<S, I> {
    authz: Arc<Authorizer<S>>,
    action: &'static str,
    node: bool,
    inner: I,
}

impl<S, I: Clone> Clone for RequireService<S, I> {
    fn clone(&self) -> Self {
        Self { authz: self.authz.clone(), action: self.action, node: self.node, inner: self.inner.clone() }
    }
}

impl<S, I> tower::Service<Request> for RequireService<S, I>
where
    S: PolicySource,
    I: tower::Service<Request, Response = Response, Error = std::convert::Infallible> + Clone + Send + 'static,
    I::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, std::convert::Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The clone that was polled ready serves this request; a fresh clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (authz, action, node) = (self.authz.clone(), self.action, self.node);
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            match admit(&authz, action, node, &mut parts).await {
                Ok(principal) => {
                    // Records the request changes are stamped with its subject.
                    let actor = principal.claims.sub.clone();
                    parts.extensions.insert(principal);
                    ultracloud_runtime::actor::scope(actor, inner.call(Request::from_parts(parts, body))).await
                }
                Err(e) => Ok(e.into_response()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(tenant: Option<&str>) -> Claims {
        Claims {
            iss: "i".into(),
            aud: vec![crate::jwt::PLATFORM_AUDIENCE.into()],
            sub: "user:a".into(),
            tenant: tenant.map(str::to_owned),
            iat: 0,
            nbf: 0,
            exp: 1,
            jti: "j".into(),
            akid: None,
            node: None,
        }
    }

    #[test]
    fn scope_comes_from_the_path_alone() {
        let p = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let path = [p("tenant", "acme"), p("project", "web")];
        assert_eq!(resolve_scope(&path), Scope::Project { tenant: "acme".into(), project: "web".into() });
        assert_eq!(resolve_scope(&[p("tenant", "acme")]), Scope::Tenant { tenant: "acme".into() });
        assert_eq!(resolve_scope(&[p("host", "node04")]), Scope::System, "no tenant in the path: the platform");
    }

    #[test]
    fn a_node_token_names_only_its_own_host() {
        let p = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let mut c = claims(None);
        assert!(check_node(&[p("host", "node05")], &c).is_ok(), "tokens of no node are left to their roles");
        c.node = Some("node04".into());
        assert!(check_node(&[p("host", "node04")], &c).is_ok());
        assert_eq!(check_node(&[p("host", "node05")], &c).unwrap_err().status, http::StatusCode::FORBIDDEN);
        assert!(check_node(&[], &c).is_ok(), "a route without a host (the version watch)");
    }
}
