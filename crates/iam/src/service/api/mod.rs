//! iam's HTTP API. Every call but token issuance, the JWKS and the OpenAPI document needs a
//! bearer token and is authorized with the caller's bindings; lists only show what the caller
//! may read, so other tenants' names never leak.

mod access;
mod auth;
mod openapi;
mod principals;
mod s3;
mod tenancy;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::{delete, get, post};
use serde::Deserialize;
use ultracloud_flaredb::error::FlareError;
use ultracloud_runtime::error::ApiError;

pub use crate::api::{AuthorizeRequest, TokenRequest};
pub use access::{BindingView, Permissions, Revocations, WatchAnswer};
pub use auth::WhoAmI;
pub use principals::CreatedKey;

use super::Iam;
use crate::jwt::Claims;
use crate::policy::{Decision, Scope};

/// The API router.
pub fn router(iam: Arc<Iam>) -> Router {
    Router::new()
        .route("/v1/auth/token", post(auth::token))
        .route("/v1/auth/logout", post(auth::logout))
        .route("/v1/auth/whoami", get(auth::whoami))
        .route("/.well-known/jwks.json", get(auth::jwks))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v1/authorize", post(access::authorize))
        .route("/v1/permissions", get(access::permissions))
        .route("/v1/policy/{subject}", get(access::policy))
        .route("/v1/revocations", get(access::revocations))
        .route("/v1/watch", get(access::watch))
        .route("/v1/roles", post(access::create_role).get(access::list_roles))
        .route("/v1/roles/{name}", get(access::get_role).put(access::update_role).delete(access::delete_role))
        .route("/v1/bindings", post(access::create_binding).get(access::list_bindings))
        .route("/v1/bindings/{subject}/{id}", delete(access::delete_binding))
        .route("/v1/tenants", post(tenancy::create_tenant).get(tenancy::list_tenants))
        .route("/v1/tenants/{tenant}", get(tenancy::get_tenant).delete(tenancy::delete_tenant))
        .route("/v1/tenants/{tenant}/projects", post(tenancy::create_project).get(tenancy::list_projects))
        .route("/v1/tenants/{tenant}/projects/{project}", get(tenancy::get_project).delete(tenancy::delete_project))
        .route("/v1/users", post(principals::create_user).get(principals::list_users))
        .route(
            "/v1/users/{id}",
            get(principals::get_user).patch(principals::update_user).delete(principals::delete_user),
        )
        .route("/v1/service-accounts", post(principals::create_sa).get(principals::list_sas))
        .route("/v1/service-accounts/{id}", get(principals::get_sa).delete(principals::delete_sa))
        .route("/v1/api-keys", post(principals::create_key).get(principals::list_keys))
        .route("/v1/api-keys/{id}", delete(principals::delete_key))
        .route("/v1/tenants/{tenant}/projects/{project}/s3-credentials", post(s3::create).get(s3::list))
        .route("/v1/tenants/{tenant}/projects/{project}/s3-credentials/{id}", delete(s3::delete))
        .route("/v1/s3-credentials/{id}", get(s3::resolve))
        .with_state(iam)
}

fn db_error(e: FlareError) -> ApiError {
    tracing::error!(error = %e, "flaredb request failed");
    ApiError::unavailable("the database is unavailable; retry")
}

/// The kit's one name rule, with the field named in the error.
fn valid_id(field: &str, id: &str) -> Result<(), ApiError> {
    if ultracloud_runtime::names::is_valid_name(id) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("{field} {id:?}: use 1-63 lowercase letters, digits and dashes")))
    }
}

/// The scope of a principal with home tenant `tenant`.
fn home_scope(tenant: Option<&String>) -> Scope {
    match tenant {
        Some(t) => Scope::Tenant { tenant: t.clone() },
        None => Scope::System,
    }
}

/// The authenticated caller.
pub struct Caller(pub Claims);

impl FromRequestParts<Arc<Iam>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, iam: &Arc<Iam>) -> Result<Self, Self::Rejection> {
        let token = crate::guard::bearer(&parts.headers)?;
        Ok(Caller(iam.authz.authenticate(token).await?))
    }
}

impl Caller {
    async fn decide(&self, iam: &Iam, action: &str, scope: &Scope) -> Result<Decision, ApiError> {
        Ok(iam.authz.decide(&self.0, action, scope).await?)
    }

    async fn may(&self, iam: &Iam, action: &str, scope: &Scope) -> Result<bool, ApiError> {
        Ok(self.decide(iam, action, scope).await?.allowed)
    }

    async fn require(&self, iam: &Iam, action: &str, scope: &Scope) -> Result<(), ApiError> {
        Ok(iam.authz.require(&self.0, action, scope).await?)
    }
}

/// `?limit=&page_token=` of list endpoints.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// Most items per page (1–1000, default 100).
    pub limit: Option<usize>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

impl ListQuery {
    fn limit(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(100),
            Some(n @ 1..=1000) => Ok(n),
            Some(n) => Err(ApiError::invalid(format!("limit {n}: use 1 to 1000"))),
        }
    }
}
