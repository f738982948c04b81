//! lightningstor through its S3 gateways on the three control-plane nodes: an object PUT on
//! one gateway is read back on another with three copies of each of its blocks; a storage
//! node killed while objects stream in and out loses nothing acknowledged, and repair restores
//! its copies after it returns.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use reqwest::Method;
use serde_json::{Value, json};
use ultracloud_lightningstor::BlockId;
use ultracloud_lightningstor::client::NodeClient;
use ultracloud_lightningstor::client::s3::{S3Client, S3Key};

use super::control_plane::iam_login;
use super::{Runner, Seen};
use crate::lab::{Lab, http_ok, wait_until};
use crate::nodes::GATEWAY_BLOCK_BYTES;
use crate::topology::{Node, ports};

const BOUND: Duration = Duration::from_secs(90);
const BUCKET: &str = "smoke";
/// Where the smoke's key pair acts: tenant `smoke`, project `storage`.
const PROJECT: &str = "/v1/tenants/smoke/projects/storage";

fn node_url(n: &Node) -> String {
    format!("https://{}", n.addr(ports::LIGHTNINGSTOR_NODE))
}

/// The smoke's S3 key pair and a client of every control-plane node's gateway.
struct Ctx {
    http: reqwest::Client,
    iam: String,
    token: String,
    key: S3Key,
    gateways: Vec<S3Client>,
}

