//! A load generator for any etcd v3 endpoint (chainfire or etcd itself), so both can be measured
//! with the same client: put throughput and latency at several concurrency levels, linearizable
//! get throughput, and watch delivery latency. Every workload is bounded by a request count and
//! a deadline.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::pb::etcdserverpb::kv_client::KvClient;
use crate::pb::etcdserverpb::watch_client::WatchClient;
use crate::pb::etcdserverpb::watch_request::RequestUnion;
use crate::pb::etcdserverpb::{PutRequest, RangeRequest, WatchCreateRequest, WatchRequest};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Endpoints (`http://host:port`); clients are spread over them round-robin.
    pub endpoints: Vec<String>,
    /// Concurrency levels to run puts and gets at.
    pub clients: Vec<usize>,
    /// Requests per workload and level.
    pub requests: usize,
    /// Value size in bytes.
    pub value_size: usize,
    /// Distinct keys written.
    pub key_space: usize,
    /// Watch events to time.
    pub watch_events: usize,
    /// Upper bound on any one workload.
    pub deadline: Duration,
}

/// Figures of one workload at one concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// `put`, `get-linearizable` or `watch-latency`.
    pub workload: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Requests that succeeded.
    pub ok: usize,
    /// Requests that failed.
    pub errors: usize,
    /// Wall time.
    pub seconds: f64,
    /// Successful requests per second.
    pub ops_per_sec: f64,
    /// Median latency in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: f64,
}

/// Runs every workload and returns the figures.
pub fn run<'a>(
    config: &'a BenchConfig,
) -> ultracloud_runtime::Entry<'a, Result<Vec<BenchResult>, crate::tls::EndpointError>> {
    Box::pin(run_all(config))
}

async fn run_all(config: &BenchConfig) -> Result<Vec<BenchResult>, crate::tls::EndpointError> {
    let mut results = Vec::new();
    for &clients in &config.clients {
        results.push(load(config, clients, Workload::Put).await?);
    }
    for &clients in &config.clients {
        results.push(load(config, clients, Workload::Get).await?);
    }
    results.push(watch_latency(config).await?);
    results.push(connect_cost(config, 32).await?);
    Ok(results)
}

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Put,
    Get,
}

async fn connect(endpoint: &str) -> Result<Channel, crate::tls::EndpointError> {
    Ok(crate::tls::endpoint(endpoint)?.tcp_nodelay(true).connect().await?)
}

