//! Users, service accounts and API keys.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use ultracloud_runtime::error::{ApiError, ApiJson};

use super::{Caller, ListQuery, db_error, home_scope, valid_id};
use crate::api::{NewKey, NewUser, UserPatch};
use crate::credential::{self, Kind};
use crate::password;
use crate::service::model::{ApiKey, ApiKeyView, Revocation, Revoked, ServiceAccount, User, UserView};
use crate::service::store::Page;
use crate::service::{Iam, now_secs};

fn internal(e: impl std::error::Error + 'static) -> ApiError {
    ApiError::internal(&e)
}

/// Refuses every token of `subject` issued until now and drops its sessions' bindings cache.
async fn revoke_subject(iam: &Iam, subject: &str) -> Result<(), ApiError> {
    // Refresh tokens first: a session must not outlive the credential it was started with.
    iam.store.delete_refresh_of(subject).await.map_err(db_error)?;
    let now = now_secs();
    let r = Revocation {
        what: Revoked::Subject(subject.to_owned()),
        before: now,
        expires: now + iam.config.token_lifetime_secs + 1,
    };
    iam.store.revoke(&r).await.map_err(db_error)?;
    iam.changed().await;
    Ok(())
}

/// Deletes every API key of `owner`, revoking their tokens.
async fn delete_keys_of(iam: &Iam, owner: &str) -> Result<(), ApiError> {
    for k in iam.store.api_keys().await.map_err(db_error)?.iter().filter(|k| k.owner == owner) {
        iam.store.delete_api_key(&k.id).await.map_err(db_error)?;
    }
    Ok(())
}

fn check_password_rules(pw: &str) -> Result<(), ApiError> {
    if pw.chars().count() < 12 {
        return Err(ApiError::invalid("password: at least 12 characters"));
    }
    Ok(())
}

async fn require_tenant(iam: &Iam, tenant: Option<&String>) -> Result<(), ApiError> {
    if let Some(t) = tenant
        && iam.store.tenant(t).await.map_err(db_error)?.is_none()
    {
        return Err(ApiError::not_found(format!("tenant {t:?} not found")));
    }
    Ok(())
}

pub(super) async fn create_user(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    ApiJson(u): ApiJson<NewUser>,
) -> Result<Response, ApiError> {
    valid_id("user name", &u.name)?;
    check_password_rules(&u.password)?;
    caller.require(&iam, "iam.user.create", &home_scope(u.tenant.as_ref())).await?;
    require_tenant(&iam, u.tenant.as_ref()).await?;
    let hash = password::hash(&u.password, iam.cost).map_err(internal)?;
    let user = User { id: u.name, tenant: u.tenant, password_hash: hash, disabled: false };
    if !iam.store.create_user(&user).await.map_err(db_error)? {
        return Err(ApiError::conflict(format!("user {:?} exists", user.id)));
    }
    Ok((http::StatusCode::CREATED, Json(UserView::from(&user))).into_response())
}

/// A user the caller may do `action` on, or 403/404 (403 first: no probing for names).
async fn user_for(iam: &Iam, caller: &Caller, id: &str, action: &str) -> Result<User, ApiError> {
    let user = iam.store.user(id).await.map_err(db_error)?;
    let scope = home_scope(user.as_ref().and_then(|u| u.tenant.as_ref()));
    let is_self = caller.0.sub == format!("user:{id}");
    // A user may read itself; anything else needs the action on the user's home tenant.
    if !(is_self && action == "iam.user.read") {
        caller.require(iam, action, &scope).await?;
    }
    user.ok_or_else(|| ApiError::not_found(format!("user {id:?} not found")))
}

pub(super) async fn get_user(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(UserView::from(&user_for(&iam, &caller, &id, "iam.user.read").await?)))
}

