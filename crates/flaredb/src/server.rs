//! The HTTP API of a node: the public region API (`/v1/...`), and the internal endpoints peers
//! and the placement component use (`/internal/...`). See `openapi.json` for the public part.

use std::sync::Arc;

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::HeaderMap;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Deserialize;
use ultracloud_tls::Role;
use ultracloud_tls::serve::require_role;

use crate::api::*;
use crate::error::FlareError;
use crate::node::Node;
use crate::raft::types::{Command, Outcome, TypeConfig};
use crate::region::{META_REGION, RegionId};

/// A JSON body whose rejection is a flaredb error naming what was wrong.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = FlareError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(FlareError::Invalid(rejection.body_text())),
        }
    }
}

type Api<T> = Result<Json<T>, FlareError>;

/// Who may call the public routes over TLS: the control plane's services and operators.
const CLIENTS: &[Role] = &[Role::ControlPlane, Role::Admin];
/// Who may call the internal routes (Raft, placement): the control-plane nodes only.
const PEERS: &[Role] = &[Role::ControlPlane];

/// The node's router. With `tls`, every route needs a client certificate of the cluster CA in
/// the right role (the listener already refused anyone without one).
pub fn router(node: Arc<Node>, tls: bool) -> Router {
    let public = public_routes().with_state(node.clone());
    let internal = internal_routes().with_state(node);
    if !tls {
        return public.merge(internal);
    }
    public
        .layer(axum::middleware::from_fn_with_state(CLIENTS, require_role))
        .merge(internal.layer(axum::middleware::from_fn_with_state(PEERS, require_role)))
}

fn public_routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/region/get", post(region_get))
        .route("/v1/region/scan", post(region_scan))
        .route("/v1/region/prewrite", post(region_prewrite))
        .route("/v1/region/commit", post(region_commit))
        .route("/v1/region/rollback", post(region_rollback))
        .route("/v1/region/check_txn_status", post(region_check_txn_status))
        .route("/v1/region/resolve_lock", post(region_resolve_lock))
        .route("/v1/region/write", post(region_write))
        .route("/v1/regions", get(regions).post(regions))
        .route("/v1/ts", get(ts).post(ts))
        .route("/v1/status", get(status))
        .route("/v1/split", post(split))
        .route("/v1/openapi.json", get(openapi))
}

fn internal_routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/internal/raft/{group}/{kind}", post(raft_rpc))
        .route("/internal/replicas", post(create_replica))
        .route("/internal/heartbeat", post(heartbeat))
        .route("/internal/alloc_id", post(alloc_id))
        .route("/internal/change", post(change))
}

fn replica_for(node: &Node, route: &Route) -> Result<Arc<crate::replica::Replica>, FlareError> {
    if route.region == META_REGION {
        return Err(FlareError::Invalid("the meta group holds no user keys".into()));
    }
    node.replica(route.region)
}

async fn region_get(State(node): State<Arc<Node>>, Body(req): Body<GetRequest>) -> Api<GetResponse> {
    let r = replica_for(&node, &req.route)?;
    r.check(req.route.version, &[&req.key])?;
    let ts = req.ts.unwrap_or(u64::MAX);
    r.check_read_ts(ts)?;
    r.read_index().await?;
    if ts != u64::MAX {
        let mut end = req.key.clone();
        end.push(0);
        r.latches.wait_clear(&req.key, Some(&end)).await;
    }
    let value = node.store.get(&req.key, ts)?;
    Ok(Json(GetResponse { value }))
}

async fn region_scan(State(node): State<Arc<Node>>, Body(req): Body<ScanRequest>) -> Api<ScanResponse> {
    let r = replica_for(&node, &req.route)?;
    let desc = r.check(req.route.version, &[&req.start])?;
    let end = match (&req.end, &desc.end) {
        (Some(e), Some(d)) => Some(std::cmp::min(e, d).clone()),
        (Some(e), None) => Some(e.clone()),
        (None, d) => d.clone(),
    };
    let ts = req.ts.unwrap_or(u64::MAX);
    r.check_read_ts(ts)?;
    r.read_index().await?;
    if ts != u64::MAX {
        r.latches.wait_clear(&req.start, end.as_deref()).await;
    }
    let scanned = node.store.scan(&req.start, end.as_deref(), ts, req.limit, req.reverse)?;
    Ok(Json(ScanResponse {
        pairs: scanned.rows.into_iter().map(|(key, value)| Pair { key, value }).collect(),
        more: scanned.more,
    }))
}

async fn propose(node: &Node, route: &Route, keys: &[&[u8]], cmd: Command) -> Result<Outcome, FlareError> {
    let r = replica_for(node, route)?;
    r.check(route.version, keys)?;
    r.propose(cmd).await
}