async fn load(
    config: &BenchConfig,
    clients: usize,
    workload: Workload,
) -> Result<BenchResult, crate::tls::EndpointError> {
    let per_client = config.requests.div_ceil(clients);
    let value = vec![b'v'; config.value_size];
    let deadline = Instant::now() + config.deadline;
    // Connections first, then the clock: the rows measure requests on open connections (as a
    // long-lived service has them); the `connect` row measures setting one up (TLS included).
    let mut channels = Vec::with_capacity(clients);
    for c in 0..clients {
        channels.push(connect(&config.endpoints[c % config.endpoints.len()]).await?);
    }
    let mut tasks = Vec::new();
    let start = Instant::now();
    for (c, channel) in channels.into_iter().enumerate() {
        let value = value.clone();
        let key_space = config.key_space.max(1);
        tasks.push(tokio::spawn(async move {
            let mut kv = KvClient::new(channel);
            let mut latencies = Vec::with_capacity(per_client);
            let mut errors = 0;
            for i in 0..per_client {
                if Instant::now() > deadline {
                    break;
                }
                let key = format!("bench/{:08}", (c * per_client + i) % key_space).into_bytes();
                let t = Instant::now();
                let ok = match workload {
                    Workload::Put => {
                        kv.put(PutRequest { key, value: value.clone(), ..Default::default() }).await.is_ok()
                    }
                    Workload::Get => kv.range(RangeRequest { key, ..Default::default() }).await.is_ok(),
                };
                if ok {
                    latencies.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            latencies.extend(l);
            errors += e;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let name = match workload {
        Workload::Put => "put",
        Workload::Get => "get-linearizable",
    };
    Ok(summarize(name, clients, latencies, errors, seconds))
}

/// `count` connections opened one after another (TCP, TLS handshake when `https://`, HTTP/2
/// set-up and a first request): what a new client pays before its first answer.
async fn connect_cost(config: &BenchConfig, count: usize) -> Result<BenchResult, crate::tls::EndpointError> {
    let mut latencies = Vec::with_capacity(count);
    let start = Instant::now();
    for c in 0..count {
        let t = Instant::now();
        let mut kv = KvClient::new(connect(&config.endpoints[c % config.endpoints.len()]).await?);
        let key = b"bench/connect".to_vec();
        if kv.range(RangeRequest { key, serializable: true, ..Default::default() }).await.is_ok() {
            latencies.push(t.elapsed());
        }
    }
    let errors = count - latencies.len();
    Ok(summarize("connect+first-get", 1, latencies, errors, start.elapsed().as_secs_f64()))
}

async fn watch_latency(config: &BenchConfig) -> Result<BenchResult, crate::tls::EndpointError> {
    let endpoint = &config.endpoints[0];
    let mut watch = WatchClient::new(connect(endpoint).await?);
    let mut kv = KvClient::new(connect(endpoint).await?);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let _ = tx
        .send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: b"benchwatch/".to_vec(),
                range_end: b"benchwatch0".to_vec(),
                ..Default::default()
            })),
        })
        .await;
    let mut stream = match watch.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await {
        Ok(s) => s.into_inner(),
        Err(_) => return Ok(summarize("watch-latency", 1, Vec::new(), config.watch_events, 0.0)),
    };
    // The first message confirms the watch was created.
    let _ = stream.next().await;
    let origin = Instant::now();
    let expected = config.watch_events;
    let reader = tokio::spawn(async move {
        let mut latencies = Vec::new();
        while let Some(Ok(msg)) = stream.next().await {
            let now = origin.elapsed();
            for e in msg.events {
                let sent = e.kv.and_then(|kv| String::from_utf8(kv.value).ok()).and_then(|v| v.parse::<u128>().ok());
                if let Some(nanos) = sent {
                    latencies.push(now.saturating_sub(Duration::from_nanos(nanos as u64)));
                }
            }
            if latencies.len() >= expected {
                break;
            }
        }
        latencies
    });
    let start = Instant::now();
    let deadline = start + config.deadline;
    let mut errors = 0;
    for i in 0..config.watch_events {
        if Instant::now() > deadline {
            break;
        }
        let stamp = origin.elapsed().as_nanos().to_string();
        let req = PutRequest {
            key: format!("benchwatch/{i:06}").into_bytes(),
            value: stamp.into_bytes(),
            ..Default::default()
        };
        if kv.put(req).await.is_err() {
            errors += 1;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    // The reader ends once every event arrived; a lost event shows up as a missing sample.
    let latencies = match tokio::time::timeout(Duration::from_secs(10), reader).await {
        Ok(Ok(l)) => l,
        _ => Vec::new(),
    };
    drop(tx);
    Ok(summarize("watch-latency", 1, latencies, errors, seconds))
}

fn summarize(workload: &str, clients: usize, mut latencies: Vec<Duration>, errors: usize, seconds: f64) -> BenchResult {
    latencies.sort();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let idx = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[idx].as_secs_f64() * 1000.0
    };
    BenchResult {
        workload: workload.to_owned(),
        clients,
        ok: latencies.len(),
        errors,
        seconds,
        ops_per_sec: if seconds > 0.0 { latencies.len() as f64 / seconds } else { 0.0 },
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

/// The figures as a fixed-width table.
pub fn render(results: &[BenchResult]) -> String {
    let mut out = format!(
        "{:<18} {:>7} {:>7} {:>6} {:>8} {:>10} {:>8} {:>8}\n",
        "WORKLOAD", "CLIENTS", "OK", "ERRORS", "SECONDS", "OPS/S", "P50 MS", "P99 MS"
    );
    for r in results {
        out.push_str(&format!(
            "{:<18} {:>7} {:>7} {:>6} {:>8.2} {:>10.0} {:>8.2} {:>8.2}\n",
            r.workload, r.clients, r.ok, r.errors, r.seconds, r.ops_per_sec, r.p50_ms, r.p99_ms
        ));
    }
    out
}
