//! The admin listener every service runs: `/healthz` (the process is alive), `/readyz` (it can do
//! its job, dependencies included), `/metrics` (Prometheus text) and `/version`. Services may add
//! their own operator routes (the node agent adds `/status`). Admin endpoints need no token: they
//! reveal no tenant data and monitoring must reach them.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::route_not_found;
use crate::metrics::{HttpTracking, Metrics, track_http};
use crate::readiness::Readiness;
use crate::version::VersionInfo;

/// A listener that could not be opened; names the address and its purpose.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for the {purpose}")]
pub struct ListenError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// What the listener was for, e.g. "admin API".
    pub purpose: String,
    /// What the OS said (address in use, not available, permission denied…).
    #[source]
    pub source: std::io::Error,
}

/// Binds a TCP listener, failing with an error that names `addr` and `purpose`.
pub async fn bind(addr: SocketAddr, purpose: &str) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).await.map_err(|source| ListenError { addr, purpose: purpose.to_owned(), source })
}

#[derive(Clone)]
struct AdminState {
    service: String,
    metrics: Metrics,
    readiness: Readiness,
}

/// The admin routes of `service` (`/healthz`, `/readyz`, `/metrics`, `/version`) alone, for a
/// listener that serves them beside something else.
pub fn routes(service: &str, metrics: &Metrics, readiness: &Readiness) -> Router {
    let state = AdminState { service: service.to_owned(), metrics: metrics.clone(), readiness: readiness.clone() };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/version", get(version))
        .with_state(state)
}

/// The admin routes of `service`, merged with `extra` routes, with request metrics.
pub fn router(service: &str, metrics: &Metrics, readiness: &Readiness, extra: Router) -> Router {
    routes(service, metrics, readiness).merge(extra).fallback(route_not_found).layer(
        axum::middleware::from_fn_with_state(HttpTracking { metrics: metrics.clone(), listener: "admin" }, track_http),
    )
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then finishes in-flight requests.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // No Nagle: a small answer written as headers then body must not wait for the peer's
    // delayed ACK (40 ms on Linux) before its second segment leaves.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    // Handlers may ask for the peer address (`ConnectInfo<SocketAddr>`), e.g. to throttle by source.
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let report = state.readiness.evaluate().await;
    let status = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(report)).into_response()
}

async fn metrics_text(State(state): State<AdminState>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
        .into_response()
}

async fn version(State(state): State<AdminState>) -> Json<VersionInfo> {
    Json(VersionInfo::for_service(&state.service))
}
