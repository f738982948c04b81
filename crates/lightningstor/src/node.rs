//! A storage node's HTTP API: blocks in and out by name, listing for repair, status, scrub.
//!
//! | route | answer |
//! |---|---|
//! | `PUT /v1/blocks/{id}` (body: the bytes) | 201 [`Stored`] (200 when already held); 400 `block_mismatch` when the body is not the named block |
//! | `GET /v1/blocks/{id}` | 200 the bytes; 404; 500 `block_corrupt` when the copy here has rotted (set aside) |
//! | `HEAD /v1/blocks/{id}` | 200 / 404, without reading the block |
//! | `DELETE /v1/blocks/{id}` | 204 / 404 |
//! | `DELETE /v1/blocks/{id}?older_than_ms=T` | garbage collection's delete: 204 when it was last written before `T` (ms since the epoch); 409 `block_recent` (kept) when at or after; 404 |
//! | `GET /v1/blocks?after=&limit=` | [`BlockPage`] |
//! | `GET /v1/status` | [`NodeStatus`] |
//! | `POST /v1/scrub` | [`ScrubReport`] |
//! | `GET /v1/repair` | [`RepairStatus`] (`enabled: false` without peers) |
//! | `POST /v1/repair` | runs a repair pass now: [`RepairReport`] (409 without peers) |
//!
//! Every route is platform-only: with TLS the listener admits only cluster certificates of role
//! control-plane (the gateways and the other storage nodes, which run there) or admin
//! (operators); without TLS the node listens on loopback only.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use ultracloud_runtime::ApiError;
use ultracloud_tls::identity::Role;
use ultracloud_tls::serve::require_role;

use crate::api::{BlockId, BlockPage, NodeStatus, ScrubReport, Stored};
use crate::blocks::{BlockError, BlockStore, Collected};
use crate::repair::{RepairReport, RepairStatus, Repairer};

/// Who may call a storage node over TLS.
const CALLERS: &[Role] = &[Role::ControlPlane, Role::Admin];

/// The most names one listing page returns.
pub const MAX_PAGE: usize = 10_000;

/// The node's router (`repair`: its repair worker, when it knows its peers); with `tls`, every
/// route needs a control-plane or admin certificate.
pub fn router(store: Arc<BlockStore>, repair: Option<Arc<Repairer>>, max_block_bytes: usize, tls: bool) -> Router {
    let routes = Router::new()
        .route("/v1/blocks", get(list))
        .route("/v1/blocks/{id}", get(read).head(head).put(write).delete(remove))
        .route("/v1/status", get(status))
        .route("/v1/scrub", post(scrub))
        .layer(axum::extract::DefaultBodyLimit::max(max_block_bytes))
        .with_state(store)
        .merge(Router::new().route("/v1/repair", get(repair_status).post(repair_now)).with_state(repair));
    if tls { routes.layer(axum::middleware::from_fn_with_state(CALLERS, require_role)) } else { routes }
}

fn block_id(raw: &str) -> Result<BlockId, ApiError> {
    raw.parse().map_err(|e: crate::api::BadBlockId| ApiError::invalid(e.to_string()))
}

fn api_error(e: BlockError) -> ApiError {
    match e {
        BlockError::Mismatch { .. } => ApiError::new(StatusCode::BAD_REQUEST, "block_mismatch", e.to_string()),
        BlockError::Corrupt(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "block_corrupt", e.to_string()),
        BlockError::Io { .. } => ApiError::internal(&e),
    }
}

async fn write(
    State(store): State<Arc<BlockStore>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = block_id(&id)?;
    let created = store.put(id, body).await.map_err(api_error)?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(Stored { id, created })).into_response())
}

async fn read(State(store): State<Arc<BlockStore>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = block_id(&id)?;
    match store.get(id).await.map_err(api_error)? {
        Some(data) => Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response()),
        None => Err(ApiError::not_found(format!("block {id} is not on this node"))),
    }
}

async fn head(State(store): State<Arc<BlockStore>>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let id = block_id(&id)?;
    if store.has(id) { Ok(StatusCode::OK) } else { Err(ApiError::not_found(format!("block {id} is not on this node"))) }
}

/// `DELETE /v1/blocks/{id}` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveQuery {
    older_than_ms: Option<u64>,
}

async fn remove(
    State(store): State<Arc<BlockStore>>,
    Path(id): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<StatusCode, ApiError> {
    let id = block_id(&id)?;
    if let Some(ms) = q.older_than_ms {
        let cutoff = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
        return match store.delete_if_older(id, cutoff).await.map_err(api_error)? {
            Collected::Deleted => Ok(StatusCode::NO_CONTENT),
            Collected::Recent => Err(ApiError::new(
                StatusCode::CONFLICT,
                "block_recent",
                format!("block {id} was written at or after {ms}; kept"),
            )),
            Collected::Missing => Err(ApiError::not_found(format!("block {id} is not on this node"))),
        };
    }
    if store.delete(id).await.map_err(api_error)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("block {id} is not on this node")))
    }
}

/// `GET /v1/blocks` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list(State(store): State<Arc<BlockStore>>, Query(q): Query<ListQuery>) -> Result<Json<BlockPage>, ApiError> {
    let after = q.after.as_deref().map(block_id).transpose()?;
    let limit = q.limit.unwrap_or(1000);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid(format!("limit {limit}: between 1 and {MAX_PAGE}")));
    }
    let items = tokio::task::spawn_blocking(move || store.list(after, limit))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(api_error)?;
    let next = if items.len() == limit { items.last().copied() } else { None };
    Ok(Json(BlockPage { items, next }))
}

async fn status(State(store): State<Arc<BlockStore>>) -> Json<NodeStatus> {
    let (blocks, bytes, corrupt_found) = store.counts();
    let scrub = store.last_scrub();
    Json(NodeStatus {
        blocks,
        bytes,
        free_bytes: store.free_bytes(),
        fsync: store.fsync(),
        corrupt_found,
        last_scrub_ms: scrub.as_ref().map(|s| s.0),
        last_scrub_checked: scrub.as_ref().map_or(0, |s| s.1.checked),
        last_scrub_corrupt: scrub.as_ref().map_or(0, |s| s.1.corrupt.len() as u64),
    })
}

async fn scrub(State(store): State<Arc<BlockStore>>) -> Result<Json<ScrubReport>, ApiError> {
    store.scrub().await.map(Json).map_err(api_error)
}

async fn repair_status(State(repair): State<Option<Arc<Repairer>>>) -> Json<RepairStatus> {
    Json(repair.map(|r| r.status()).unwrap_or_default())
}

async fn repair_now(State(repair): State<Option<Arc<Repairer>>>) -> Result<Json<RepairReport>, ApiError> {
    let Some(repair) = repair else {
        return Err(ApiError::conflict("this node does not repair: it was started without --peers"));
    };
    Ok(Json(repair.pass().await))
}
