//! The Rust client: routes each request to the leader of the key's region (a cached region
//! map, refreshed on "not leader", "stale region" and similar answers), retries through leader
//! changes, splits and moves, resolves locks left by crashed transactions, and runs
//! Percolator transactions with retry on conflict.
//!
//! One-phase writes carry a random token, so the client retries them safely even when it
//! cannot tell whether a first attempt applied; a transaction whose primary commit failed
//! ambiguously asks the primary for the transaction's fate instead of guessing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::*;
use crate::error::FlareError;
use crate::mvcc::{MvccError, TxnStatus};
use crate::node::decode_reply;
use crate::region::{NodeId, RegionDescriptor};
use crate::ts::Ts;

/// How long one operation keeps retrying routing problems and unavailability.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);
/// How long connecting to a node may take before the client tries another.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Lock lifetime of the client's transactions.
const LOCK_TTL_MS: u64 = 3_000;
/// Most attempts of [`Client::transact`].
const MAX_TXN_ATTEMPTS: usize = 200;

/// The client's view of the cluster.
#[derive(Debug, Default)]
struct RegionMap {
    /// Regions by start key.
    regions: BTreeMap<Vec<u8>, RegionDescriptor>,
    leaders: HashMap<u64, NodeId>,
    nodes: HashMap<NodeId, String>,
}

impl RegionMap {
    fn locate(&self, key: &[u8]) -> Option<RegionDescriptor> {
        let (_, r) =
            self.regions.range::<[u8], _>((std::ops::Bound::Unbounded, std::ops::Bound::Included(key))).next_back()?;
        r.contains(key).then(|| r.clone())
    }

    /// Where to send a request for `desc` on attempt `attempt`: the leader when known (but a
    /// replica in turn every fourth attempt), otherwise the replicas in turn.
    fn pick(&self, desc: &RegionDescriptor, attempt: usize) -> Option<(NodeId, String)> {
        let node = match self.leaders.get(&desc.id) {
            Some(l) if attempt % 4 != 3 => *l,
            _ if !desc.voters.is_empty() => desc.voters[attempt % desc.voters.len()],
            _ => return None,
        };
        Some((node, self.nodes.get(&node)?.clone()))
    }

    /// `node` did not answer for `region`: if it is taken for the region's leader, stop taking
    /// it for one, so the next attempts go to the other replicas (which name the leader) rather
    /// than again to a node that may be partitioned or dead.
    fn unanswered(&mut self, region: u64, node: NodeId) {
        if self.leaders.get(&region) == Some(&node) {
            self.leaders.remove(&region);
        }
    }

    /// The region holding the keys just below `end` (`None`: the last region).
    fn locate_before(&self, end: Option<&[u8]>) -> Option<RegionDescriptor> {
        match end {
            None => self.regions.values().find(|r| r.end.is_none()).cloned(),
            Some(e) => self
                .regions
                .values()
                .find(|r| r.start.as_slice() < e && r.end.as_deref().is_none_or(|re| e <= re))
                .cloned(),
        }
    }
}

/// A flaredb client; cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoints: Arc<Vec<String>>,
    map: Arc<RwLock<RegionMap>>,
}

/// A per-attempt routing decision.
struct Target {
    desc: RegionDescriptor,
    node: NodeId,
    addr: String,
}

