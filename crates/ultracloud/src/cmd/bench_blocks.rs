//! `ultracloud bench blocks`: lightningstor's data path against running storage nodes — block
//! PUTs (with every copy durable) and GETs (checked against their names) at a given size and
//! concurrency. It measures the storage layer under the S3 gateway, not S3 itself.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use ultracloud_lightningstor::BlockId;
use ultracloud_lightningstor::client::{Cluster, StorageNode};
use ultracloud_lightningstor::layout::Member;

use super::bench_api::cell;
use super::bench_iam::Cell;

/// Block PUT/GET throughput through lightningstor's data path.
#[derive(Debug, Args)]
pub struct BlocksBench {
    /// The storage nodes: name=URL,… (every node of the layout).
    #[arg(long, value_name = "NODES")]
    nodes: String,
    /// Copies of each block.
    #[arg(long, default_value_t = 3)]
    copies: usize,
    /// Block sizes in bytes, one cell each.
    #[arg(long, value_delimiter = ',', default_value = "4096,1048576")]
    sizes: Vec<usize>,
    /// Concurrent clients.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    clients: Vec<usize>,
    /// Blocks per cell (fewer when `--max-seconds` runs out first).
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Bound on each cell.
    #[arg(long, default_value_t = 30)]
    max_seconds: u64,
}

fn nodes(list: &str) -> anyhow::Result<Vec<StorageNode>> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part.split_once('=').with_context(|| format!("--nodes {part:?}: use name=URL"))?;
        out.push(StorageNode { member: Member { id: name.into(), zone: String::new(), weight: 1 }, url: url.into() });
    }
    if out.is_empty() {
        bail!("--nodes: name at least one storage node (name=URL,…)");
    }
    Ok(out)
}

/// `size` bytes unique to (`run`, `n`): the first bytes differ, the rest is filler.
fn block(run: u64, n: usize, size: usize) -> Bytes {
    let mut data = vec![0x5a; size.max(16)];
    data[..8].copy_from_slice(&run.to_le_bytes());
    data[8..16].copy_from_slice(&(n as u64).to_le_bytes());
    Bytes::from(data)
}

/// Runs the benchmark and prints a row per cell.
pub async fn run(a: BlocksBench) -> anyhow::Result<()> {
    let cluster = Arc::new(Cluster::new(nodes(&a.nodes)?, a.copies, 64 << 20)?);
    let deadline = Duration::from_secs(a.max_seconds);
    println!("{}   MiB/S", Cell::header());
    for &size in &a.sizes {
        for &clients in &a.clients {
            let run_id = ultracloud_runtime::clock::now_ms();
            let c2 = cluster.clone();
            let (put, written) = cell(clients, a.requests, deadline, move |i| {
                let cluster = c2.clone();
                async move { Ok(cluster.write_block(block(run_id, i, size)).await?.id) }
            })
            .await;
            let written: Arc<Vec<BlockId>> = Arc::new(written);
            let mib = |c: &Cell| (c.ops * size) as f64 / 1048576.0 / c.elapsed.as_secs_f64();
            println!("{}   {:>6.1}", put.row(&format!("put {size} B x{}", a.copies), clients), mib(&put));
            let (c3, w3) = (cluster.clone(), written.clone());
            let (get, _) = cell(clients, written.len(), deadline, move |i| {
                let (cluster, written) = (c3.clone(), w3.clone());
                async move {
                    let data = cluster.read_block(written[i]).await?;
                    anyhow::ensure!(data.len() == size.max(16), "block {} is {} bytes", written[i], data.len());
                    anyhow::Ok(())
                }
            })
            .await;
            println!("{}   {:>6.1}", get.row(&format!("get {size} B"), clients), mib(&get));
        }
    }
    Ok(())
}
