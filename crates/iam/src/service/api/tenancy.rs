//! Tenants and their projects.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use ultracloud_runtime::error::{ApiError, ApiJson};

use super::{Caller, ListQuery, db_error, valid_id};
use crate::api::NewProject;
use crate::policy::Scope;
use crate::service::Iam;
use crate::service::model::{Project, Tenant};
use crate::service::store::Page;

fn tenant_scope(t: &str) -> Scope {
    Scope::Tenant { tenant: t.to_owned() }
}

pub(super) async fn create_tenant(
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

pub(super) async fn list_tenants(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<Tenant>>, ApiError> {
    let mut page = iam.store.tenants(q.page_token.as_deref(), q.limit()?).await.map_err(db_error)?;
    let mut items = Vec::new();
    for t in page.items {
        // Only tenants the caller may read: other tenants' names never leak.
        if caller.may(&iam, "iam.tenant.read", &tenant_scope(&t.id)).await? {
            items.push(t);
        }
    }
    page.items = items;
    Ok(Json(page))
}

pub(super) async fn get_tenant(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    // Authorize before looking: a denied caller cannot tell whether the tenant exists.
    caller.require(&iam, "iam.tenant.read", &tenant_scope(&tenant)).await?;
    iam.store
        .tenant(&tenant)
        .await
        .map_err(db_error)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("tenant {tenant:?} not found")))
}

pub(super) async fn delete_tenant(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<http::StatusCode, ApiError> {
    caller.require(&iam, "iam.tenant.delete", &tenant_scope(&tenant)).await?;
    if iam.store.tenant(&tenant).await.map_err(db_error)?.is_none() {
        return Err(ApiError::not_found(format!("tenant {tenant:?} not found")));
    }
    // Nothing is lost by accident: a tenant goes only once it is empty.
    if let Some(what) = iam.store.tenant_in_use(&tenant).await.map_err(db_error)? {
        return Err(ApiError::conflict(format!("tenant {tenant:?} still has {what}; delete them first")));
    }
    iam.store.delete_tenant(&tenant).await.map_err(db_error)?;
    Ok(http::StatusCode::NO_CONTENT)
}

pub(super) async fn create_project(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path(tenant): Path<String>,
    ApiJson(p): ApiJson<NewProject>,
) -> Result<Response, ApiError> {
    valid_id("project id", &p.id)?;
    caller.require(&iam, "iam.project.create", &tenant_scope(&tenant)).await?;
    if iam.store.tenant(&tenant).await.map_err(db_error)?.is_none() {
        return Err(ApiError::not_found(format!("tenant {tenant:?} not found")));
    }
    let project = Project { tenant, id: p.id };
    if !iam.store.create_project(&project).await.map_err(db_error)? {
        return Err(ApiError::conflict(format!("project {:?} exists", project.id)));
    }
    Ok((http::StatusCode::CREATED, Json(project)).into_response())
}

pub(super) async fn list_projects(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<Project>>, ApiError> {
    let mut page = iam.store.projects(&tenant, q.page_token.as_deref(), q.limit()?).await.map_err(db_error)?;
    let mut items = Vec::new();
    for p in page.items {
        let scope = Scope::Project { tenant: p.tenant.clone(), project: p.id.clone() };
        if caller.may(&iam, "iam.project.read", &scope).await? {
            items.push(p);
        }
    }
    page.items = items;
    Ok(Json(page))
}

pub(super) async fn get_project(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path((tenant, project)): Path<(String, String)>,
) -> Result<Json<Project>, ApiError> {
    let scope = Scope::Project { tenant: tenant.clone(), project: project.clone() };
    caller.require(&iam, "iam.project.read", &scope).await?;
    iam.store
        .project(&tenant, &project)
        .await
        .map_err(db_error)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("project {tenant}/{project} not found")))
}

pub(super) async fn delete_project(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path((tenant, project)): Path<(String, String)>,
) -> Result<http::StatusCode, ApiError> {
    let scope = Scope::Project { tenant: tenant.clone(), project: project.clone() };
    caller.require(&iam, "iam.project.delete", &scope).await?;
    if iam.store.project(&tenant, &project).await.map_err(db_error)?.is_none() {
        return Err(ApiError::not_found(format!("project {tenant}/{project} not found")));
    }
    super::s3::delete_all_of(&iam, &tenant, &project).await?;
    iam.store.delete_project(&tenant, &project).await.map_err(db_error)?;
    Ok(http::StatusCode::NO_CONTENT)
}
