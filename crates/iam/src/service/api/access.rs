//! Roles, bindings, decisions, and what guards in other services read: policies,
//! revocations and the version watch.

use std::sync::Arc;
use std::time::Duration;

pub use crate::api::{Revocations, WatchAnswer};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use ultracloud_runtime::error::{ApiError, ApiJson};

use super::{Caller, ListQuery, db_error, home_scope, valid_id};
use crate::api::AuthorizeRequest;
use crate::authz::SubjectPolicy;
use crate::policy::{self, Binding, Decision, Role, Scope};
use crate::service::source::{VERSION_WAIT, subject_policy};
use crate::service::store::{Page, binding_id};
use crate::service::{Iam, now_secs};

/// Reading someone else's policy or the revocation list is for platform services.
async fn require_policy_reader(iam: &Iam, caller: &Caller, subject: &str) -> Result<(), ApiError> {
    if caller.0.sub == subject {
        return Ok(());
    }
    caller.require(iam, "iam.binding.read", &Scope::System).await
}

pub(super) async fn authorize(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    ApiJson(req): ApiJson<AuthorizeRequest>,
) -> Result<Json<Decision>, ApiError> {
    require_policy_reader(&iam, &caller, &req.subject).await?;
    let policy = iam.authz.policy(&req.subject).await?;
    Ok(Json(policy.decide(&req.action, &req.scope)))
}

/// `GET /v1/permissions`: the catalogue and the built-in roles.
#[derive(Debug, Serialize, Deserialize)]
pub struct Permissions {
    /// Every action.
    pub actions: Vec<String>,
    /// The built-in roles.
    pub roles: Vec<Role>,
}

pub(super) async fn permissions(_caller: Caller) -> Json<Permissions> {
    Json(Permissions { actions: policy::all_actions(), roles: policy::builtin_roles() })
}

pub(super) async fn policy(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path(subject): Path<String>,
) -> Result<Json<SubjectPolicy>, ApiError> {
    require_policy_reader(&iam, &caller, &subject).await?;
    // Straight from the database: a guard asking has just dropped its cache.
    subject_policy(&iam.store, &subject).await.map(Json).map_err(|e| {
        tracing::error!(error = %e, "reading a policy failed");
        ApiError::unavailable("the database is unavailable; retry")
    })
}

pub(super) async fn revocations(State(iam): State<Arc<Iam>>, caller: Caller) -> Result<Json<Revocations>, ApiError> {
    caller.require(&iam, "iam.binding.read", &Scope::System).await?;
    let version = iam.store.version().await.map_err(db_error)?;
    let items = iam.store.revocations(now_secs()).await.map_err(db_error)?;
    Ok(Json(Revocations { version, items }))
}

/// `GET /v1/watch?after=N`.
#[derive(Debug, Deserialize)]
pub(super) struct WatchQuery {
    /// The version the watcher knows.
    #[serde(default)]
    after: u64,
}

pub(super) async fn watch(
    State(iam): State<Arc<Iam>>,
    _caller: Caller,
    Query(q): Query<WatchQuery>,
) -> Json<WatchAnswer> {
    let mut rx = iam.authz.subscribe();
    // Answers when this replica's caches have moved past `after` (so a guard refetching
    // right after sees the change), or after a while with the same number.
    let _ = tokio::time::timeout(VERSION_WAIT.min(Duration::from_secs(15)), rx.wait_for(|v| *v != q.after)).await;
    Json(WatchAnswer { version: *rx.borrow() })
}

fn role_scope(r: &Role) -> Scope {
    home_scope(r.tenant.as_ref())
}

