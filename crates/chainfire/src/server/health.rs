//! Plain HTTP on the client URLs, as etcd serves it: `GET /health` (the answer load balancers
//! and `curl` scripts written for etcd expect) beside whatever routes the caller adds, with
//! every gRPC request passed on to the etcd API.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::ServiceExt;

use crate::node::Node;

/// How long `/health` waits for a quorum-confirmed read (etcd waits about as long).
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /health`: `{"health":"true","reason":""}` when this member can serve a linearizable
/// read, else 503 with etcd's reason (`RAFT NO LEADER`, `QGET ERROR: …`).
pub fn routes(node: Arc<Node>) -> Router {
    Router::new().route("/health", get(health)).with_state(node)
}

async fn health(State(node): State<Arc<Node>>) -> Response {
    let reason = if node.leader().is_none() {
        Some("RAFT NO LEADER".to_owned())
    } else {
        match tokio::time::timeout(HEALTH_READ_TIMEOUT, node.linearize()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("QGET ERROR: {e}")),
            Err(_) => Some("QGET ERROR: timed out".to_owned()),
        }
    };
    let status = if reason.is_none() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({ "health": reason.is_none().to_string(), "reason": reason.unwrap_or_default() });
    (status, axum::Json(body)).into_response()
}

/// `http` for plain requests, `grpc` for every gRPC request (by its content type, as gRPC
/// clients always send it); a plain request for no route gets the platform's JSON 404.
pub fn beside_grpc(http: Router, grpc: Router) -> Router {
    http.fallback(move |req: Request| {
        let grpc = grpc.clone();
        async move {
            if is_grpc(&req) {
                grpc.oneshot(req).await.into_response()
            } else {
                ultracloud_runtime::error::route_not_found().await.into_response()
            }
        }
    })
}

fn is_grpc(req: &Request) -> bool {
    req.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}
