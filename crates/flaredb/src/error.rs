//! flaredb's errors: what the server answers and what the client acts on.
//!
//! Errors travel as JSON (`{"error": {"code": ..., "detail": ...}, "message": ...}`) so the client can
//! tell a retryable routing problem (not leader, stale region) from a transaction conflict and
//! from bad input.

use serde::{Deserialize, Serialize};

use crate::mvcc::MvccError;
use crate::region::{NodeId, RegionDescriptor, RegionId};

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "code", content = "detail", rename_all = "snake_case")]
pub enum FlareError {
    /// The transaction layer refused (locked key, conflict, aborted, bad input).
    #[error("{source}")]
    Mvcc {
        /// The MVCC error.
        source: MvccError,
    },
    /// This node does not lead the region; ask `leader` (when known).
    #[error("this node does not lead region {region}{}", leader.as_ref().map(|(_, a)| format!("; the leader is at {a}")).unwrap_or_default())]
    NotLeader {
        /// The region.
        region: RegionId,
        /// The leader's ID and address, when known.
        leader: Option<(NodeId, String)>,
    },
    /// This node holds no replica of the region.
    #[error("region {region} is not on this node")]
    RegionNotFound {
        /// The region.
        region: RegionId,
    },
    /// The request was routed with an old view of the region (it split or moved).
    #[error("region {region} has changed (split or moved); refresh the region map")]
    StaleRegion {
        /// The region.
        region: RegionId,
        /// The region as this replica knows it.
        current: Option<Box<RegionDescriptor>>,
    },
    /// A key of the request is outside the region.
    #[error("key {key:?} is not in region {region}")]
    KeyNotInRegion {
        /// The key.
        key: Vec<u8>,
        /// The region.
        region: RegionId,
    },
    /// The read timestamp is below the garbage-collection safe point.
    #[error("snapshot at {ts} is too old: versions below {safe_point} were collected")]
    SnapshotTooOld {
        /// The read timestamp.
        ts: u64,
        /// The region's safe point.
        safe_point: u64,
    },
    /// The request was malformed.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No leader, no quorum, or the node is shutting down; retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The node refused this client: no cluster certificate, one of a role it does not admit,
    /// or plain HTTP to a TLS node. Retrying cannot help.
    #[error("refused: {0}")]
    Refused(String),
    /// Something failed that should not have.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<MvccError> for FlareError {
    fn from(source: MvccError) -> Self {
        match source {
            MvccError::Invalid(m) => Self::Invalid(m),
            source => Self::Mvcc { source },
        }
    }
}

impl FlareError {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::Mvcc { source: MvccError::Storage(_) } | Self::Internal(_) => 500,
            Self::Mvcc { .. } => 409,
            Self::NotLeader { .. }
            | Self::RegionNotFound { .. }
            | Self::StaleRegion { .. }
            | Self::KeyNotInRegion { .. } => 421,
            Self::SnapshotTooOld { .. } => 410,
            Self::Invalid(_) => 400,
            Self::Refused(_) => 403,
            Self::Unavailable(_) => 503,
        }
    }

    /// Whether the client should refresh its region map and retry.
    pub fn is_routing(&self) -> bool {
        matches!(
            self,
            Self::NotLeader { .. }
                | Self::RegionNotFound { .. }
                | Self::StaleRegion { .. }
                | Self::KeyNotInRegion { .. }
        )
    }
}

/// The JSON body of an error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error, machine-readable.
    pub error: FlareError,
    /// The error, for people.
    pub message: String,
}

impl axum::response::IntoResponse for FlareError {
    fn into_response(self) -> axum::response::Response {
        let status = http::StatusCode::from_u16(self.status()).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let message = self.to_string();
        (status, axum::Json(ErrorResponse { error: self, message })).into_response()
    }
}