fn read_map(m: &RwLock<RegionMap>) -> std::sync::RwLockReadGuard<'_, RegionMap> {
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_map(m: &RwLock<RegionMap>) -> std::sync::RwLockWriteGuard<'_, RegionMap> {
    m.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Client {
    /// A client of the cluster reachable at `endpoints` (`host:port` of any nodes).
    pub fn new(endpoints: Vec<String>) -> Result<Self, FlareError> {
        if endpoints.is_empty() {
            return Err(FlareError::Invalid("at least one endpoint is needed".into()));
        }
        let http = ultracloud_tls::client::http_client_builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(256)
            // A partitioned node drops the SYN: fail over to another replica in a second or
            // two rather than spending the whole request timeout on it.
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| FlareError::Internal(e.to_string()))?;
        Ok(Self { http, endpoints: Arc::new(endpoints), map: Arc::new(RwLock::new(RegionMap::default())) })
    }

    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &Req,
    ) -> Result<Resp, FlareError> {
        let reply = self
            .http
            .post(format!("{}://{addr}{path}", ultracloud_tls::client::scheme()))
            .json(body)
            .send()
            .await
            .map_err(|e| FlareError::Unavailable(format!("{addr}: {e}")))?;
        decode_reply(addr, reply).await
    }

    /// The region map as the placement component has it (any node forwards to it).
    pub async fn regions(&self) -> Result<RegionsResponse, FlareError> {
        let mut last = FlareError::Unavailable("no endpoint answered".into());
        let mut endpoints: Vec<String> = self.endpoints.to_vec();
        // Known nodes are endpoints too (the configured ones may have been replaced).
        endpoints.extend(read_map(&self.map).nodes.values().cloned());
        for addr in endpoints {
            match self.post::<(), RegionsResponse>(&addr, "/v1/regions", &()).await {
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Reloads the region map.
    pub async fn refresh(&self) -> Result<(), FlareError> {
        let r = self.regions().await?;
        let mut m = write_map(&self.map);
        m.regions = r.regions.iter().map(|i| (i.desc.start.clone(), i.desc.clone())).collect();
        m.leaders = r.regions.iter().filter_map(|i| i.leader.map(|l| (i.desc.id, l))).collect();
        m.nodes = r.nodes.into_iter().map(|n| (n.id, n.addr)).collect();
        Ok(())
    }

    /// Where to send a request for the region of `key` on attempt `attempt`: the leader when
    /// known, otherwise the replicas in turn.
    async fn target(
        &self,
        key: Option<&[u8]>,
        before: Option<Option<&[u8]>>,
        attempt: usize,
    ) -> Result<Target, FlareError> {
        for round in 0..2 {
            {
                let m = read_map(&self.map);
                let desc = match (key, before) {
                    (Some(k), _) => m.locate(k),
                    (None, Some(end)) => m.locate_before(end),
                    (None, None) => None,
                };
                if let Some(desc) = desc
                    && let Some((node, addr)) = m.pick(&desc, attempt)
                {
                    return Ok(Target { desc, node, addr });
                }
            }
            if round == 0 {
                self.refresh().await?;
            }
        }
        Err(FlareError::Unavailable("no region covers the key yet".into()))
    }

    /// Runs `call` against the region of `key` (or the region just below `before`), retrying
    /// routing problems and unavailability until [`OPERATION_TIMEOUT`].
    async fn routed<T, F, Fut>(
        &self,
        key: Option<&[u8]>,
        before: Option<Option<&[u8]>>,
        mut call: F,
    ) -> Result<T, FlareError>
    where
        F: FnMut(Target) -> Fut,
        Fut: std::future::Future<Output = Result<T, FlareError>>,
    {
        let deadline = Instant::now() + OPERATION_TIMEOUT;
        let mut attempt = 0usize;
        loop {
            let mut aimed = None;
            let result = match self.target(key, before, attempt).await {
                Ok(t) => {
                    aimed = Some((t.desc.id, t.node));
                    call(t).await
                }
                Err(e) => Err(e),
            };
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            attempt += 1;
            tracing::debug!(attempt, target = ?aimed, error = %err, "flaredb request failed");
            let retry = match &err {
                FlareError::NotLeader { region, leader: Some((id, addr)) } => {
                    let mut m = write_map(&self.map);
                    m.leaders.insert(*region, *id);
                    m.nodes.insert(*id, addr.clone());
                    true
                }
                FlareError::NotLeader { region, leader: None } => {
                    write_map(&self.map).leaders.remove(region);
                    tokio::time::sleep(backoff(attempt)).await;
                    true
                }
                FlareError::Unavailable(_) => {
                    if let Some((region, node)) = aimed {
                        write_map(&self.map).unanswered(region, node);
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                    if attempt.is_multiple_of(3) {
                        let _ = self.refresh().await;
                    }
                    true
                }
                e if e.is_routing() => {
                    tokio::time::sleep(backoff(attempt) / 2).await;
                    let _ = self.refresh().await;
                    true
                }
                _ => false,
            };
            if !retry || Instant::now() >= deadline {
                return Err(err);
            }
        }
    }

    /// A timestamp from the oracle.
    pub async fn timestamp(&self) -> Result<Ts, FlareError> {
        let mut last = FlareError::Unavailable("no endpoint answered".into());
        let deadline = Instant::now() + OPERATION_TIMEOUT;
        let mut attempt = 0;
        while Instant::now() < deadline {
            let mut endpoints: Vec<String> = self.endpoints.to_vec();
            endpoints.extend(read_map(&self.map).nodes.values().cloned());
            for addr in endpoints {
                match self.post::<(), TsResponse>(&addr, "/v1/ts", &()).await {
                    Ok(r) => return Ok(r.ts),
                    Err(e) => last = e,
                }
            }
            attempt += 1;
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(last)
    }

    /// The latest committed value of `key` (linearizable).
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, FlareError> {
        self.get_at(key, None).await
    }

    /// The value of `key` in the snapshot at `ts` (latest when `None`), resolving locks.
    pub async fn get_at(&self, key: &[u8], ts: Option<Ts>) -> Result<Option<Vec<u8>>, FlareError> {
        loop {
            let r = self
                .routed(Some(key), None, |t| {
                    let req = GetRequest {
                        route: Route { region: t.desc.id, version: Some(t.desc.version) },
                        key: key.to_vec(),
                        ts,
                    };
                    async move { self.post::<_, GetResponse>(&t.addr, "/v1/region/get", &req).await }
                })
                .await;
            match r {
                Ok(v) => return Ok(v.value),
                Err(FlareError::Mvcc { source: MvccError::KeyIsLocked { key, primary, start_ts, ttl_ms } }) => {
                    self.resolve(&key, &primary, start_ts, ttl_ms).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Settles a lock met by a read or a write: waits while its transaction lives, then commits
    /// or rolls back the lock as its primary says.
    pub async fn resolve(&self, key: &[u8], primary: &[u8], start_ts: Ts, ttl_ms: u64) -> Result<(), FlareError> {
        let status = self.txn_status(primary, start_ts).await?;
        let commit_ts = match status {
            TxnStatus::Locked { ttl_ms: left } => {
                tokio::time::sleep(Duration::from_millis(left.min(ttl_ms).clamp(5, 100))).await;
                return Ok(());
            }
            TxnStatus::Committed { commit_ts } => Some(commit_ts),
            TxnStatus::RolledBack => None,
        };
        self.routed(Some(key), None, |t| {
            let req = ResolveLockRequest {
                route: Route { region: t.desc.id, version: Some(t.desc.version) },
                start_ts,
                commit_ts,
            };
            async move { self.post::<_, ResolveLockResponse>(&t.addr, "/v1/region/resolve_lock", &req).await }
        })
        .await?;
        Ok(())
    }

    /// The fate of the transaction `start_ts` as its primary key tells it.
    pub async fn txn_status(&self, primary: &[u8], start_ts: Ts) -> Result<TxnStatus, FlareError> {
        let r = self
            .routed(Some(primary), None, |t| {
                let req = CheckTxnStatusRequest {
                    route: Route { region: t.desc.id, version: Some(t.desc.version) },
                    primary: primary.to_vec(),
                    start_ts,
                };
                async move { self.post::<_, CheckTxnStatusResponse>(&t.addr, "/v1/region/check_txn_status", &req).await }
            })
            .await?;
        Ok(r.status)
    }

    /// A one-phase write, retried safely (with a token) and through locks.
    async fn write(&self, op: JsonOnePc, key: &[u8]) -> Result<WriteResponse, FlareError> {
        let token = rand::random::<u128>().to_string();
        let mut attempts = 0u32;
        loop {
            let r = self
                .routed(Some(key), None, |t| {
                    attempts += 1;
                    let req = WriteRequest {
                        route: Route { region: t.desc.id, version: Some(t.desc.version) },
                        op: op.clone(),
                        token: Some(token.clone()),
                        retry: attempts > 1,
                    };
                    async move { self.post::<_, WriteResponse>(&t.addr, "/v1/region/write", &req).await }
                })
                .await;
            match r {
                Err(FlareError::Mvcc { source: MvccError::KeyIsLocked { key, primary, start_ts, ttl_ms } }) => {
                    self.resolve(&key, &primary, start_ts, ttl_ms).await?;
                }
                // Another write committed between our timestamp and our apply: take a new one.
                Err(FlareError::Mvcc { source: MvccError::WriteConflict { .. } }) => {}
                other => return other,
            }
        }
    }

    /// Sets `key` to `value`.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), FlareError> {
        self.write(JsonOnePc::Put { key: key.to_vec(), value: value.to_vec() }, key).await.map(|_| ())
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &[u8]) -> Result<(), FlareError> {
        self.write(JsonOnePc::Delete { key: key.to_vec() }, key).await.map(|_| ())
    }

    /// Sets `key` to `new` (deletes it when `None`) if its value is `expected` (`None`: absent).
    /// Returns `Ok(None)` on success and `Ok(Some(current))` when the value differed.
    pub async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Option<Option<Vec<u8>>>, FlareError> {
        let op =
            JsonOnePc::Cas { key: key.to_vec(), expected: expected.map(<[u8]>::to_vec), new: new.map(<[u8]>::to_vec) };
        let r = self.write(op, key).await?;
        Ok(if r.succeeded { None } else { Some(r.value) })
    }

    /// Adds `delta` to the decimal integer at `key` (absent: 0) and returns the new value.
    pub async fn increment(&self, key: &[u8], delta: i64) -> Result<i64, FlareError> {
        let r = self.write(JsonOnePc::Increment { key: key.to_vec(), delta }, key).await?;
        r.value
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| FlareError::Internal("increment answered without a number".into()))
    }

    /// Keys in `[start, end)` with their latest values, in key order (descending when
    /// `reverse`), at most `limit` (0: all), read in one snapshot across regions.
    pub async fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Pair>, FlareError> {
        let ts = self.timestamp().await?;
        self.scan_at(start, end, limit, reverse, ts).await
    }

    /// [`Client::scan`] in the snapshot at `ts`.
    pub async fn scan_at(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        reverse: bool,
        ts: Ts,
    ) -> Result<Vec<Pair>, FlareError> {
        let mut out: Vec<Pair> = Vec::new();
        let mut cursor_start = start.to_vec();
        let mut cursor_end: Option<Vec<u8>> = end.map(<[u8]>::to_vec);
        loop {
            let want = if limit == 0 { 0 } else { limit - out.len() };
            let (answer, region) = loop {
                let r = self
                    .routed(
                        if reverse { None } else { Some(cursor_start.as_slice()) },
                        if reverse { Some(cursor_end.as_deref()) } else { None },
                        |t| {
                            let s = if reverse {
                                std::cmp::max(t.desc.start.clone(), cursor_start.clone())
                            } else {
                                cursor_start.clone()
                            };
                            let req = ScanRequest {
                                route: Route { region: t.desc.id, version: Some(t.desc.version) },
                                start: s,
                                end: cursor_end.clone(),
                                ts: Some(ts),
                                limit: want,
                                reverse,
                            };
                            let desc = t.desc.clone();
                            async move {
                                let r = self.post::<_, ScanResponse>(&t.addr, "/v1/region/scan", &req).await?;
                                Ok((r, desc))
                            }
                        },
                    )
                    .await;
                match r {
                    Ok(v) => break v,
                    Err(FlareError::Mvcc { source: MvccError::KeyIsLocked { key, primary, start_ts, ttl_ms } }) => {
                        self.resolve(&key, &primary, start_ts, ttl_ms).await?;
                    }
                    Err(e) => return Err(e),
                }
            };
            let ScanResponse { pairs, more } = answer;
            let last = pairs.last().map(|p| p.key.clone());
            out.extend(pairs);
            if limit > 0 && out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
            // The answer was bounded: read on inside the same region, just past the last key.
            if let (true, Some(last)) = (more, last) {
                if reverse {
                    cursor_end = Some(last);
                } else {
                    cursor_start = last;
                    cursor_start.push(0);
                }
                continue;
            }
            if reverse {
                if region.start.as_slice() <= start || region.start.is_empty() {
                    return Ok(out);
                }
                cursor_end = Some(region.start.clone());
            } else {
                match &region.end {
                    None => return Ok(out),
                    Some(e) if end.is_some_and(|end| end <= e.as_slice()) => return Ok(out),
                    Some(e) => cursor_start = e.clone(),
                }
            }
        }
    }

    /// Splits the region holding `key` so that `key` starts a new region (an operator tool;
    /// regions also split by themselves when they grow). Returns the new region's ID.
    pub async fn split_at(&self, key: &[u8]) -> Result<u64, FlareError> {
        let r = self
            .routed(Some(key), None, |t| {
                let req = SplitRequest { region: t.desc.id, key: Some(key.to_vec()) };
                async move { self.post::<_, IdResponse>(&t.addr, "/v1/split", &req).await }
            })
            .await?;
        // The map changed: the next request must not route with the old range.
        let _ = self.refresh().await;
        Ok(r.id)
    }

    /// Starts a transaction (snapshot isolation; writes are buffered until commit).
    pub async fn begin(&self) -> Result<Txn, FlareError> {
        Ok(Txn { client: self.clone(), start_ts: self.timestamp().await?, writes: BTreeMap::new() })
    }

    /// Runs `body` in a transaction and commits it, retrying the whole transaction (with a new
    /// snapshot) on conflicts, until it commits or fails otherwise.
    pub async fn transact<T>(
        &self,
        mut body: impl AsyncFnMut(&mut Txn) -> Result<T, FlareError>,
    ) -> Result<T, FlareError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut txn = self.begin().await?;
            let result = match body(&mut txn).await {
                Ok(v) => txn.commit().await.map(|_| v),
                Err(e) => Err(e),
            };
            match result {
                Err(e) if is_retryable(&e) && attempt < MAX_TXN_ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt) / 4).await;
                }
                other => return other,
            }
        }
    }
}

impl Client {
    /// Like [`Client::transact`], for bodies that may refuse: `Ok(Err(refusal))` from `body`
    /// abandons the transaction — nothing it wrote is committed — and returns the refusal.
    /// Only `Ok(Ok(v))` commits.
    pub async fn transact_or_refuse<T, E>(
        &self,
        mut body: impl AsyncFnMut(&mut Txn) -> Result<Result<T, E>, FlareError>,
    ) -> Result<Result<T, E>, FlareError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut txn = self.begin().await?;
            let result = match body(&mut txn).await {
                Ok(Ok(v)) => txn.commit().await.map(|_| Ok(v)),
                // Dropped uncommitted: its writes were only buffered here, so nothing reached
                // the database and no lock is left behind.
                Ok(Err(refusal)) => return Ok(Err(refusal)),
                Err(e) => Err(e),
            };
            match result {
                Err(e) if is_retryable(&e) && attempt < MAX_TXN_ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt) / 4).await;
                }
                other => return other,
            }
        }
    }
}