pub(super) async fn list_users(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<UserView>>, ApiError> {
    let page = iam.store.users(q.page_token.as_deref(), q.limit()?).await.map_err(db_error)?;
    let mut items = Vec::new();
    for u in &page.items {
        if caller.may(&iam, "iam.user.list", &home_scope(u.tenant.as_ref())).await? {
            items.push(UserView::from(u));
        }
    }
    Ok(Json(Page { items, next_page_token: page.next_page_token }))
}

pub(super) async fn update_user(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> Result<Json<UserView>, ApiError> {
    let is_self = caller.0.sub == format!("user:{id}");
    if is_self && patch.disabled == Some(true) {
        return Err(ApiError::invalid("you cannot disable yourself; ask another administrator"));
    }
    // Users change their own password; everything else is an administrator's.
    let action = if is_self && patch.disabled.is_none() { "iam.user.read" } else { "iam.user.update" };
    let mut user = user_for(&iam, &caller, &id, action).await?;
    let mut revoke = false;
    if let Some(pw) = &patch.password {
        check_password_rules(pw)?;
        user.password_hash = password::hash(pw, iam.cost).map_err(internal)?;
        revoke = true;
    }
    if let Some(d) = patch.disabled {
        if id == "admin" && d {
            return Err(ApiError::invalid("the bootstrap admin cannot be disabled"));
        }
        revoke |= d && !user.disabled;
        user.disabled = d;
    }
    iam.store.put_user(&user).await.map_err(db_error)?;
    if revoke {
        revoke_subject(&iam, &format!("user:{id}")).await?;
    }
    Ok(Json(UserView::from(&user)))
}

pub(super) async fn delete_user(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<http::StatusCode, ApiError> {
    if id == "admin" {
        return Err(ApiError::invalid("the bootstrap admin cannot be deleted"));
    }
    user_for(&iam, &caller, &id, "iam.user.delete").await?;
    let subject = format!("user:{id}");
    delete_keys_of(&iam, &subject).await?;
    iam.store.unbind_all(&subject).await.map_err(db_error)?;
    iam.store.delete_user(&id).await.map_err(db_error)?;
    revoke_subject(&iam, &subject).await?;
    Ok(http::StatusCode::NO_CONTENT)
}

pub(super) async fn create_sa(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    ApiJson(sa): ApiJson<ServiceAccount>,
) -> Result<Response, ApiError> {
    valid_id("service account id", &sa.id)?;
    if let Some(node) = &sa.node {
        valid_id("node", node)?;
        if sa.tenant.is_some() {
            return Err(ApiError::invalid("node: only a platform service account (no tenant) is bound to a node"));
        }
    }
    caller.require(&iam, "iam.service_account.create", &home_scope(sa.tenant.as_ref())).await?;
    require_tenant(&iam, sa.tenant.as_ref()).await?;
    if !iam.store.create_service_account(&sa).await.map_err(db_error)? {
        return Err(ApiError::conflict(format!("service account {:?} exists", sa.id)));
    }
    Ok((http::StatusCode::CREATED, Json(sa)).into_response())
}

async fn sa_for(iam: &Iam, caller: &Caller, id: &str, action: &str) -> Result<ServiceAccount, ApiError> {
    let sa = iam.store.service_account(id).await.map_err(db_error)?;
    if caller.0.sub != format!("sa:{id}") || action != "iam.service_account.read" {
        caller.require(iam, action, &home_scope(sa.as_ref().and_then(|s| s.tenant.as_ref()))).await?;
    }
    sa.ok_or_else(|| ApiError::not_found(format!("service account {id:?} not found")))
}

pub(super) async fn get_sa(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ServiceAccount>, ApiError> {
    sa_for(&iam, &caller, &id, "iam.service_account.read").await.map(Json)
}

pub(super) async fn list_sas(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<ServiceAccount>>, ApiError> {
    let mut page = iam.store.service_accounts(q.page_token.as_deref(), q.limit()?).await.map_err(db_error)?;
    let mut items = Vec::new();
    for sa in page.items {
        if caller.may(&iam, "iam.service_account.list", &home_scope(sa.tenant.as_ref())).await? {
            items.push(sa);
        }
    }
    page.items = items;
    Ok(Json(page))
}

pub(super) async fn delete_sa(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<http::StatusCode, ApiError> {
    if id == "platform" {
        return Err(ApiError::invalid("the platform service account cannot be deleted (delete and recreate its keys)"));
    }
    sa_for(&iam, &caller, &id, "iam.service_account.delete").await?;
    let subject = format!("sa:{id}");
    delete_keys_of(&iam, &subject).await?;
    iam.store.unbind_all(&subject).await.map_err(db_error)?;
    iam.store.delete_service_account(&id).await.map_err(db_error)?;
    revoke_subject(&iam, &subject).await?;
    Ok(http::StatusCode::NO_CONTENT)
}

/// A new API key: the only time the key is shown.
#[derive(Serialize, Deserialize)]
pub struct CreatedKey {
    /// The stored record.
    #[serde(flatten)]
    pub record: ApiKeyView,
    /// The key. Store it now: it is never shown again.
    pub api_key: String,
}

/// The owner's home tenant, once the caller may manage its keys (itself, or with `action`).
async fn key_owner_scope(iam: &Iam, caller: &Caller, owner: &str, action: &str) -> Result<Option<String>, ApiError> {
    let tenant = match owner.split_once(':') {
        Some(("user", id)) => iam.store.user(id).await.map_err(db_error)?.map(|u| u.tenant),
        Some(("sa", id)) => iam.store.service_account(id).await.map_err(db_error)?.map(|s| s.tenant),
        _ => return Err(ApiError::invalid(format!("owner {owner:?}: use user:<id> or sa:<id>"))),
    };
    if caller.0.sub != owner {
        caller.require(iam, action, &home_scope(tenant.as_ref().and_then(Option::as_ref))).await?;
    }
    tenant.ok_or_else(|| ApiError::not_found(format!("{owner} not found")))
}

pub(super) async fn create_key(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    ApiJson(req): ApiJson<NewKey>,
) -> Result<Response, ApiError> {
    let owner = req.owner.clone().unwrap_or_else(|| caller.0.sub.clone());
    let tenant = key_owner_scope(&iam, &caller, &owner, "iam.api_key.create").await?;
    if req.expires_in == Some(0) {
        return Err(ApiError::invalid("expires_in: at least 1 second"));
    }
    let minted = credential::mint(Kind::ApiKey);
    let now = now_secs();
    let record = ApiKey {
        id: minted.id.clone(),
        owner,
        tenant,
        hash: minted.hash.clone(),
        created: now,
        expires: req.expires_in.map(|s| now.saturating_add(s)),
        description: req.description,
    };
    if !iam.store.create_api_key(&record).await.map_err(db_error)? {
        return Err(ApiError::conflict("API key ID collision; retry"));
    }
    let body = CreatedKey { record: ApiKeyView::from(&record), api_key: minted.token };
    Ok((http::StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/api-keys?owner=`.
#[derive(Debug, Deserialize)]
pub(super) struct KeyQuery {
    /// Whose keys; default: the caller's.
    owner: Option<String>,
}

pub(super) async fn list_keys(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Query(q): Query<KeyQuery>,
) -> Result<Json<Page<ApiKeyView>>, ApiError> {
    let owner = q.owner.unwrap_or_else(|| caller.0.sub.clone());
    key_owner_scope(&iam, &caller, &owner, "iam.api_key.list").await?;
    let keys = iam.store.api_keys().await.map_err(db_error)?;
    let items = keys.iter().filter(|k| k.owner == owner).map(ApiKeyView::from).collect();
    Ok(Json(Page { items, next_page_token: None }))
}

pub(super) async fn delete_key(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<http::StatusCode, ApiError> {
    let key = iam.store.api_key(&id).await.map_err(db_error)?;
    let Some(key) = key else {
        return Err(ApiError::not_found(format!("API key {id:?} not found")));
    };
    key_owner_scope(&iam, &caller, &key.owner, "iam.api_key.delete").await?;
    iam.store.delete_api_key(&id).await.map_err(db_error)?;
    let now = now_secs();
    let r = Revocation {
        what: Revoked::ApiKey(id),
        before: u64::MAX,
        expires: now + iam.config.refresh_lifetime_secs.max(iam.config.token_lifetime_secs) + 1,
    };
    iam.store.revoke(&r).await.map_err(db_error)?;
    iam.changed().await;
    Ok(http::StatusCode::NO_CONTENT)
}