fn done(o: Outcome) -> Api<serde_json::Value> {
    match o {
        Outcome::Done => Ok(Json(serde_json::json!({}))),
        other => Err(FlareError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

async fn region_prewrite(State(node): State<Arc<Node>>, Body(req): Body<PrewriteRequest>) -> Api<serde_json::Value> {
    let mutations: Vec<crate::mvcc::Mutation> = req.mutations.into_iter().map(Into::into).collect();
    if mutations.is_empty() {
        return Err(FlareError::Invalid("prewrite needs at least one mutation".into()));
    }
    let keys: Vec<&[u8]> = mutations.iter().map(|m| m.key.as_slice()).collect();
    let cmd = Command::Prewrite {
        mutations: mutations.clone(),
        primary: req.primary,
        start_ts: req.start_ts,
        ttl_ms: req.ttl_ms,
    };
    done(propose(&node, &req.route, &keys, cmd).await?)
}

async fn region_commit(State(node): State<Arc<Node>>, Body(req): Body<CommitRequest>) -> Api<serde_json::Value> {
    let keys: Vec<&[u8]> = req.keys.iter().map(Vec::as_slice).collect();
    let cmd = Command::Commit { keys: req.keys.clone(), start_ts: req.start_ts, commit_ts: req.commit_ts };
    done(propose(&node, &req.route, &keys, cmd).await?)
}

async fn region_rollback(State(node): State<Arc<Node>>, Body(req): Body<RollbackRequest>) -> Api<serde_json::Value> {
    let keys: Vec<&[u8]> = req.keys.iter().map(Vec::as_slice).collect();
    let cmd = Command::Rollback { keys: req.keys.clone(), start_ts: req.start_ts };
    done(propose(&node, &req.route, &keys, cmd).await?)
}

async fn region_check_txn_status(
    State(node): State<Arc<Node>>,
    Body(req): Body<CheckTxnStatusRequest>,
) -> Api<CheckTxnStatusResponse> {
    let now = node.timestamps(1).await?;
    let cmd = Command::CheckTxnStatus { primary: req.primary.clone(), start_ts: req.start_ts, now };
    match propose(&node, &req.route, &[&req.primary], cmd).await? {
        Outcome::Status(status) => Ok(Json(CheckTxnStatusResponse { status })),
        other => Err(FlareError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

async fn region_resolve_lock(
    State(node): State<Arc<Node>>,
    Body(req): Body<ResolveLockRequest>,
) -> Api<ResolveLockResponse> {
    let cmd = Command::ResolveLock { start_ts: req.start_ts, commit_ts: req.commit_ts };
    match propose(&node, &req.route, &[], cmd).await? {
        Outcome::Count(resolved) => Ok(Json(ResolveLockResponse { resolved })),
        other => Err(FlareError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

async fn region_write(State(node): State<Arc<Node>>, Body(req): Body<WriteRequest>) -> Api<WriteResponse> {
    let op: crate::mvcc::OnePc = req.op.into();
    let token = match req.token.as_deref() {
        None => None,
        Some(t) => {
            Some(t.parse::<u128>().map_err(|_| FlareError::Invalid(format!("token {t:?} is not a decimal u128")))?)
        }
    };
    // Retries come within the dedup window; older first attempts are not looked for.
    let retry_since = (req.retry && token.is_some())
        .then(|| crate::ts::compose(crate::ts::now_ms().saturating_sub(crate::ts::DEDUP_WINDOW_MS), 0));
    let r = replica_for(&node, &req.route)?;
    r.check(req.route.version, &[op.key()])?;
    // Latched from before the commit timestamp is taken until the write applied.
    let _latch = r.latches.hold(op.key());
    match r.propose(Command::OnePc { op, commit_ts: 0, token, retry_since }).await? {
        Outcome::OnePc(result) => Ok(Json(WriteResponse::from_result(result))),
        other => Err(FlareError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

/// `?count=` of `/v1/ts` and `/internal/alloc_id`.
#[derive(Debug, Deserialize)]
struct Count {
    #[serde(default)]
    count: Option<u32>,
}

async fn ts(State(node): State<Arc<Node>>, headers: HeaderMap, Query(q): Query<Count>) -> Api<TsResponse> {
    refuse_second_hop(&node, &headers)?;
    let count = q.count.unwrap_or(1);
    if count == 0 || count > 100_000 {
        return Err(FlareError::Invalid(format!("count {count} must be between 1 and 100000")));
    }
    Ok(Json(TsResponse { ts: node.timestamps(count).await? }))
}

async fn alloc_id(State(node): State<Arc<Node>>, Query(q): Query<Count>) -> Api<IdResponse> {
    if node.meta_leader().is_none() {
        return Err(node.not_meta_leader());
    }
    Ok(Json(IdResponse { id: node.alloc_ids(u64::from(q.count.unwrap_or(1).max(1))).await? }))
}

/// A request a peer forwarded here because it took this node for the meta leader: when it is not
/// (any more), answer with the hint rather than forward again (see [`crate::node::PEER_HEADER`]).
fn refuse_second_hop(node: &Node, headers: &HeaderMap) -> Result<(), FlareError> {
    if headers.contains_key(crate::node::PEER_HEADER) && node.meta_leader().is_none() {
        return Err(node.not_meta_leader());
    }
    Ok(())
}

async fn regions(State(node): State<Arc<Node>>, headers: HeaderMap) -> Api<RegionsResponse> {
    refuse_second_hop(&node, &headers)?;
    let Some(meta) = node.meta_leader() else {
        return node.meta_post::<(), RegionsResponse>("/v1/regions", &()).await.map(Json);
    };
    meta.read_index().await?;
    let term = meta.raft.metrics().borrow().current_term;
    let state = meta.sm.shared().meta.unwrap_or_default();
    let live = node.placement.live_nodes(term, &state);
    let mut regions: Vec<RegionInfo> = state
        .regions
        .values()
        .map(|desc| {
            let leader = node.placement.leader_of(term, desc.id);
            RegionInfo { desc: desc.clone(), leader: leader.map(|l| l.0), approximate_keys: leader.map_or(0, |l| l.1) }
        })
        .collect();
    regions.sort_by(|a, b| a.desc.start.cmp(&b.desc.start));
    let nodes = state
        .nodes
        .iter()
        .map(|(id, n)| NodeEntry { id: *id, name: n.name.clone(), addr: n.addr.clone(), up: live.contains(id) })
        .collect();
    Ok(Json(RegionsResponse { regions, nodes }))
}

async fn status(State(node): State<Arc<Node>>) -> Json<StatusResponse> {
    let replicas = node
        .replicas()
        .iter()
        .map(|r| {
            let m = r.raft.metrics().borrow().clone();
            ReplicaStatus {
                group: r.id,
                desc: r.sm.desc(),
                role: format!("{:?}", m.state).to_lowercase(),
                leader: m.current_leader,
                applied: m.last_applied.map_or(0, |l| l.index),
                term: m.current_term,
            }
        })
        .collect();
    Json(StatusResponse { id: node.id, name: node.name.clone(), addr: node.addr.clone(), replicas })
}

async fn split(State(node): State<Arc<Node>>, Body(req): Body<SplitRequest>) -> Api<IdResponse> {
    Ok(Json(IdResponse { id: node.split(req.region, req.key).await? }))
}

async fn openapi() -> impl IntoResponse {
    ([(http::header::CONTENT_TYPE, "application/json")], crate::openapi::DOCUMENT)
}

async fn raft_rpc(
    State(node): State<Arc<Node>>,
    Path((group, kind)): Path<(RegionId, String)>,
    body: Bytes,
) -> Response {
    let replica = if kind == "vote" { node.replica(group) } else { node.replica_for_leader(group).await };
    let Ok(replica) = replica else {
        return (http::StatusCode::NOT_FOUND, format!("group {group} is not on this node")).into_response();
    };
    fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, Box<Response>> {
        bincode::deserialize(b).map_err(|e| {
            Box::new((http::StatusCode::BAD_REQUEST, format!("malformed raft message: {e}")).into_response())
        })
    }
    fn encode<T: serde::Serialize>(v: &T) -> Response {
        match bincode::serialize(v) {
            Ok(b) => ([(http::header::CONTENT_TYPE, "application/octet-stream")], b).into_response(),
            Err(e) => (http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }
    let result = match kind.as_str() {
        "append" => decode::<AppendEntriesRequest<TypeConfig>>(&body)
            .map(|req| async move { encode(&replica.raft.append_entries(req).await) }),
        "vote" => {
            return match decode::<VoteRequest<u64>>(&body) {
                Ok(req) => encode(&replica.raft.vote(req).await),
                Err(r) => *r,
            };
        }
        "snapshot" => {
            return match decode::<InstallSnapshotRequest<TypeConfig>>(&body) {
                Ok(req) => encode(&replica.raft.install_snapshot(req).await),
                Err(r) => *r,
            };
        }
        other => return (http::StatusCode::NOT_FOUND, format!("unknown raft RPC {other:?}")).into_response(),
    };
    match result {
        Ok(fut) => fut.await,
        Err(r) => *r,
    }
}

async fn create_replica(State(node): State<Arc<Node>>, Body(req): Body<CreateReplica>) -> Api<serde_json::Value> {
    node.create_replica(req).await?;
    Ok(Json(serde_json::json!({})))
}

async fn heartbeat(State(node): State<Arc<Node>>, Body(hb): Body<Heartbeat>) -> Api<HeartbeatResponse> {
    node.on_heartbeat(hb).await.map(Json)
}

async fn change(State(node): State<Arc<Node>>, Body(req): Body<ChangeReplicas>) -> Api<serde_json::Value> {
    node.change_replicas(req).await?;
    Ok(Json(serde_json::json!({})))
}