impl Ctx {
    /// Makes the tenant, project, key pair and bucket (what exists from an earlier run is kept).
    async fn open(lab: &Lab, cp: &[&Node]) -> anyhow::Result<Self> {
        let http = ultracloud_tls::client::http_client_builder().timeout(Duration::from_secs(30)).build()?;
        let iam = format!("https://{}", cp[0].addr(ports::IAM));
        let token = iam_login(lab, cp[0]).await?;
        for (path, body) in [
            ("/v1/tenants".to_owned(), json!({"id": "smoke"})),
            ("/v1/tenants/smoke/projects".to_owned(), json!({"id": "storage"})),
        ] {
            let r = http.post(format!("{iam}{path}")).bearer_auth(&token).json(&body).send().await?;
            ensure!(r.status().is_success() || r.status() == 409, "{path} answered {}", r.status());
        }
        let r = http
            .post(format!("{iam}{PROJECT}/s3-credentials"))
            .bearer_auth(&token)
            .json(&json!({"description": "cluster smoke"}))
            .send()
            .await?;
        ensure!(r.status() == 201, "creating an S3 key pair answered {}", r.status());
        let v: Value = r.json().await?;
        let key = S3Key {
            access_key_id: v["access_key_id"].as_str().context("no access_key_id")?.to_owned(),
            secret_access_key: v["secret_access_key"].as_str().context("no secret_access_key")?.to_owned(),
        };
        let gateways = cp
            .iter()
            .map(|n| S3Client::new(&format!("https://{}", n.addr(ports::LIGHTNINGSTOR)), key.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        match gateways[0].create_bucket(BUCKET).await {
            Ok(()) => {}
            Err(e) if e.code() == "BucketAlreadyOwnedByYou" => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Self { http, iam, token, key, gateways })
    }

    /// Deletes the key pair (the objects stay: a kept lab shows them).
    async fn close(&self) {
        let url = format!("{}{PROJECT}/s3-credentials/{}", self.iam, self.key.access_key_id);
        let _ = self.http.request(Method::DELETE, url).bearer_auth(&self.token).send().await;
    }
}

/// `count` distinct objects of 2.5 MiB (three blocks each), tagged so that runs never collide.
fn objects(tag: &str, count: usize) -> Vec<(String, Bytes)> {
    let nonce = ultracloud_runtime::clock::now_ms();
    (0..count)
        .map(|i| {
            let line = format!("{tag} {nonce} {i} ");
            let body: Vec<u8> = line.bytes().cycle().take(GATEWAY_BLOCK_BYTES * 5 / 2).collect();
            (format!("{}/{nonce}-{i}", tag.replace(' ', "-")), Bytes::from(body))
        })
        .collect()
}

/// The names of the blocks the gateways cut `body` into.
fn block_ids(body: &[u8]) -> Vec<BlockId> {
    body.chunks(GATEWAY_BLOCK_BYTES).map(BlockId::of).collect()
}

/// Runs the storage checks.
pub async fn run(lab: &Lab, r: &mut Runner) {
    const ACROSS: &str = "lightningstor S3: PUT on node01's gateway, GET on the others; 3 copies";
    let cp = lab.topo.control_plane();
    let ctx = match Ctx::open(lab, &cp).await {
        Ok(c) => c,
        Err(e) => {
            r.check(ACROSS, async { Err(e) }).await;
            return;
        }
    };
    r.check(ACROSS, across_gateways(&ctx, &cp)).await;
    r.check(
        "fault: a storage node killed mid-stream of S3 PUTs/GETs → nothing lost, repair restores 3 copies",
        kill_a_storage_node(lab, &ctx, &cp),
    )
    .await;
    ctx.close().await;
}

async fn across_gateways(ctx: &Ctx, cp: &[&Node]) -> anyhow::Result<Seen> {
    let data = objects("across gateways", 4);
    let start = Instant::now();
    for (key, body) in &data {
        ctx.gateways[0].put_object(BUCKET, key, body.clone()).await?;
    }
    let took = start.elapsed();
    for (key, body) in &data {
        for g in &ctx.gateways[1..] {
            ensure!(g.get_object(BUCKET, key).await? == *body, "{key} read back different through another gateway");
        }
    }
    for n in cp {
        let client = NodeClient::new(&node_url(n))?;
        for (key, body) in &data {
            for id in block_ids(body) {
                ensure!(client.has(id).await?, "{} lacks block {id} of {key}", n.name);
            }
        }
    }
    // A signature made with a wrong secret is refused, with S3's code.
    let forged = S3Key { secret_access_key: "not-the-secret".into(), ..ctx.key.clone() };
    let url = format!("https://{}", cp[1].addr(ports::LIGHTNINGSTOR));
    match S3Client::new(&url, forged)?.get_object(BUCKET, &data[0].0).await {
        Err(e) if e.code() == "SignatureDoesNotMatch" => {}
        other => anyhow::bail!("a forged signature got {other:?}"),
    }
    let mib = data.iter().map(|(_, b)| b.len()).sum::<usize>() as f64 / 1048576.0;
    Ok(Seen::new(format!(
        "4 objects ({mib:.0} MiB, 3 blocks each) PUT on {} in {:.2}s, read back on {}; every block on all three storage nodes; a forged signature refused",
        cp[0].name,
        took.as_secs_f64(),
        cp[1..].iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(" and ")
    ))
    .figure("put_10mib_s", took))
}

async fn kill_a_storage_node(lab: &Lab, ctx: &Ctx, cp: &[&Node]) -> anyhow::Result<Seen> {
    let victim = *cp.last().context("no control-plane node")?;
    let data = objects("stream", 24);
    let agent = crate::state::LabState::load(&lab.dir)?
        .and_then(|s| s.agents.get(&victim.name).copied())
        .context("the victim's node agent is not in the state file")?;
    let mut acked: Vec<&(String, Bytes)> = Vec::new();
    let mut killed = None;
    // A stream of PUTs (on node01's and node02's gateways in turn), each followed by a GET of
    // an earlier object on another gateway; the victim's storage node dies after the 8th PUT.
    // Its node agent is frozen meanwhile so that it cannot restart the storage node at once.
    let outcome = async {
        for (i, object) in data.iter().enumerate() {
            if i == 8 {
                let pid = super::control_plane::service_pid(victim, "lightningstor-node").await?;
                crate::sys::freeze(agent, true);
                crate::sys::kill(i32::try_from(pid)?);
                killed = Some(pid);
            }
            ctx.gateways[i % 2].put_object(BUCKET, &object.0, object.1.clone()).await?;
            acked.push(object);
            let (key, body) = acked[i / 2];
            let got = ctx.gateways[(i + 1) % 3].get_object(BUCKET, key).await?;
            ensure!(got == *body, "{key} read back different while streaming");
        }
        // Every acknowledged object reads back whole, on every gateway.
        for (i, (key, body)) in acked.iter().enumerate() {
            let got = ctx.gateways[i % 3].get_object(BUCKET, key).await?;
            ensure!(got == *body, "{key} read back different after the kill");
        }
        anyhow::Ok(())
    }
    .await;
    crate::sys::freeze(agent, false);
    outcome?;
    let pid = killed.context("the storage node was never killed")?;
    // The agent restarts it; the survivors' repair passes (every 2 s) send it what it missed.
    let admin = format!("http://{}/readyz", victim.addr(ports::LIGHTNINGSTOR_NODE_ADMIN));
    let back = wait_until(BOUND, "the storage node back", || http_ok(&admin)).await?;
    let victim_client = NodeClient::new(&node_url(victim))?;
    let blocks: Vec<BlockId> = acked.iter().flat_map(|(_, b)| block_ids(b)).collect();
    let restored = wait_until(BOUND, "three copies of every block again", || async {
        for id in &blocks {
            if !victim_client.has(*id).await.unwrap_or(false) {
                return false;
            }
        }
        true
    })
    .await?;
    Ok(Seen::new(format!(
        "killed {}'s storage node (pid {pid}) after 8 of 24 S3 PUTs; all 24 acknowledged objects read back on all three gateways; it was back after {:.1}s and held all {} blocks again {:.1}s later (repair)",
        victim.name,
        back.as_secs_f64(),
        blocks.len(),
        restored.as_secs_f64()
    ))
    .figure("node_back_s", back)
    .figure("repair_restored_s", restored))
}
