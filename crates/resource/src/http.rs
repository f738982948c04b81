//! The HTTP side every controller shares: the one mapping of store errors to
//! `{"error":{"code","message"}}` answers, the list shape, `201 Created`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use ultracloud_runtime::error::{ApiError, ApiJson};

use crate::{MetaPatch, Owner, Resource, Store, StoreError};

/// A store error as an API answer: refusals keep their message and get their status (409,
/// 404, 400, 403); a database failure is logged and answered 503 "retry".
pub fn api_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Db(e) => {
            tracing::error!(error = %e, "a dependency failed");
            ApiError::unavailable(format!("a dependency is unavailable ({e}); retry"))
        }
        StoreError::Conflict(m) => ApiError::conflict(m),
        StoreError::NotFound(m) => ApiError::not_found(m),
        StoreError::Invalid(m) => ApiError::invalid(m),
        StoreError::Forbidden(m) => ApiError::forbidden(m),
        StoreError::Precondition(m) => ApiError::new(http::StatusCode::PRECONDITION_FAILED, "precondition_failed", m),
    }
}

/// What an answer with an `ETag` shows: a resource, or a view of one.
pub trait Tagged: serde::Serialize {
    /// The revision its `ETag` names.
    fn revision(&self) -> u64;
}

impl<R: Resource> Tagged for R {
    fn revision(&self) -> u64 {
        self.meta().revision
    }
}

/// A resource as an answer, with its revision as the `ETag` (`"3"`) that `If-Match` takes.
pub fn with_etag<T: Tagged>(status: http::StatusCode, r: T) -> Response {
    let etag = format!("\"{}\"", r.revision());
    (status, [(http::header::ETAG, etag)], Json(r)).into_response()
}

/// The `If-Match` header of an update: the revision it expects (`"3"`), or none (no header,
/// or `*`). A malformed header is refused, never ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct IfMatch(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = parts.headers.get(http::header::IF_MATCH) else { return Ok(Self(None)) };
        let text = v.to_str().unwrap_or("").trim();
        if text == "*" {
            return Ok(Self(None));
        }
        text.strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .and_then(|t| t.parse().ok())
            .map(|n| Self(Some(n)))
            .ok_or_else(|| ApiError::invalid(format!("If-Match {text:?}: an ETag this API gave out (\"3\") or *")))
    }
}

/// A list answer: `{"items": [...], "next_page_token": "…"}` (see [`crate::page`]).
pub use crate::page::Page as Items;

/// `201 Created` with the created resource and its `ETag`.
pub fn created<T: Tagged>(r: T) -> Response {
    with_etag(http::StatusCode::CREATED, r)
}

/// The owner named by a tenant route's `{tenant}` and `{project}` (the guard checked the
/// caller against them before the handler runs).
pub fn owner((tenant, project): (String, String)) -> Owner {
    Owner { tenant, project }
}

/// A service's router state, as the kit's generic handlers need it.
pub trait HasStore: Send + Sync + 'static {
    /// The service's store.
    fn store(&self) -> &Store;
}

/// `PATCH …/{kind}/{id}/metadata` for any kind `R`: labels and annotations as a merge patch
/// (`If-Match` honoured, see [`crate::store::patch_meta`]); the resource with its new `ETag`.
pub async fn patch_meta<S: HasStore, R: Resource + Send + Sync + 'static>(
    State(s): State<Arc<S>>,
    Path((tenant, project, id)): Path<(String, String, String)>,
    IfMatch(rev): IfMatch,
    ApiJson(patch): ApiJson<MetaPatch>,
) -> Result<Response, ApiError> {
    let o = owner((tenant, project));
    let r: R = crate::store::patch_meta(s.store(), &o, &id, R::KIND, &patch, rev).await.map_err(api_error)?;
    Ok(with_etag(http::StatusCode::OK, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_their_message_and_get_their_status() {
        for (e, status) in [
            (StoreError::Conflict("name taken".into()), 409),
            (StoreError::NotFound("no vm".into()), 404),
            (StoreError::Invalid("bad cidr".into()), 400),
            (StoreError::Forbidden("platform field".into()), 403),
            (StoreError::Precondition("revision 2, not 1".into()), 412),
            (StoreError::Db(ultracloud_flaredb::error::FlareError::Unavailable("down".into())), 503),
        ] {
            let r = api_error(e).into_response();
            assert_eq!(r.status().as_u16(), status);
        }
    }
}
