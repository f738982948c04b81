//! iam's HTTP API. Every call but token issuance and the JWKS needs a bearer token, and is
//! authorized with the caller's bindings; lists only show what the caller may read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use ultracloud_flaredb::error::FlareError;
use ultracloud_runtime::error::{ApiError, ApiJson};

use super::store::{Project, Tenant, User};
use super::{Iam, now_secs};
use crate::jwt::{Claims, Jwks};
use crate::password;
use crate::policy::{self, Binding, Decision, Scope};

/// The API router.
pub fn router(iam: Arc<Iam>) -> Router {
    Router::new()
        .route("/v1/auth/token", post(token))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/v1/authorize", post(authorize))
        .route("/v1/tenants", post(create_tenant).get(list_tenants))
        .route("/v1/tenants/{tenant}", get(get_tenant))
        .route("/v1/tenants/{tenant}/projects", post(create_project).get(list_projects))
        .route("/v1/users", post(create_user))
        .route("/v1/bindings", post(create_binding))
        .with_state(iam)
}

fn db_error(e: FlareError) -> ApiError {
    tracing::error!(error = %e, "flaredb request failed");
    ApiError::unavailable("the database is unavailable; retry")
}

fn valid_id(field: &str, id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("{field} {id:?}: use 1-63 lowercase letters, digits and dashes")))
    }
}

/// The authenticated caller.
pub struct Caller(pub Claims);

impl FromRequestParts<Arc<Iam>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, iam: &Arc<Iam>) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthenticated("missing Authorization: Bearer <token>"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthenticated("Authorization must be a Bearer token"))?;
        let (_, verifier) = iam.keys();
        match verifier.verify(token, now_secs()) {
            Ok(c) => Ok(Caller(c)),
            // A new key another replica just created: reload once.
            Err(crate::jwt::TokenError::UnknownKey(_)) => {
                iam.reload_keys().await.map_err(db_error)?;
                let (_, verifier) = iam.keys();
                verifier.verify(token, now_secs()).map(Caller).map_err(|e| ApiError::unauthenticated(e.to_string()))
            }
            Err(e) => Err(ApiError::unauthenticated(e.to_string())),
        }
    }
}

impl Caller {
    async fn decide(&self, iam: &Iam, action: &str, scope: &Scope) -> Result<Decision, ApiError> {
        let bindings = iam.store.bindings_of(&self.0.sub).await.map_err(db_error)?;
        Ok(policy::authorize(&self.0.sub, action, scope, &bindings, &policy::builtin_roles()))
    }

    async fn require(&self, iam: &Iam, action: &str, scope: &Scope) -> Result<(), ApiError> {
        let d = self.decide(iam, action, scope).await?;
        if d.allowed { Ok(()) } else { Err(ApiError::forbidden(d.reason)) }
    }
}

/// `POST /v1/auth/token`.
#[derive(Deserialize)]
pub struct TokenRequest {
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest").field("username", &self.username).finish_non_exhaustive()
    }
}

/// An issued token.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The JWT.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

fn throttled(wait: std::time::Duration) -> Response {
    let mut r = ApiError::new(
        http::StatusCode::TOO_MANY_REQUESTS,
        "throttled",
        format!("too many failed logins; retry in {} s", wait.as_secs().max(1)),
    )
    .into_response();
    if let Ok(v) = http::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        r.headers_mut().insert(http::header::RETRY_AFTER, v);
    }
    r
}

async fn token(
    State(iam): State<Arc<Iam>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Response, ApiError> {
    let now = Instant::now();
    let (user_key, source_key) = (format!("user:{}", req.username), format!("source:{}", peer.ip()));
    for key in [&user_key, &source_key] {
        if let Some(wait) = iam.throttle.locked(key, now) {
            return Ok(throttled(wait));
        }
    }
    let user = iam.store.user_by_name(&req.username).await.map_err(db_error)?;
    let ok = match &user {
        Some(u) => !u.disabled && password::verify(&req.password, &u.password_hash),
        // Spend the same time on unknown users, so timing does not reveal which names exist.
        None => {
            password::verify(
                &req.password,
                "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            );
            false
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        iam.throttle.failed(&user_key, now);
        iam.throttle.failed(&source_key, now);
        tracing::info!(username = %req.username, source = %peer.ip(), "failed login");
        return Err(ApiError::unauthenticated("wrong user name or password"));
    };
    iam.throttle.succeeded(&user_key);
    let issued = now_secs();
    let claims = Claims {
        iss: iam.config.issuer.clone(),
        sub: format!("user:{}", user.id),
        tenant: user.tenant.clone(),
        iat: issued,
        nbf: issued,
        exp: issued + iam.config.token_lifetime_secs,
        jti: super::generate_password(),
    };
    let (ring, _) = iam.keys();
    let access_token = ring.sign(&claims).map_err(|e| ApiError::internal(&e))?;
    Ok(Json(TokenResponse { access_token, token_type: "Bearer".into(), expires_in: iam.config.token_lifetime_secs })
        .into_response())
}

async fn jwks(State(iam): State<Arc<Iam>>) -> Json<Jwks> {
    Json(iam.keys().0.jwks())
}

/// `POST /v1/authorize`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    /// The subject (`user:<id>`, `sa:<id>`).
    pub subject: String,
    /// The action (`service.resource.verb`).
    pub action: String,
    /// The resource's scope.
    pub scope: Scope,
}

async fn authorize(
    State(iam): State<Arc<Iam>>,
    _caller: Caller,
    ApiJson(req): ApiJson<AuthorizeRequest>,
) -> Result<Json<Decision>, ApiError> {
    let bindings = iam.store.bindings_of(&req.subject).await.map_err(db_error)?;
    Ok(Json(policy::authorize(&req.subject, &req.action, &req.scope, &bindings, &policy::builtin_roles())))
}

async fn create_tenant(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    ApiJson(t): ApiJson<Tenant>,
) -> Result<Response, ApiError> {
    valid_id("tenant id", &t.id)?;
    caller.require(&iam, "iam.tenant.create", &Scope::System).await?;
    if !iam.store.create_tenant(&t).await.map_err(db_error)? {
        return Err(ApiError::conflict(format!("tenant {:?} exists", t.id)));
    }
    Ok((http::StatusCode::CREATED, Json(t)).into_response())
}

/// A page of a list.
#[derive(Debug, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
}

async fn list_tenants(State(iam): State<Arc<Iam>>, caller: Caller) -> Result<Json<Page<Tenant>>, ApiError> {
    let mut items = Vec::new();
    for t in iam.store.tenants().await.map_err(db_error)? {
        // Only tenants the caller may read: other tenants' names never leak.
        if caller.decide(&iam, "iam.tenant.read", &Scope::Tenant { tenant: t.id.clone() }).await?.allowed {
            items.push(t);
        }
    }
    Ok(Json(Page { items }))
}

async fn get_tenant(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    // Authorize before looking: a denied caller cannot tell whether the tenant exists.
    caller.require(&iam, "iam.tenant.read", &Scope::Tenant { tenant: tenant.clone() }).await?;
    iam.store
        .tenant(&tenant)
        .await
        .map_err(db_error)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("tenant {tenant:?} not found")))
}

