//! A key-value load generator generic over the store it drives, so flaredb and PostgreSQL can
//! be measured with the same workload: point gets, point puts and small read-write
//! transactions (read two keys, write them back), at several concurrency levels, with keys
//! drawn uniformly or from a Zipf distribution (a few hot keys), over a preloaded key space.
//!
//! Each client runs one request at a time on its own session (one connection, like one
//! application process). Every cell of the grid is bounded by a request count and a deadline,
//! and figures are printed, never judged: docs/flaredb.md compares them with the targets.
//! [`FlaredbBackend`] is the flaredb side; the PostgreSQL side lives in its own crate
//! (`ultracloud-bench-postgres`) so flaredb does not depend on a PostgreSQL client.

use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use rand_distr::{Distribution as _, Zipf};
use serde::Serialize;

use crate::client::{Client, is_retryable};
use crate::error::FlareError;

/// How long a request may run past a cell's deadline before the client gives up on it.
const GRACE: Duration = Duration::from_secs(10);
/// Most attempts of one transaction (conflicts are retried, then counted as an error).
const MAX_TXN_ATTEMPTS: u32 = 100;
/// Concurrent sessions that preload the key space.
const PRELOAD_SESSIONS: usize = 32;

/// A request that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A transaction lost to a concurrent one; running it again may succeed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Preparing the target (connecting, creating the table) failed.
    #[error("cannot set up {target}")]
    Setup {
        /// The target.
        target: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Opening a client session failed.
    #[error("cannot open a session to {target}")]
    Session {
        /// The target.
        target: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Writing the key space before the workloads failed or ran out of time.
    #[error("preloading {keys} keys: {done} written, {errors} failed within {seconds} s")]
    Preload {
        /// Keys to write.
        keys: u64,
        /// Keys written.
        done: u64,
        /// Failed writes.
        errors: u64,
        /// The time allowed.
        seconds: u64,
        /// The first failure, if any.
        #[source]
        source: Option<RequestError>,
    },
}

/// A store the benchmark can drive.
pub trait KvBackend: Send + Sync + 'static {
    /// One client's connection.
    type Session: KvSession;
    /// Prepares the store (e.g. creates the table) and describes it for the report.
    fn setup(&self) -> impl Future<Output = Result<String, BenchError>> + Send;
    /// Opens a session (one per client).
    fn session(&self, index: usize) -> impl Future<Output = Result<Self::Session, BenchError>> + Send;
}

/// One client's connection to a store.
pub trait KvSession: Send + 'static {
    /// Reads `key` (the latest committed value).
    fn get(&mut self, key: &[u8]) -> impl Future<Output = Result<Option<Vec<u8>>, RequestError>> + Send;
    /// Writes `key` durably (insert or update).
    fn put(&mut self, key: &[u8], value: &[u8]) -> impl Future<Output = Result<(), RequestError>> + Send;
    /// One attempt of a snapshot-isolation transaction that reads every key of `keys` (sorted,
    /// distinct) and then writes `value` to each; [`RequestError::Conflict`] when it lost to
    /// a concurrent transaction and should be run again.
    fn read_write(&mut self, keys: &[Vec<u8>], value: &[u8]) -> impl Future<Output = Result<(), RequestError>> + Send;
}

/// What each request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Point read.
    Get,
    /// Point write.
    Put,
    /// Read two keys, write both, commit (conflicts retried).
    Txn,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so table columns line up.
        f.pad(match self {
            Workload::Get => "get",
            Workload::Put => "put",
            Workload::Txn => "txn",
        })
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "get" => Ok(Workload::Get),
            "put" => Ok(Workload::Put),
            "txn" => Ok(Workload::Txn),
            other => Err(format!("unknown workload {other:?} (get, put or txn)")),
        }
    }
}

/// How keys are drawn from the key space.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyDistribution {
    /// Every key equally likely.
    Uniform,
    /// Zipf with exponent `theta` over the key space (0.99: the YCSB default; the hottest key
    /// takes about a tenth of the requests over 10,000 keys). Hot keys are scattered over the
    /// key space, not clustered at its start.
    Zipf {
        /// The exponent.
        theta: f64,
    },
}

