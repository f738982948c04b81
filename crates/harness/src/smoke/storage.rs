//! lightningstor's storage nodes on the three control-plane nodes: three copies of every
//! block, and a storage node killed while blocks are written and read.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use ultracloud_lightningstor::BlockId;
use ultracloud_lightningstor::client::{Cluster, NodeClient, StorageNode};
use ultracloud_lightningstor::layout::Member;

use super::{Runner, Seen};
use crate::lab::{Lab, http_ok, wait_until};
use crate::topology::{Node, ports};

const BOUND: Duration = Duration::from_secs(90);

fn url(n: &Node) -> String {
    format!("https://{}", n.addr(ports::LIGHTNINGSTOR_NODE))
}

fn cluster(cp: &[&Node]) -> anyhow::Result<Cluster> {
    let nodes = cp
        .iter()
        .map(|n| StorageNode { member: Member { id: n.name.clone(), zone: String::new(), weight: 1 }, url: url(n) })
        .collect();
    Ok(Cluster::new(nodes, 3, 1 << 20)?)
}

/// `count` distinct blocks of over 100 KiB, tagged so that runs never collide.
fn blocks(tag: &str, count: u32) -> Vec<Bytes> {
    let nonce = ultracloud_runtime::clock::now_ms();
    (0..count).map(|i| Bytes::from(format!("{tag} {nonce} {i} ").repeat(4096).into_bytes())).collect()
}

/// Runs the storage checks.
pub async fn run(lab: &Lab, r: &mut Runner) {
    let cp = lab.topo.control_plane();
    r.check("lightningstor: every block written lands on all three storage nodes", three_copies(&cp)).await;
    r.check(
        "fault: a storage node killed mid-stream → writes and reads go on, repair restores 3 copies",
        kill_a_storage_node(lab, &cp),
    )
    .await;
}

async fn three_copies(cp: &[&Node]) -> anyhow::Result<Seen> {
    let cluster = cluster(cp)?;
    let data = blocks("three copies", 32);
    let start = Instant::now();
    let mut ids = Vec::new();
    for d in &data {
        let w = cluster.write_block(d.clone()).await?;
        ensure!(w.on.len() == 3, "block {} has {} copies: {:?}", w.id, w.on.len(), w.on);
        ids.push(w.id);
    }
    let took = start.elapsed();
    for n in cp {
        let client = NodeClient::new(&url(n))?;
        for id in &ids {
            ensure!(client.has(*id).await?, "{} lacks block {id}", n.name);
        }
    }
    for (id, d) in ids.iter().zip(&data) {
        ensure!(cluster.read_block(*id).await? == *d, "block {id} read back different");
    }
    let mib = data.iter().map(Bytes::len).sum::<usize>() as f64 / 1048576.0;
    Ok(Seen::new(format!(
        "32 blocks ({mib:.1} MiB) written in {:.2}s, 3 fsync'd copies each, on {}",
        took.as_secs_f64(),
        cp.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
    ))
    .figure("write_32_blocks_s", took))
}

async fn kill_a_storage_node(lab: &Lab, cp: &[&Node]) -> anyhow::Result<Seen> {
    let victim = *cp.last().context("no control-plane node")?;
    let cluster = cluster(cp)?;
    let before = blocks("before the kill", 16);
    let mut ids: Vec<(BlockId, Bytes)> = Vec::new();
    for d in &before {
        ids.push((cluster.write_block(d.clone()).await?.id, d.clone()));
    }
    // Freeze the victim's node agent so it cannot restart the storage node at once.
    let agent = crate::state::LabState::load(&lab.dir)?
        .and_then(|s| s.agents.get(&victim.name).copied())
        .context("the victim's node agent is not in the state file")?;
    let pid = super::control_plane::service_pid(victim, "lightningstor-node").await?;
    crate::sys::freeze(agent, true);
    crate::sys::kill(i32::try_from(pid)?);
    let outcome = async {
        // Writes go on with the two survivors' copies; every block reads back.
        let during = blocks("while a node is down", 16);
        for d in &during {
            let w = cluster.write_block(d.clone()).await?;
            ensure!(!w.on.contains(&victim.name), "{} took a copy while killed", victim.name);
            ids.push((w.id, d.clone()));
        }
        for (id, d) in &ids {
            ensure!(cluster.read_block(*id).await? == *d, "block {id} read back different while a node was down");
        }
        anyhow::Ok(())
    }
    .await;
    crate::sys::freeze(agent, false);
    outcome?;
    // The agent restarts it; the survivors' repair passes (every 2 s) send it what it missed.
    let admin = format!("http://{}/readyz", victim.addr(ports::LIGHTNINGSTOR_NODE_ADMIN));
    let back = wait_until(BOUND, "the storage node back", || http_ok(&admin)).await?;
    let victim_client = NodeClient::new(&url(victim))?;
    let restored = wait_until(BOUND, "three copies of every block again", || async {
        for (id, _) in &ids {
            if !victim_client.has(*id).await.unwrap_or(false) {
                return false;
            }
        }
        true
    })
    .await?;
    Ok(Seen::new(format!(
        "killed {}'s storage node (pid {pid}); 16 writes and 32 reads went on without it; it was back after {:.1}s and held all 32 blocks again {:.1}s later (repair)",
        victim.name,
        back.as_secs_f64(),
        restored.as_secs_f64()
    ))
    .figure("node_back_s", back)
    .figure("repair_restored_s", restored))
}