/// `POST /v1/tenants/{tenant}/projects`.
#[derive(Debug, Serialize, Deserialize)]
pub struct NewProject {
    /// Project ID.
    pub id: String,
}

async fn create_project(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path(tenant): Path<String>,
    ApiJson(p): ApiJson<NewProject>,
) -> Result<Response, ApiError> {
    valid_id("project id", &p.id)?;
    caller.require(&iam, "iam.project.create", &Scope::Tenant { tenant: tenant.clone() }).await?;
    if iam.store.tenant(&tenant).await.map_err(db_error)?.is_none() {
        return Err(ApiError::not_found(format!("tenant {tenant:?} not found")));
    }
    let project = Project { tenant, id: p.id };
    if !iam.store.create_project(&project).await.map_err(db_error)? {
        return Err(ApiError::conflict(format!("project {:?} exists", project.id)));
    }
    Ok((http::StatusCode::CREATED, Json(project)).into_response())
}

async fn list_projects(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<Page<Project>>, ApiError> {
    let mut items = Vec::new();
    for p in iam.store.projects(&tenant).await.map_err(db_error)? {
        let scope = Scope::Project { tenant: p.tenant.clone(), project: p.id.clone() };
        if caller.decide(&iam, "iam.project.read", &scope).await?.allowed {
            items.push(p);
        }
    }
    Ok(Json(Page { items }))
}

/// `POST /v1/users`.
#[derive(Deserialize)]
pub struct NewUser {
    /// Login name (also the ID).
    pub name: String,
    /// Home tenant.
    pub tenant: Option<String>,
    /// Initial password (at least 12 characters).
    pub password: String,
}

/// A user as the API shows it (never the hash).
#[derive(Debug, Serialize, Deserialize)]
pub struct UserView {
    /// ID.
    pub id: String,
    /// Home tenant.
    pub tenant: Option<String>,
}

async fn create_user(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    ApiJson(u): ApiJson<NewUser>,
) -> Result<Response, ApiError> {
    valid_id("user name", &u.name)?;
    if u.password.chars().count() < 12 {
        return Err(ApiError::invalid("password: at least 12 characters"));
    }
    let scope = match &u.tenant {
        Some(t) => Scope::Tenant { tenant: t.clone() },
        None => Scope::System,
    };
    caller.require(&iam, "iam.user.create", &scope).await?;
    let hash = password::hash(&u.password, iam.cost).map_err(|e| ApiError::internal(&e))?;
    let user = User { id: u.name.clone(), name: u.name, tenant: u.tenant, password_hash: hash, disabled: false };
    if !iam.store.create_user(&user).await.map_err(db_error)? {
        return Err(ApiError::conflict(format!("user {:?} exists", user.name)));
    }
    Ok((http::StatusCode::CREATED, Json(UserView { id: user.id, tenant: user.tenant })).into_response())
}

/// `POST /v1/bindings`.
#[derive(Debug, Serialize, Deserialize)]
pub struct NewBinding {
    /// The binding.
    #[serde(flatten)]
    pub binding: Binding,
}

async fn create_binding(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    ApiJson(b): ApiJson<NewBinding>,
) -> Result<Response, ApiError> {
    let b = b.binding;
    if !policy::builtin_roles().iter().any(|r| r.name == b.role) {
        return Err(ApiError::invalid(format!("role {:?} does not exist", b.role)));
    }
    if b.role == "system-admin" && b.scope != Scope::System {
        return Err(ApiError::invalid("system-admin can only be bound at system scope"));
    }
    caller.require(&iam, "iam.binding.create", &b.scope).await?;
    let id = format!("{}-{}", b.role, scope_key(&b.scope));
    iam.store.bind(&id, &b).await.map_err(db_error)?;
    Ok((http::StatusCode::CREATED, Json(b)).into_response())
}

fn scope_key(s: &Scope) -> String {
    match s {
        Scope::System => "system".into(),
        Scope::Tenant { tenant } => format!("t.{tenant}"),
        Scope::Project { tenant, project } => format!("p.{tenant}.{project}"),
    }
}