impl std::fmt::Display for KeyDistribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyDistribution::Uniform => f.pad("uniform"),
            KeyDistribution::Zipf { theta } => f.pad(&format!("zipf:{theta}")),
        }
    }
}

impl FromStr for KeyDistribution {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "uniform" => Ok(KeyDistribution::Uniform),
            None if s == "zipf" => Ok(KeyDistribution::Zipf { theta: 0.99 }),
            Some(("zipf", t)) => match t.parse::<f64>() {
                Ok(theta) if theta > 0.0 && theta.is_finite() => Ok(KeyDistribution::Zipf { theta }),
                _ => Err(format!("zipf exponent {t:?} must be a positive number")),
            },
            _ => Err(format!("unknown distribution {s:?} (uniform, zipf or zipf:THETA)")),
        }
    }
}

/// What to run: every workload × distribution × concurrency level.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Workloads, in order.
    pub workloads: Vec<Workload>,
    /// Key distributions, in order.
    pub distributions: Vec<KeyDistribution>,
    /// Concurrency levels (one session each).
    pub clients: Vec<usize>,
    /// Requests per cell (spread over the clients).
    pub requests: usize,
    /// Distinct keys; all are written before the workloads run.
    pub key_space: u64,
    /// Value size in bytes.
    pub value_size: usize,
    /// Upper bound on any one cell (and on the preload).
    pub deadline: Duration,
    /// Skip writing the key space first (it is already there).
    pub skip_preload: bool,
}

/// Figures of one cell.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// The workload.
    pub workload: Workload,
    /// The key distribution.
    pub distribution: KeyDistribution,
    /// Concurrent clients.
    pub clients: usize,
    /// Requests that succeeded.
    pub ok: usize,
    /// Requests that failed (for transactions: gave up after retries).
    pub errors: usize,
    /// Transaction attempts that conflicted and were run again.
    pub retries: usize,
    /// Wall time.
    pub seconds: f64,
    /// Successful requests per second.
    pub ops_per_sec: f64,
    /// Median latency in milliseconds (a transaction's includes its retries).
    pub p50_ms: f64,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: f64,
    /// The first failure, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// What was measured, as the backend describes it.
    pub target: String,
    /// Distinct keys.
    pub key_space: u64,
    /// Value size in bytes.
    pub value_size: usize,
    /// One row per cell.
    pub results: Vec<BenchResult>,
}

/// The key of index `i`.
pub fn key(i: u64) -> Vec<u8> {
    format!("bench/{i:010}").into_bytes()
}

/// Prepares `backend`, preloads the key space and runs every cell.
pub async fn run<B: KvBackend>(backend: &B, config: &BenchConfig) -> Result<BenchReport, BenchError> {
    let target = backend.setup().await?;
    let key_space = config.key_space.max(2);
    let mut value = vec![0u8; config.value_size];
    StdRng::seed_from_u64(7).fill_bytes(&mut value);
    if !config.skip_preload {
        preload(backend, key_space, &value, config.deadline).await?;
    }
    let mut results = Vec::new();
    for &distribution in &config.distributions {
        for &workload in &config.workloads {
            for &clients in &config.clients {
                let cell = Cell { workload, distribution, clients: clients.max(1), key_space };
                results.push(load(backend, config, &cell, &value).await?);
            }
        }
    }
    Ok(BenchReport { target, key_space, value_size: config.value_size, results })
}

