//! S3 credentials: access key pairs bound to a project, for lightningstor's S3 gateways.
//!
//! Tenant-scoped routes create, list and delete a project's credentials (the secret is shown
//! once, at creation); the one platform route hands a gateway the secret of an access key, which
//! SigV4 verification needs (see docs/lightningstor.md, "Credentials").

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use ultracloud_runtime::error::{ApiError, ApiJson};

use super::{Caller, db_error};
use crate::api::{CreatedS3Credential, NewS3Credential, S3CredentialView, S3Secret};
use crate::credential;
use crate::policy::Scope;
use crate::service::model::S3Credential;
use crate::service::store::Page;
use crate::service::{Iam, now_secs};

/// What a key's creator must still be allowed in the project for the key to write …
const WRITE_ACTION: &str = "object.object.create";
/// … and to read.
const READ_ACTION: &str = "object.object.read";

/// Longest description kept.
const MAX_DESCRIPTION: usize = 256;

fn project_scope(tenant: &str, project: &str) -> Scope {
    Scope::Project { tenant: tenant.to_owned(), project: project.to_owned() }
}

/// Checks the caller may do `action` in the project, then that the project exists (in that
/// order: a refused caller learns nothing about which projects exist).
async fn in_project(iam: &Iam, caller: &Caller, action: &str, tenant: &str, project: &str) -> Result<(), ApiError> {
    caller.require(iam, action, &project_scope(tenant, project)).await?;
    if iam.store.project(tenant, project).await.map_err(db_error)?.is_none() {
        return Err(ApiError::not_found(format!("project {tenant}/{project} not found")));
    }
    Ok(())
}

pub(super) async fn create(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path((tenant, project)): Path<(String, String)>,
    ApiJson(req): ApiJson<NewS3Credential>,
) -> Result<Response, ApiError> {
    in_project(&iam, &caller, "object.credential.create", &tenant, &project).await?;
    if req.description.chars().count() > MAX_DESCRIPTION {
        return Err(ApiError::invalid(format!("description: at most {MAX_DESCRIPTION} characters")));
    }
    let (access_key_id, secret) = credential::s3_pair();
    let view = S3CredentialView {
        access_key_id,
        tenant,
        project,
        owner: caller.0.sub.clone(),
        created: now_secs(),
        description: req.description,
    };
    let record = S3Credential { view: view.clone(), secret: secret.clone() };
    if !iam.store.create_s3_credential(&record).await.map_err(db_error)? {
        return Err(ApiError::conflict("access key ID collision; retry"));
    }
    let body = CreatedS3Credential { record: view, secret_access_key: secret };
    Ok((http::StatusCode::CREATED, Json(body)).into_response())
}

pub(super) async fn list(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path((tenant, project)): Path<(String, String)>,
) -> Result<Json<Page<S3CredentialView>>, ApiError> {
    in_project(&iam, &caller, "object.credential.list", &tenant, &project).await?;
    let items = iam.store.s3_credentials_of(&tenant, &project).await.map_err(db_error)?;
    Ok(Json(Page { items: items.into_iter().map(|c| c.view).collect(), next_page_token: None }))
}

pub(super) async fn delete(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path((tenant, project, id)): Path<(String, String, String)>,
) -> Result<http::StatusCode, ApiError> {
    in_project(&iam, &caller, "object.credential.delete", &tenant, &project).await?;
    let found = iam.store.s3_credential(&id).await.map_err(db_error)?;
    // Another project's key is as absent as a key that does not exist.
    if !found.is_some_and(|c| c.view.tenant == tenant && c.view.project == project) {
        return Err(ApiError::not_found(format!("S3 credential {id:?} not found in {tenant}/{project}")));
    }
    iam.store.delete_s3_credential(&id).await.map_err(db_error)?;
    Ok(http::StatusCode::NO_CONTENT)
}

/// `GET /v1/s3-credentials/{access_key_id}`: platform only (S3 gateways). A key acts as its
/// creator, so the creator's roles in the project are checked on every resolve (gateways cache
/// the answer for seconds): a creator who may still write gets a read-write key, one who may
/// only read (demoted to viewer) a read-only key, and one with no role left a refusal (403).
pub(super) async fn resolve(
    State(iam): State<Arc<Iam>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<S3Secret>, ApiError> {
    caller.require(&iam, "platform.s3_credential.resolve", &Scope::System).await?;
    if !credential::is_s3_access_key_id(&id) {
        return Err(ApiError::invalid(format!("{id:?} is not an access key ID (UC and 18 capitals or digits)")));
    }
    let Some(c) = iam.store.s3_credential(&id).await.map_err(db_error)? else {
        return Err(ApiError::not_found(format!("S3 credential {id:?} not found")));
    };
    let scope = project_scope(&c.view.tenant, &c.view.project);
    let owner = iam.authz.policy(&c.view.owner).await?;
    let writes = owner.decide(WRITE_ACTION, &scope).allowed;
    if !writes && !owner.decide(READ_ACTION, &scope).allowed {
        return Err(ApiError::forbidden(format!(
            "the creator of {id} ({}) no longer holds a role in {}/{}",
            c.view.owner, c.view.tenant, c.view.project
        )));
    }
    Ok(Json(S3Secret { record: c.view, secret_access_key: c.secret, read_only: !writes }))
}

/// Deletes a project's S3 credentials (with the project).
pub(super) async fn delete_all_of(iam: &Iam, tenant: &str, project: &str) -> Result<(), ApiError> {
    for c in iam.store.s3_credentials_of(tenant, project).await.map_err(db_error)? {
        iam.store.delete_s3_credential(&c.view.access_key_id).await.map_err(db_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actions_a_key_is_checked_against_exist() {
        // An unknown action is refused to everyone: every key would be refused.
        assert!(crate::policy::is_known_action(WRITE_ACTION));
        assert!(crate::policy::is_known_action(READ_ACTION));
    }
}
