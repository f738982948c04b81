//! Authentication: token issuance (password, API key, refresh token), logout, whoami, JWKS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use ultracloud_runtime::error::{ApiError, ApiJson};

use super::{Caller, db_error};
use crate::api::{LogoutRequest, TokenRequest};
use crate::credential::{self, Kind};
use crate::jwt::{Claims, Jwks};
use crate::password;
use crate::policy::Binding;
use crate::service::model::{Revocation, Revoked};
use crate::service::{Iam, Issued, now_secs};

fn throttled(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let mut r = ApiError::new(
        http::StatusCode::TOO_MANY_REQUESTS,
        "throttled",
        format!("too many failed logins; retry in {secs} s"),
    )
    .into_response();
    r.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
    r
}

/// An argon2id hash of nothing anyone knows: unknown users cost the same time as known ones,
/// so timing does not reveal which names exist.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Who a valid credential authenticates: subject, home tenant, API key.
struct Authenticated {
    subject: String,
    tenant: Option<String>,
    akid: Option<String>,
}

fn failed(what: &str) -> ApiError {
    ApiError::unauthenticated(format!("wrong {what}"))
}

async fn check_password(iam: &Iam, username: &str, pw: &str) -> Result<Authenticated, ApiError> {
    let user = iam.store.user(username).await.map_err(db_error)?;
    let ok = match &user {
        Some(u) => password::verify(pw, &u.password_hash) && !u.disabled,
        None => {
            password::verify(pw, DUMMY_HASH);
            false
        }
    };
    match user.filter(|_| ok) {
        Some(u) => Ok(Authenticated { subject: format!("user:{}", u.id), tenant: u.tenant, akid: None }),
        None => Err(failed("user name or password")),
    }
}

async fn check_api_key(iam: &Iam, key: &str) -> Result<Authenticated, ApiError> {
    let (id, secret) = credential::parse(Kind::ApiKey, key).ok_or_else(|| failed("API key"))?;
    let record = iam.store.api_key(id).await.map_err(db_error)?.ok_or_else(|| failed("API key"))?;
    if !credential::matches(secret, &record.hash) {
        return Err(failed("API key"));
    }
    if record.expires.is_some_and(|e| e <= now_secs()) {
        return Err(ApiError::unauthenticated("API key expired"));
    }
    Ok(Authenticated { subject: record.owner, tenant: record.tenant, akid: Some(record.id) })
}

/// Whether the subject behind a refresh token may still get tokens.
async fn still_valid(iam: &Iam, subject: &str, akid: Option<&str>) -> Result<bool, ApiError> {
    if let Some(k) = akid
        && iam.store.api_key(k).await.map_err(db_error)?.is_none()
    {
        return Ok(false);
    }
    Ok(match subject.split_once(':') {
        Some(("user", id)) => iam.store.user(id).await.map_err(db_error)?.is_some_and(|u| !u.disabled),
        Some(("sa", id)) => iam.store.service_account(id).await.map_err(db_error)?.is_some(),
        _ => false,
    })
}

async fn check_refresh(iam: &Iam, token: &str) -> Result<Authenticated, ApiError> {
    let (id, secret) = credential::parse(Kind::Refresh, token).ok_or_else(|| failed("refresh token"))?;
    // Taking it (atomically, and only with the right secret) makes it single-use even under
    // concurrent presentation.
    let record = iam
        .store
        .take_refresh(id, |r| credential::matches(secret, &r.hash))
        .await
        .map_err(db_error)?
        .ok_or_else(|| failed("refresh token"))?;
    if record.expires <= now_secs() {
        return Err(ApiError::unauthenticated("refresh token expired; log in again"));
    }
    if !still_valid(iam, &record.subject, record.akid.as_deref()).await? {
        return Err(ApiError::unauthenticated("the session's user, service account or API key is gone or disabled"));
    }
    Ok(Authenticated { subject: record.subject, tenant: record.tenant, akid: record.akid })
}

pub(super) async fn token(
    State(iam): State<Arc<Iam>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Response, ApiError> {
    let now = Instant::now();
    // By principal *and* source, so that a guesser locks only itself out, not the user (the
    // admin above all) everywhere; the source key also bounds one source guessing many users.
    let source = peer.ip();
    let principal_key = match &req {
        TokenRequest::Password { username, .. } => Some(format!("user:{username}@{source}")),
        TokenRequest::ApiKey { api_key } => {
            credential::parse(Kind::ApiKey, api_key).map(|(id, _)| format!("key:{id}@{source}"))
        }
        TokenRequest::RefreshToken { .. } => None,
    };
    let source_key = format!("source:{source}");
    for key in principal_key.iter().chain([&source_key]) {
        if let Some(wait) = iam.throttle.locked(key, now) {
            return Ok(throttled(wait));
        }
    }
    let result = match &req {
        TokenRequest::Password { username, password } => check_password(&iam, username, password).await,
        TokenRequest::ApiKey { api_key } => check_api_key(&iam, api_key).await,
        TokenRequest::RefreshToken { refresh_token } => check_refresh(&iam, refresh_token).await,
    };
    let who = match result {
        Ok(who) => who,
        Err(e) if e.status == http::StatusCode::UNAUTHORIZED => {
            for key in principal_key.iter().chain([&source_key]) {
                iam.throttle.failed(key, now);
            }
            // The request's Debug form names the user (never a secret).
            tracing::info!(request = ?req, source = %peer.ip(), "failed login");
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if let Some(k) = &principal_key {
        iam.throttle.succeeded(k);
    }
    let issued: Issued = iam
        .issue(&who.subject, who.tenant, who.akid)
        .await
        .map_err(|e| ApiError::internal(&*e as &(dyn std::error::Error + 'static)))?;
    Ok(Json(issued).into_response())
}

pub(super) async fn logout(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<http::StatusCode, ApiError> {
    // The body is optional.
    let req: LogoutRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LogoutRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("logout request: {e}")))?
    };
    // Only the caller's own refresh token, with its secret, is ended; anyone else's is left be.
    if let Some(rt) = &req.refresh_token
        && let Some((id, secret)) = credential::parse(Kind::Refresh, rt)
    {
        let own = |r: &crate::service::RefreshRecord| credential::matches(secret, &r.hash) && r.subject == caller.0.sub;
        iam.store.take_refresh(id, own).await.map_err(db_error)?;
    }
    let r = Revocation { what: Revoked::Token(caller.0.jti.clone()), before: u64::MAX, expires: caller.0.exp };
    iam.store.revoke(&r).await.map_err(db_error)?;
    iam.changed().await;
    Ok(http::StatusCode::NO_CONTENT)
}

/// `GET /v1/auth/whoami`.
#[derive(Debug, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The token's claims.
    pub claims: Claims,
    /// The caller's bindings.
    pub bindings: Vec<Binding>,
}

pub(super) async fn whoami(State(iam): State<Arc<Iam>>, caller: Caller) -> Result<Json<WhoAmI>, ApiError> {
    let policy = iam.authz.policy(&caller.0.sub).await?;
    Ok(Json(WhoAmI { claims: caller.0, bindings: policy.bindings.clone() }))
}

pub(super) async fn jwks(State(iam): State<Arc<Iam>>) -> Result<Json<Jwks>, ApiError> {
    // From the database, not this replica's copy: a key another replica just rotated in is
    // published at once.
    use crate::authz::PolicySource;
    iam.authz.source().jwks().await.map(Json).map_err(|e| {
        tracing::error!(error = %e, "reading the key ring failed");
        ApiError::unavailable("the database is unavailable; retry")
    })
}
