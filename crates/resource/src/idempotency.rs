//! `Idempotency-Key` on creates: a client that retries a create (after a timeout, a dropped
//! connection, a crash) with the same key gets the first attempt's answer instead of a second
//! resource. Stripe's model: the key is claimed in flaredb before the handler runs, and the
//! answer stored when it finishes.
//!
//! - the same key with the same request (method, path, body) → the stored answer again, with
//!   `Idempotent-Replayed: true`;
//! - the same key with a different request → 422 `idempotency_key_reused`;
//! - the same key while the first is still running → 409 `idempotency_key_in_use` (retry);
//! - a 5xx answer is not stored (the claim is dropped), so a retry runs again;
//! - keys are kept for [`KEEP_MS`]; a claim whose request died is free again after
//!   [`CLAIM_MS`].
//!
//! Keys are scoped to the project in the path and the caller (the guard's actor), so they
//! never meet another tenant's or another user's. The layer goes inside the guard (a route
//! layer added before it), so only admitted requests claim keys.
//!
//! | key | value |
//! |---|---|
//! | `{service}/idem/{tenant}/{project}/{sha256(actor, key)}` | the [`Record`] |

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{RawPathParams, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ultracloud_flaredb::error::FlareError;
use ultracloud_runtime::error::ApiError;
use ultracloud_runtime::{actor, clock};

use crate::Store;
use crate::store::{encode, txn_get};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// How long an answer is kept for replays (24 h, as Stripe).
pub const KEEP_MS: u64 = 24 * 3600 * 1000;
/// How long a claim blocks the key when its request never finished.
pub const CLAIM_MS: u64 = 60 * 1000;
/// The largest request or answer body the layer holds.
const MAX_BODY: usize = 4 << 20;

/// A key's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// When it was claimed or answered (ms since the epoch).
    pub at_ms: u64,
    /// SHA-256 of method, path and body (URL-safe base64): the request the key belongs to.
    pub request: String,
    /// The stored answer; none while the first request runs.
    pub answer: Option<Answer>,
}

/// A stored answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// `ETag`, if any.
    pub etag: Option<String>,
    /// The body (URL-safe base64).
    pub body: String,
}

enum Claim {
    Mine,
    Replay(Answer),
    Refused(ApiError),
}

/// The middleware (`axum::middleware::from_fn_with_state(store, idempotency::layer)`).
pub async fn layer(State(store): State<Store>, params: RawPathParams, req: Request, next: Next) -> Response {
    let Some(key) = req.headers().get(HEADER) else { return next.run(req).await };
    let key = match key.to_str() {
        Ok(k) if (1..=255).contains(&k.len()) => k.to_owned(),
        _ => return ApiError::invalid("Idempotency-Key: 1–255 visible ASCII characters").into_response(),
    };
    let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_owned());
    let (Some(tenant), Some(project)) = (param("tenant"), param("project")) else {
        return ApiError::invalid("Idempotency-Key is taken on tenant resources only").into_response();
    };
    let (parts, body) = req.into_parts();
    let Ok(body) = to_bytes(body, MAX_BODY).await else {
        return ApiError::invalid(format!("request body over {MAX_BODY} bytes")).into_response();
    };
    let request = digest(&[parts.method.as_str().as_bytes(), parts.uri.path().as_bytes(), &body]);
    let record_key = format!(
        "{}/idem/{tenant}/{project}/{}",
        store.service(),
        digest(&[actor::current().as_bytes(), key.as_bytes()])
    )
    .into_bytes();

    match claim(&store, &record_key, &request).await {
        Err(e) => return crate::http::api_error(e.into()).into_response(),
        Ok(Claim::Refused(e)) => return e.into_response(),
        Ok(Claim::Replay(a)) => return replay(a),
        Ok(Claim::Mine) => {}
    }
    let resp = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (head, body) = resp.into_parts();
    let Ok(body) = to_bytes(body, MAX_BODY).await else {
        let _ = store.db.delete(&record_key).await;
        return ApiError::unavailable("the answer could not be read; retry").into_response();
    };
    let header = |h: http::HeaderName| head.headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let stored = if head.status.is_server_error() {
        store.db.delete(&record_key).await
    } else {
        let answer = Answer {
            status: head.status.as_u16(),
            content_type: header(http::header::CONTENT_TYPE),
            etag: header(http::header::ETAG),
            body: URL_SAFE_NO_PAD.encode(&body),
        };
        let record = Record { at_ms: clock::now_ms(), request, answer: Some(answer) };
        match encode(&record) {
            Ok(bytes) => store.db.put(&record_key, &bytes).await,
            Err(e) => Err(e),
        }
    };
    if let Err(e) = stored {
        // The change itself is done; only a replay of it is lost (a retry would run again).
        tracing::warn!(error = %e, "could not store an idempotent answer");
    }
    Response::from_parts(head, Body::from(body))
}

async fn claim(store: &Store, record_key: &[u8], request: &str) -> Result<Claim, FlareError> {
    // Owned captures: the transaction body's future must be `Send` for any borrow.
    let (db, record_key, request) = (store.db.clone(), record_key.to_vec(), request.to_owned());
    db.transact(async move |t| {
        let now = clock::now_ms();
        let held: Option<Record> = txn_get(t, &record_key).await?;
        let claim = match held {
            Some(r) if r.request != request && now.saturating_sub(r.at_ms) < KEEP_MS => {
                return Ok(Claim::Refused(ApiError::new(
                    http::StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request",
                )));
            }
            Some(Record { answer: Some(a), at_ms, .. }) if now.saturating_sub(at_ms) < KEEP_MS => {
                return Ok(Claim::Replay(a));
            }
            Some(Record { answer: None, at_ms, .. }) if now.saturating_sub(at_ms) < CLAIM_MS => {
                return Ok(Claim::Refused(ApiError::new(
                    http::StatusCode::CONFLICT,
                    "idempotency_key_in_use",
                    "a request with this Idempotency-Key is still running; retry",
                )));
            }
            _ => Claim::Mine,
        };
        t.put(&record_key, &encode(&Record { at_ms: now, request: request.clone(), answer: None })?);
        Ok(claim)
    })
    .await
}

fn replay(a: Answer) -> Response {
    let body = URL_SAFE_NO_PAD.decode(&a.body).unwrap_or_default();
    let mut resp = Response::new(Body::from(Bytes::from(body)));
    *resp.status_mut() = http::StatusCode::from_u16(a.status).unwrap_or(http::StatusCode::OK);
    let h = resp.headers_mut();
    for (name, value) in [(http::header::CONTENT_TYPE, a.content_type), (http::header::ETAG, a.etag)] {
        if let Some(v) = value.and_then(|v| http::HeaderValue::from_str(&v).ok()) {
            h.insert(name, v);
        }
    }
    h.insert("idempotent-replayed", http::HeaderValue::from_static("true"));
    resp
}

fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    URL_SAFE_NO_PAD.encode(h.finalize())
}