async fn preload<B: KvBackend>(backend: &B, keys: u64, value: &[u8], allowed: Duration) -> Result<(), BenchError> {
    let deadline = Instant::now() + allowed;
    let sessions = (keys as usize).min(PRELOAD_SESSIONS);
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let mut session = backend.session(s).await?;
        let value = value.to_vec();
        tasks.push(tokio::spawn(async move {
            let (mut done, mut errors, mut first) = (0u64, 0u64, None);
            for i in (s as u64..keys).step_by(sessions) {
                if Instant::now() >= deadline {
                    break;
                }
                match tokio::time::timeout_at((deadline + GRACE).into(), session.put(&key(i), &value)).await {
                    Ok(Ok(())) => done += 1,
                    Ok(Err(e)) => {
                        errors += 1;
                        first.get_or_insert(e);
                    }
                    Err(_) => {
                        errors += 1;
                        first.get_or_insert(RequestError::Failed("timed out".into()));
                        break;
                    }
                }
            }
            (done, errors, first)
        }));
    }
    let (mut done, mut errors, mut first) = (0, 0, None);
    for t in tasks {
        match t.await {
            Ok((d, e, f)) => {
                done += d;
                errors += e;
                first = first.or(f);
            }
            Err(e) => {
                errors += 1;
                first = first.or(Some(RequestError::Failed(format!("preload task failed: {e}"))));
            }
        }
    }
    if done < keys {
        return Err(BenchError::Preload { keys, done, errors, seconds: allowed.as_secs(), source: first });
    }
    Ok(())
}

struct Cell {
    workload: Workload,
    distribution: KeyDistribution,
    clients: usize,
    key_space: u64,
}

/// Draws key indexes from a distribution.
struct KeyPicker {
    n: u64,
    zipf: Option<Zipf<f64>>,
    /// Multiplier coprime with `n` that scatters Zipf ranks over the key space.
    scatter: u64,
}

impl KeyPicker {
    fn new(distribution: KeyDistribution, n: u64) -> Self {
        let zipf = match distribution {
            KeyDistribution::Uniform => None,
            // Both arguments are checked (n >= 2, theta > 0), so this cannot fail; fall back to
            // uniform rather than panic if it ever does.
            KeyDistribution::Zipf { theta } => Zipf::new(n as f64, theta).ok(),
        };
        let mut scatter = 0x9E37_79B9_7F4A_7C15u64 % n;
        while gcd(scatter, n) != 1 {
            scatter += 1;
        }
        Self { n, zipf, scatter }
    }

    fn pick(&self, rng: &mut StdRng) -> u64 {
        match &self.zipf {
            None => rng.random_range(0..self.n),
            Some(z) => {
                // Ranks are 1..=n; rank 1 is the hottest.
                let rank = (z.sample(rng) as u64).clamp(1, self.n) - 1;
                ((u128::from(rank) * u128::from(self.scatter) + u128::from(self.n / 3)) % u128::from(self.n)) as u64
            }
        }
    }

