//! `ultracloud bench`: load generators that print figures (never pass/fail).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

/// Measure throughput and latency of a running endpoint.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    target: BenchTarget,
}

#[derive(Debug, Subcommand)]
enum BenchTarget {
    /// Any etcd v3 endpoint (chainfire or etcd): puts and linearizable gets at several
    /// concurrency levels, and watch delivery latency.
    Etcd(EtcdBench),
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
    match args.target {
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
    }
    Ok(ExitCode::SUCCESS)
}
