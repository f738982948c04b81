//! `ultracloud bench`: load generators that print figures (never pass/fail).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use ultracloud_flaredb::bench::{self as kv, KeyDistribution, Workload};

/// Measure throughput and latency of a running endpoint.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A TLS directory whose certificate the load generator presents (role admin): for
    /// `https://` etcd endpoints and a flaredb cluster that speaks TLS.
    #[arg(long, global = true, env = "ULTRACLOUD_TLS_DIR", value_name = "DIR")]
    tls_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    target: BenchTarget,
}

#[derive(Debug, Subcommand)]
enum BenchTarget {
    /// Any etcd v3 endpoint (chainfire or etcd): puts and linearizable gets at several
    /// concurrency levels, and watch delivery latency.
    Etcd(EtcdBench),
    /// A flaredb cluster: point gets, point puts and two-key read-write transactions, at
    /// several concurrency levels, with uniform and skewed (Zipf) keys over a preloaded key
    /// space. Compare with `bench postgres` (same workload; scripts/bench-flaredb.sh runs both).
    Flaredb(FlaredbBench),
    /// PostgreSQL, with flaredb's workload on one table `kv(k bytea PRIMARY KEY, v bytea NOT
    /// NULL)` (created if missing): SELECT, INSERT … ON CONFLICT DO UPDATE, and REPEATABLE READ
    /// transactions retried on serialization failures. One connection per client.
    Postgres(PostgresBench),
    /// iam: token issuance (password and API-key grants), `POST /v1/authorize`, and offline
    /// verification + decision in the shared guard, at several concurrency levels.
    Iam(super::bench_iam::IamBench),
    /// plasmavmc on this worker: VM create-to-ready (and its QEMU-boot part), N VMs created at
    /// once, and memory per VM (QEMU RSS + agent growth). Against a running stack, e.g.
    /// `ultracloud quickstart --keep` (its defaults).
    Vms(super::bench_vm::VmBench),
    /// A kit-based service's API: create/get/list/delete of prismnet ports through the typed
    /// client, at several concurrency levels (run against `ultracloud quickstart --keep`).
    Api(super::bench_api::ApiBench),
    /// lightningstor's data path: block PUTs (every copy durable) and GETs against running
    /// storage nodes (`--nodes name=URL,…`), at given sizes and concurrency.
    Blocks(super::bench_blocks::BlocksBench),
    /// Any S3 endpoint (lightningstor's gateway, Garage, …): PUTs and GETs of unique objects
    /// at given sizes and concurrency, with UNSIGNED-PAYLOAD bodies unless --signed-payload.
    /// scripts/bench-s3.sh runs it against lightningstor and Garage side by side.
    S3(super::bench_s3::S3Bench),
}

#[derive(Debug, Args)]
struct FlaredbBench {
    /// Nodes (host:port), comma-separated; client sessions start at each in turn.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:2479")]
    endpoints: Vec<String>,
    #[command(flatten)]
    kv: KvBenchArgs,
}

#[derive(Debug, Args)]
struct PostgresBench {
    /// Connection URL, e.g. postgres://bench@127.0.0.1:5432/postgres (no TLS).
    #[arg(long, value_name = "URL")]
    url: String,
    #[command(flatten)]
    kv: KvBenchArgs,
}

/// The workload grid shared by `bench flaredb` and `bench postgres`: every workload, for every
/// distribution, at every concurrency level.
#[derive(Debug, Args)]
struct KvBenchArgs {
    /// Workloads, comma-separated: get (point read), put (point write), txn (read two keys,
    /// write both, commit; conflicts retried).
    #[arg(long, value_delimiter = ',', default_value = "get,put,txn")]
    workloads: Vec<Workload>,
    /// Key distributions, comma-separated: uniform, zipf (exponent 0.99) or zipf:THETA.
    #[arg(long, value_delimiter = ',', default_value = "uniform,zipf")]
    distribution: Vec<KeyDistribution>,
    /// Concurrency levels, comma-separated (one connection each).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Requests per workload, distribution and level (spread over the clients).
    #[arg(long, default_value_t = 3000)]
    requests: usize,
    /// Distinct keys; all are written before the workloads run.
    #[arg(long, default_value_t = 10_000)]
    key_space: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Longest any one cell (and the preload) may run, in seconds.
    #[arg(long, default_value_t = 30)]
    max_seconds: u64,
    /// Do not write the key space first (it is already loaded).
    #[arg(long)]
    skip_preload: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl KvBenchArgs {
    fn config(&self) -> kv::BenchConfig {
        kv::BenchConfig {
            workloads: self.workloads.clone(),
            distributions: self.distribution.clone(),
            clients: self.clients.clone(),
            requests: self.requests,
            key_space: self.key_space,
            value_size: self.value_size,
            deadline: Duration::from_secs(self.max_seconds),
            skip_preload: self.skip_preload,
        }
    }

    fn print(&self, report: &kv::BenchReport) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(report)?);
        } else {
            print!("{}", kv::render(report));
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
struct EtcdBench {
    /// Endpoints, comma-separated; clients are spread over them.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    endpoints: Vec<String>,
    /// Concurrency levels, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Requests per workload and level.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 1000)]
    key_space: usize,
    /// Watch events to time.
    #[arg(long, default_value_t = 500)]
    watch_events: usize,
    /// Longest any one workload may run, in seconds.
    #[arg(long, default_value_t = 120)]
    max_seconds: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.tls_dir {
        ultracloud_tls::client::install_dir(dir)?;
    }
    match args.target {
        BenchTarget::Iam(a) => super::bench_iam::run(a).await?,
        BenchTarget::Vms(a) => return super::bench_vm::run(a).await,
        BenchTarget::Api(a) => return super::bench_api::run(a).await,
        BenchTarget::Blocks(a) => super::bench_blocks::run(a).await?,
        BenchTarget::S3(a) => super::bench_s3::run(a).await?,
        BenchTarget::Etcd(a) => {
            let config = ultracloud_chainfire::bench::BenchConfig {
                endpoints: a.endpoints,
                clients: a.clients,
                requests: a.requests,
                value_size: a.value_size,
                key_space: a.key_space,
                watch_events: a.watch_events,
                deadline: Duration::from_secs(a.max_seconds),
            };
            let results = ultracloud_chainfire::bench::run(&config).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                print!("{}", ultracloud_chainfire::bench::render(&results));
            }
        }
        BenchTarget::Flaredb(a) => {
            let backend = kv::FlaredbBackend::new(a.endpoints);
            let report = kv::run(&backend, &a.kv.config()).await.context("benchmarking flaredb")?;
            a.kv.print(&report)?;
        }
        BenchTarget::Postgres(a) => {
            let backend = ultracloud_bench_postgres::PostgresBackend::new(a.url);
            let report = kv::run(&backend, &a.kv.config()).await.context("benchmarking PostgreSQL")?;
            a.kv.print(&report)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