    /// Two distinct keys, sorted (so lock-based stores cannot deadlock on them).
    fn pick_pair(&self, rng: &mut StdRng) -> [u64; 2] {
        let a = self.pick(rng);
        let mut b = self.pick(rng);
        for _ in 0..100 {
            if b != a {
                break;
            }
            b = self.pick(rng);
        }
        if b == a {
            b = (a + 1) % self.n;
        }
        if a < b { [a, b] } else { [b, a] }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// One client's figures.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: usize,
    retries: usize,
    first_error: Option<String>,
}

impl Tally {
    fn fail(&mut self, e: &RequestError) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

async fn load<B: KvBackend>(
    backend: &B,
    config: &BenchConfig,
    cell: &Cell,
    value: &[u8],
) -> Result<BenchResult, BenchError> {
    let mut sessions = Vec::with_capacity(cell.clients);
    for c in 0..cell.clients {
        sessions.push(backend.session(c).await?);
    }
    let deadline = Instant::now() + config.deadline;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(cell.clients);
    for (c, mut session) in sessions.into_iter().enumerate() {
        let count = config.requests / cell.clients + usize::from(c < config.requests % cell.clients);
        let picker = KeyPicker::new(cell.distribution, cell.key_space);
        let mut rng = StdRng::seed_from_u64(((c as u64) << 16) ^ cell.clients as u64);
        let value = value.to_vec();
        let workload = cell.workload;
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally { latencies: Vec::with_capacity(count), ..Tally::default() };
            for _ in 0..count {
                if Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                let op = one_request(&mut session, workload, &picker, &mut rng, &value, deadline + GRACE);
                match tokio::time::timeout_at((deadline + GRACE).into(), op).await {
                    Ok((Ok(()), retries)) => {
                        tally.latencies.push(t.elapsed());
                        tally.retries += retries;
                    }
                    Ok((Err(e), retries)) => {
                        tally.retries += retries;
                        tally.fail(&e);
                    }
                    Err(_) => {
                        tally.fail(&RequestError::Failed("timed out past the deadline".into()));
                        break;
                    }
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        match t.await {
            Ok(tally) => {
                all.latencies.extend(tally.latencies);
                all.errors += tally.errors;
                all.retries += tally.retries;
                all.first_error = all.first_error.or(tally.first_error);
            }
            Err(e) => all.fail(&RequestError::Failed(format!("client task failed: {e}"))),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(summarize(cell, all, seconds))
}

/// Runs one request (a transaction with its retries); returns the outcome and the retries.
async fn one_request<S: KvSession>(
    session: &mut S,
    workload: Workload,
    picker: &KeyPicker,
    rng: &mut StdRng,
    value: &[u8],
    give_up: Instant,
) -> (Result<(), RequestError>, usize) {
    match workload {
        Workload::Get => (session.get(&key(picker.pick(rng))).await.map(|_| ()), 0),
        Workload::Put => (session.put(&key(picker.pick(rng)), value).await, 0),
        Workload::Txn => {
            let keys: Vec<Vec<u8>> = picker.pick_pair(rng).iter().map(|&i| key(i)).collect();
            let mut attempt = 0;
            loop {
                attempt += 1;
                match session.read_write(&keys, value).await {
                    Err(RequestError::Conflict(_)) if attempt < MAX_TXN_ATTEMPTS && Instant::now() < give_up => {
                        // Jittered exponential backoff, the same for every backend.
                        let cap = 1u64 << attempt.min(6);
                        tokio::time::sleep(Duration::from_micros(rng.random_range(0..cap * 1000))).await;
                    }
                    other => return (other, attempt as usize - 1),
                }
            }
        }
    }
}

fn summarize(cell: &Cell, mut tally: Tally, seconds: f64) -> BenchResult {
    tally.latencies.sort();
    let l = &tally.latencies;
    let pct = |p: f64| -> f64 {
        if l.is_empty() {
            return 0.0;
        }
        let idx = ((l.len() as f64 - 1.0) * p).round() as usize;
        l[idx].as_secs_f64() * 1000.0
    };
    BenchResult {
        workload: cell.workload,
        distribution: cell.distribution,
        clients: cell.clients,
        ok: l.len(),
        errors: tally.errors,
        retries: tally.retries,
        seconds,
        ops_per_sec: if seconds > 0.0 { l.len() as f64 / seconds } else { 0.0 },
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        first_error: tally.first_error,
    }
}

/// The report as a fixed-width table (first failures listed below it).
pub fn render(report: &BenchReport) -> String {
    let mut out = format!(
        "# {} — {} keys, {}-byte values\n{:<8} {:<10} {:>7} {:>7} {:>6} {:>7} {:>7} {:>9} {:>8} {:>8}\n",
        report.target,
        report.key_space,
        report.value_size,
        "WORKLOAD",
        "KEYS",
        "CLIENTS",
        "OK",
        "ERRORS",
        "RETRIES",
        "SECONDS",
        "OPS/S",
        "P50 MS",
        "P99 MS"
    );
    for r in &report.results {
        out.push_str(&format!(
            "{:<8} {:<10} {:>7} {:>7} {:>6} {:>7} {:>7.2} {:>9.0} {:>8.2} {:>8.2}\n",
            r.workload,
            r.distribution,
            r.clients,
            r.ok,
            r.errors,
            r.retries,
            r.seconds,
            r.ops_per_sec,
            r.p50_ms,
            r.p99_ms
        ));
    }
    for r in report.results.iter().filter(|r| r.first_error.is_some()) {
        out.push_str(&format!(
            "# {} {} {} clients, first error: {}\n",
            r.workload,
            r.distribution,
            r.clients,
            r.first_error.as_deref().unwrap_or_default()
        ));
    }
    out
}

/// flaredb through its Rust client: get is a linearizable read, put a one-phase write,
/// the transaction a Percolator transaction (two round trips for reads, prewrite and commit).
#[derive(Debug, Clone)]
pub struct FlaredbBackend {
    endpoints: Vec<String>,
}

impl FlaredbBackend {
    /// The cluster reachable at `endpoints` (`host:port`).
    pub fn new(endpoints: Vec<String>) -> Self {
        Self { endpoints }
    }
}

fn failed(e: FlareError) -> RequestError {
    if is_retryable(&e) { RequestError::Conflict(e.to_string()) } else { RequestError::Failed(e.to_string()) }
}

impl KvBackend for FlaredbBackend {
    type Session = Client;

    async fn setup(&self) -> Result<String, BenchError> {
        let target = format!("flaredb at {}", self.endpoints.join(","));
        let setup = |e: FlareError| BenchError::Setup { target: target.clone(), source: Box::new(e) };
        let client = Client::new(self.endpoints.clone()).map_err(setup)?;
        let regions = client.regions().await.map_err(setup)?;
        Ok(format!("{target} ({} nodes, {} regions)", regions.nodes.len(), regions.regions.len()))
    }

    async fn session(&self, index: usize) -> Result<Client, BenchError> {
        // Each session starts at a different endpoint, so timestamp requests spread over nodes.
        let mut endpoints = self.endpoints.clone();
        let n = endpoints.len().max(1);
        endpoints.rotate_left(index % n);
        let session = |e: FlareError| BenchError::Session { target: "flaredb".into(), source: Box::new(e) };
        let client = Client::new(endpoints).map_err(session)?;
        client.refresh().await.map_err(session)?;
        Ok(client)
    }
}

impl KvSession for Client {
    async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, RequestError> {
        Client::get(self, key).await.map_err(failed)
    }

    async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), RequestError> {
        Client::put(self, key, value).await.map_err(failed)
    }

    async fn read_write(&mut self, keys: &[Vec<u8>], value: &[u8]) -> Result<(), RequestError> {
        let mut txn = self.begin().await.map_err(failed)?;
        for k in keys {
            txn.get(k).await.map_err(failed)?;
        }
        for k in keys {
            txn.put(k, value);
        }
        txn.commit().await.map(|_| ()).map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_parse() {
        assert_eq!("uniform".parse::<KeyDistribution>(), Ok(KeyDistribution::Uniform));
        assert_eq!("zipf".parse::<KeyDistribution>(), Ok(KeyDistribution::Zipf { theta: 0.99 }));
        assert_eq!("zipf:1.2".parse::<KeyDistribution>(), Ok(KeyDistribution::Zipf { theta: 1.2 }));
        assert!("zipf:-1".parse::<KeyDistribution>().is_err());
        assert!("normal".parse::<KeyDistribution>().is_err());
        assert_eq!("txn".parse::<Workload>(), Ok(Workload::Txn));
    }

    #[test]
    fn zipf_is_skewed_and_scattered_and_pairs_are_distinct() {
        let n = 10_000;
        let picker = KeyPicker::new(KeyDistribution::Zipf { theta: 0.99 }, n);
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..100_000 {
            let k = picker.pick(&mut rng);
            assert!(k < n);
            *counts.entry(k).or_insert(0u32) += 1;
        }
        let (&hottest, &hits) = counts.iter().max_by_key(|(_, c)| **c).unwrap();
        assert!(hits > 5_000, "the hottest key gets several percent of requests, got {hits}");
        assert_ne!(hottest, 0, "hot keys are scattered, not at the start");
        for _ in 0..1000 {
            let [a, b] = picker.pick_pair(&mut rng);
            assert!(a < b && b < n);
        }
        let uniform = KeyPicker::new(KeyDistribution::Uniform, 2);
        assert_eq!(uniform.pick_pair(&mut rng), [0, 1]);
    }
}
