//! The node agent's admin routes beyond the common ones: `/status`.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use ultracloud_runtime::ApiError;
use ultracloud_runtime::error::ApiJson;

use crate::status::NodeStatus;
use crate::supervisor::SupervisorHandle;

#[derive(Clone)]
struct StatusState {
    node: String,
    supervisor: SupervisorHandle,
}

/// Routes: `GET /status` → [`NodeStatus`].
pub fn routes(node: &str, supervisor: SupervisorHandle) -> Router {
    Router::new().route("/status", get(status)).with_state(StatusState { node: node.to_owned(), supervisor })
}

async fn status(State(state): State<StatusState>) -> Result<ApiJson<NodeStatus>, ApiError> {
    let services = state.supervisor.status().await.map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(ApiJson(NodeStatus { node: state.node.clone(), services }))
}