fn check_role(r: &Role) -> Result<(), ApiError> {
    valid_id("role name", &r.name)?;
    if policy::builtin_roles().iter().any(|b| b.name == r.name) {
        return Err(ApiError::invalid(format!("role name {:?} is built in", r.name)));
    }
    if r.permissions.is_empty() {
        return Err(ApiError::invalid("permissions: at least one"));
    }
    for p in &r.permissions {
        policy::validate_pattern(p).map_err(ApiError::invalid)?;
        if r.tenant.is_some() && policy::names_platform_actions(p) {
            return Err(ApiError::invalid(format!(
                "permission {p:?}: platform actions cannot be granted by a tenant's role"
            )));
        }
    }
    Ok(())
}

pub(super) async fn create_role(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    ApiJson(r): ApiJson<Role>,
) -> Result<Response, ApiError> {
    check_role(&r)?;
    caller.require(&iam, "iam.role.create", &role_scope(&r)).await?;
    if !iam.store.create_role(&r).await.map_err(db_error)? {
        return Err(ApiError::conflict(format!("role {:?} exists", r.name)));
    }
    Ok((http::StatusCode::CREATED, Json(r)).into_response())
}

/// A custom role the caller may do `action` on (403 before 404: no probing).
async fn role_for(iam: &Iam, caller: &Caller, name: &str, action: &str) -> Result<Role, ApiError> {
    let role = iam.store.role(name).await.map_err(db_error)?;
    caller.require(iam, action, &role.as_ref().map_or(Scope::System, role_scope)).await?;
    role.ok_or_else(|| ApiError::not_found(format!("role {name:?} not found")))
}