/// Whether a transaction that failed with `e` may succeed when run again.
pub fn is_retryable(e: &FlareError) -> bool {
    matches!(e, FlareError::Mvcc { source } if source.is_retryable())
}

fn backoff(attempt: usize) -> Duration {
    Duration::from_millis((10u64 << attempt.min(5)).min(300))
}

/// A transaction: reads see the snapshot at `start_ts` plus its own writes.
#[derive(Debug)]
pub struct Txn {
    client: Client,
    /// The snapshot timestamp.
    pub start_ts: Ts,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Txn {
    /// The value of `key` in this transaction.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, FlareError> {
        if let Some(w) = self.writes.get(key) {
            return Ok(w.clone());
        }
        self.client.get_at(key, Some(self.start_ts)).await
    }

    /// Keys in `[start, end)` in this transaction (its own writes included).
    pub async fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Pair>, FlareError> {
        let extra = if limit == 0 { 0 } else { limit + self.writes.len() };
        let rows = self.client.scan_at(start, end, extra, reverse, self.start_ts).await?;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = rows.into_iter().map(|p| (p.key, p.value)).collect();
        for (k, v) in self.writes.range(start.to_vec()..) {
            if end.is_some_and(|e| k.as_slice() >= e) {
                break;
            }
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        let mut out: Vec<Pair> = merged.into_iter().map(|(key, value)| Pair { key, value }).collect();
        if reverse {
            out.reverse();
        }
        if limit > 0 {
            out.truncate(limit);
        }
        Ok(out)
    }

    /// Buffers a write of `key`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
    }

