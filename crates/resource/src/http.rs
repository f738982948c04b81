//! The HTTP side every controller shares: the one mapping of store errors to
//! `{"error":{"code","message"}}` answers, the list shape, `201 Created`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use ultracloud_runtime::error::ApiError;

use crate::{Owner, StoreError};

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
    }
}

/// A list answer: `{"items": [...]}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Items<T> {
    /// The items.
    pub items: Vec<T>,
}

/// `201 Created` with the created resource.
pub fn created<T: Serialize>(v: T) -> Response {
    (http::StatusCode::CREATED, Json(v)).into_response()
}

/// The owner named by a tenant route's `{tenant}` and `{project}` (the guard checked the
/// caller against them before the handler runs).
pub fn owner((tenant, project): (String, String)) -> Owner {
    Owner { tenant, project }
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
            (StoreError::Db(ultracloud_flaredb::error::FlareError::Unavailable("down".into())), 503),
        ] {
            let r = api_error(e).into_response();
            assert_eq!(r.status().as_u16(), status);
        }
    }
}