pub(super) async fn get_role(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Role>, ApiError> {
    if let Some(r) = policy::builtin_roles().into_iter().find(|r| r.name == name) {
        return Ok(Json(r));
    }
    role_for(&iam, &caller, &name, "iam.role.read").await.map(Json)
}

pub(super) async fn list_roles(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<Role>>, ApiError> {
    let mut page = iam.store.roles(q.page_token.as_deref(), q.limit()?).await.map_err(db_error)?;
    let mut items = Vec::new();
    for r in page.items {
        if caller.may(&iam, "iam.role.list", &role_scope(&r)).await? {
            items.push(r);
        }
    }
    page.items = items;
    Ok(Json(page))
}

pub(super) async fn update_role(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(r): ApiJson<Role>,
) -> Result<Json<Role>, ApiError> {
    if r.name != name {
        return Err(ApiError::invalid(format!("name {:?} differs from the path's {name:?}", r.name)));
    }
    check_role(&r)?;
    let current = role_for(&iam, &caller, &name, "iam.role.update").await?;
    if current.tenant != r.tenant {
        return Err(ApiError::invalid("a role's tenant cannot change; create another role"));
    }
    iam.store.put_role(&r).await.map_err(db_error)?;
    iam.changed().await;
    Ok(Json(r))
}

pub(super) async fn delete_role(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<http::StatusCode, ApiError> {
    role_for(&iam, &caller, &name, "iam.role.delete").await?;
    // Bindings naming a deleted role grant nothing; refusing keeps lists honest.
    if iam.store.bindings().await.map_err(db_error)?.iter().any(|b| b.role == name) {
        return Err(ApiError::conflict(format!("role {name:?} is still bound; delete its bindings first")));
    }
    iam.store.delete_role(&name).await.map_err(db_error)?;
    iam.changed().await;
    Ok(http::StatusCode::NO_CONTENT)
}

/// A subject's home tenant, if the subject exists (`Some(None)`: a platform subject).
async fn subject_home(iam: &Iam, subject: &str) -> Result<Option<Option<String>>, ApiError> {
    Ok(match subject.split_once(':') {
        Some(("user", id)) => iam.store.user(id).await.map_err(db_error)?.map(|u| u.tenant),
        Some(("sa", id)) => iam.store.service_account(id).await.map_err(db_error)?.map(|s| s.tenant),
        _ => return Err(ApiError::invalid(format!("subject {subject:?}: use user:<id> or sa:<id>"))),
    })
}

fn scope_tenant(s: &Scope) -> Option<&str> {
    match s {
        Scope::System => None,
        Scope::Tenant { tenant } | Scope::Project { tenant, .. } => Some(tenant),
    }
}

pub(super) async fn create_binding(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    ApiJson(b): ApiJson<Binding>,
) -> Result<Response, ApiError> {
    if b.role == "system-admin" && b.scope != Scope::System {
        return Err(ApiError::invalid("system-admin can only be bound at system scope"));
    }
    caller.require(&iam, "iam.binding.create", &b.scope).await?;
    if !policy::builtin_roles().iter().any(|r| r.name == b.role) {
        let Some(role) = iam.store.role(&b.role).await.map_err(db_error)? else {
            return Err(ApiError::invalid(format!("role {:?} does not exist", b.role)));
        };
        if let Some(t) = &role.tenant
            && scope_tenant(&b.scope) != Some(t)
        {
            return Err(ApiError::invalid(format!("role {:?} belongs to tenant {t:?}; bind it inside it", b.role)));
        }
    }
    // Subjects are bound inside their own tenant (platform admins may bind anyone anywhere);
    // the answer is the same whether a foreign subject exists or not.
    let home = subject_home(&iam, &b.subject).await?;
    let inside = match (&home, scope_tenant(&b.scope)) {
        (Some(Some(h)), Some(t)) => h == t,
        (Some(_), _) => false,
        (None, _) => false,
    };
    if !inside && !caller.may(&iam, "iam.binding.create", &Scope::System).await? {
        let where_ = scope_tenant(&b.scope).unwrap_or("the platform");
        return Err(ApiError::not_found(format!("subject {} not found in {where_}", b.subject)));
    }
    if home.is_none() {
        return Err(ApiError::not_found(format!("subject {} not found", b.subject)));
    }
    iam.store.bind(&binding_id(&b), &b).await.map_err(db_error)?;
    iam.changed().await;
    Ok((http::StatusCode::CREATED, Json(BindingView { id: binding_id(&b), binding: b })).into_response())
}

/// A binding with its ID (for `DELETE /v1/bindings/{subject}/{id}`).
#[derive(Debug, Serialize, Deserialize)]
pub struct BindingView {
    /// ID.
    pub id: String,
    /// The binding.
    #[serde(flatten)]
    pub binding: Binding,
}

/// `GET /v1/bindings?subject=`.
#[derive(Debug, Deserialize)]
pub(super) struct BindingQuery {
    subject: Option<String>,
}

pub(super) async fn list_bindings(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Query(q): Query<BindingQuery>,
) -> Result<Json<Page<BindingView>>, ApiError> {
    let all = match &q.subject {
        Some(s) => iam.store.bindings_of(s).await,
        None => iam.store.bindings().await,
    }
    .map_err(db_error)?;
    let mut items = Vec::new();
    for b in all {
        if b.subject == caller.0.sub || caller.may(&iam, "iam.binding.list", &b.scope).await? {
            items.push(BindingView { id: binding_id(&b), binding: b });
        }
    }
    Ok(Json(Page { items, next_page_token: None }))
}

pub(super) async fn delete_binding(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path((subject, id)): Path<(String, String)>,
) -> Result<http::StatusCode, ApiError> {
    let Some(b) = iam.store.bindings_of(&subject).await.map_err(db_error)?.into_iter().find(|b| binding_id(b) == id)
    else {
        // Only platform admins learn that a binding does not exist.
        caller.require(&iam, "iam.binding.delete", &Scope::System).await?;
        return Err(ApiError::not_found(format!("binding {subject}/{id} not found")));
    };
    caller.require(&iam, "iam.binding.delete", &b.scope).await?;
    if subject == "user:admin" && b.role == "system-admin" {
        return Err(ApiError::invalid("the bootstrap admin keeps system-admin"));
    }
    iam.store.unbind(&subject, &id).await.map_err(db_error)?;
    iam.changed().await;
    Ok(http::StatusCode::NO_CONTENT)
}