    /// Buffers a deletion of `key`.
    pub fn delete(&mut self, key: &[u8]) {
        self.writes.insert(key.to_vec(), None);
    }

    /// Prewrites `keys` (grouped by region) and returns the regions' routes used.
    async fn prewrite(&self, keys: &[Vec<u8>], primary: &[u8]) -> Result<(), FlareError> {
        let mut todo: Vec<Vec<u8>> = keys.to_vec();
        while let Some(first) = todo.first().cloned() {
            let batch = self
                .client
                .routed(Some(&first), None, |t| {
                    let in_region: Vec<JsonMutation> = todo
                        .iter()
                        .filter(|k| t.desc.contains(k))
                        .map(|k| JsonMutation { key: k.clone(), value: self.writes.get(k).cloned().flatten() })
                        .collect();
                    let done: Vec<Vec<u8>> = in_region.iter().map(|m| m.key.clone()).collect();
                    let req = PrewriteRequest {
                        route: Route { region: t.desc.id, version: Some(t.desc.version) },
                        mutations: in_region,
                        primary: primary.to_vec(),
                        start_ts: self.start_ts,
                        ttl_ms: LOCK_TTL_MS,
                    };
                    async move {
                        self.client.post::<_, serde_json::Value>(&t.addr, "/v1/region/prewrite", &req).await?;
                        Ok(done)
                    }
                })
                .await;
            match batch {
                Ok(done) => todo.retain(|k| !done.contains(k)),
                Err(FlareError::Mvcc { source: MvccError::KeyIsLocked { key, primary: p, start_ts, ttl_ms } })
                    if start_ts != self.start_ts =>
                {
                    // Clear a crashed transaction's lock, then try again (or give up as a conflict).
                    self.client.resolve(&key, &p, start_ts, ttl_ms).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Commits `keys` at `commit_ts`, by region.
    async fn commit_keys(&self, keys: &[Vec<u8>], commit_ts: Ts) -> Result<(), FlareError> {
        let mut todo: Vec<Vec<u8>> = keys.to_vec();
        while let Some(first) = todo.first().cloned() {
            let done = self
                .client
                .routed(Some(&first), None, |t| {
                    let in_region: Vec<Vec<u8>> = todo.iter().filter(|k| t.desc.contains(k)).cloned().collect();
                    let req = CommitRequest {
                        route: Route { region: t.desc.id, version: Some(t.desc.version) },
                        keys: in_region.clone(),
                        start_ts: self.start_ts,
                        commit_ts,
                    };
                    async move {
                        self.client.post::<_, serde_json::Value>(&t.addr, "/v1/region/commit", &req).await?;
                        Ok(in_region)
                    }
                })
                .await?;
            todo.retain(|k| !done.contains(k));
        }
        Ok(())
    }

    /// Commits the transaction (two-phase, Percolator): prewrite the primary's region first,
    /// then the others; take a commit timestamp; commit the primary — the commit point — then
    /// the rest. Returns the commit timestamp (the start timestamp for a read-only transaction).
    pub async fn commit(self) -> Result<Ts, FlareError> {
        if self.writes.is_empty() {
            return Ok(self.start_ts);
        }
        let keys: Vec<Vec<u8>> = self.writes.keys().cloned().collect();
        let primary = keys[0].clone();
        let prewritten = async {
            self.prewrite(std::slice::from_ref(&primary), &primary).await?;
            if keys.len() > 1 {
                self.prewrite(&keys[1..], &primary).await?;
            }
            Ok::<(), FlareError>(())
        }
        .await;
        if let Err(e) = prewritten {
            self.abandon(&keys).await;
            return Err(e);
        }
        let commit_ts = match self.client.timestamp().await {
            Ok(ts) => ts,
            Err(e) => {
                self.abandon(&keys).await;
                return Err(e);
            }
        };
        match self.commit_keys(std::slice::from_ref(&primary), commit_ts).await {
            Ok(()) => {}
            Err(e @ FlareError::Mvcc { .. }) => return Err(e),
            // The answer was lost: the primary knows whether the commit happened.
            Err(e) => match self.settle(&primary).await? {
                Some(ts) if ts == commit_ts => {}
                Some(_) | None => return Err(e),
            },
        }
        // Secondaries: a failure here is repaired by the next reader (their primary committed).
        if keys.len() > 1 {
            let _ = self.commit_keys(&keys[1..], commit_ts).await;
        }
        Ok(commit_ts)
    }

    /// Waits for the fate of this transaction after an ambiguous primary commit: the commit
    /// timestamp if it committed, `None` if it was rolled back.
    async fn settle(&self, primary: &[u8]) -> Result<Option<Ts>, FlareError> {
        loop {
            match self.client.txn_status(primary, self.start_ts).await? {
                TxnStatus::Committed { commit_ts } => return Ok(Some(commit_ts)),
                TxnStatus::RolledBack => return Ok(None),
                TxnStatus::Locked { ttl_ms } => {
                    tokio::time::sleep(Duration::from_millis(ttl_ms.clamp(10, 500))).await;
                }
            }
        }
    }

    /// Rolls back what a failed commit left (best effort: readers resolve the rest).
    async fn abandon(&self, keys: &[Vec<u8>]) {
        for key in keys {
            let _ = self
                .client
                .routed(Some(key), None, |t| {
                    let req = RollbackRequest {
                        route: Route { region: t.desc.id, version: Some(t.desc.version) },
                        keys: vec![key.clone()],
                        start_ts: self.start_ts,
                    };
                    async move { self.client.post::<_, serde_json::Value>(&t.addr, "/v1/region/rollback", &req).await }
                })
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_led_by(leader: NodeId) -> (RegionMap, RegionDescriptor) {
        let desc = RegionDescriptor {
            id: 1,
            start: Vec::new(),
            end: None,
            version: 1,
            conf_ver: 1,
            voters: vec![1, 2, 3],
            learners: Vec::new(),
        };
        let mut m = RegionMap::default();
        m.regions.insert(Vec::new(), desc.clone());
        m.leaders.insert(1, leader);
        m.nodes = (1..=3).map(|n| (n, format!("10.0.0.{n}:2479"))).collect();
        (m, desc)
    }

    #[test]
    fn requests_go_to_the_leader_and_to_each_replica_now_and_then() {
        let (m, desc) = map_led_by(3);
        let picks: Vec<NodeId> = (0..8).map(|a| m.pick(&desc, a).unwrap().0).collect();
        assert_eq!(picks, [3, 3, 3, 1, 3, 3, 3, 2]);
    }

    #[test]
    fn a_leader_that_does_not_answer_is_no_longer_tried_first() {
        // Partitioned away, the old leader drops every packet; were it still taken for the
        // leader, each attempt of an operation would wait on it until the operation timed out.
        let (mut m, desc) = map_led_by(3);
        m.unanswered(1, 3);
        let picks: Vec<NodeId> = (0..3).map(|a| m.pick(&desc, a).unwrap().0).collect();
        assert_eq!(picks, [1, 2, 3], "the replicas in turn, which name the new leader");
    }

    #[test]
    fn a_follower_that_does_not_answer_leaves_the_leader_known() {
        let (mut m, desc) = map_led_by(3);
        m.unanswered(1, 2);
        assert_eq!(m.pick(&desc, 0).unwrap().0, 3);
    }
}
