//! Reading a node agent's status over its admin listener (for `ultracloud node status`).

use std::net::SocketAddr;
use std::time::Duration;

use crate::status::NodeStatus;

/// The status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusClientError {
    /// Nothing answered, or the answer was not a node status.
    #[error("cannot read node status from http://{addr}/status (is `ultracloud node` running there?)")]
    Request {
        /// The admin address.
        addr: SocketAddr,
        /// The HTTP error.
        #[source]
        source: reqwest::Error,
    },
}

/// Fetches `/status` from the node agent at `addr`.
pub async fn fetch_status(addr: SocketAddr) -> Result<NodeStatus, StatusClientError> {
    let wrap = |source| StatusClientError::Request { addr, source };
    let client = ultracloud_tls::client::http_client_builder().timeout(Duration::from_secs(5)).build().map_err(wrap)?;
    client
        .get(format!("http://{addr}/status"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(wrap)?
        .json()
        .await
        .map_err(wrap)
}
