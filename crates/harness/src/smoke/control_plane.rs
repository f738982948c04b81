//! Smoke checks of the control plane: readiness, reachability from other nodes, chainfire,
//! flaredb and iam across nodes, and fault injection (leader killed, partition, power loss).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use ultracloud_flaredb::api::StatusResponse;

use super::{Runner, Seen};
use crate::lab::{Lab, http_ok, services_of, wait_until};
use crate::network;
use crate::nodes;
use crate::topology::{Node, ports};

const BOUND: Duration = Duration::from_secs(90);

/// A random-enough value so a check never reads an old run's data.
fn nonce() -> String {
    ultracloud_iam::credential::new_id()
}

async fn etcd(node: &Node) -> anyhow::Result<etcd_client::Client> {
    let opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(1));
    crate::probe::etcd_connect(&node.addr(ports::CHAINFIRE).to_string(), opts)
        .await
        .with_context(|| format!("connecting to chainfire on {}", node.name))
}

async fn etcd_put(node: &Node, key: &str, value: &str) -> anyhow::Result<()> {
    etcd(node).await?.put(key, value, None).await.with_context(|| format!("put through {}", node.name))?;
    Ok(())
}

async fn etcd_get(node: &Node, key: &str, serializable: bool) -> anyhow::Result<Option<String>> {
    let opts = serializable.then(|| etcd_client::GetOptions::new().with_serializable());
    let r = etcd(node).await?.get(key, opts).await.with_context(|| format!("get through {}", node.name))?;
    Ok(r.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
}

fn flare(nodes: &[&Node]) -> anyhow::Result<ultracloud_flaredb::Client> {
    Ok(ultracloud_flaredb::Client::new(nodes.iter().map(|n| n.addr(ports::FLAREDB).to_string()).collect())?)
}

async fn flare_status(node: &Node) -> anyhow::Result<StatusResponse> {
    let url = format!("https://{}/v1/status", node.addr(ports::FLAREDB));
    let r = ultracloud_tls::client::http_client().get(&url).timeout(Duration::from_secs(3)).send().await?;
    Ok(r.error_for_status()?.json().await?)
}

pub(super) async fn iam_login(lab: &Lab, node: &Node) -> anyhow::Result<String> {
    let pw = std::fs::read_to_string(lab.secrets()?.admin_password)?.trim().to_owned();
    let body = json!({"grant_type": "password", "username": "admin", "password": pw});
    let url = format!("https://{}/v1/auth/token", node.addr(ports::IAM));
    let r = ultracloud_tls::client::http_client().post(&url).json(&body).timeout(Duration::from_secs(5)).send().await?;
    ensure!(r.status().is_success(), "login at {} answered {}", node.name, r.status());
    let v: Value = r.json().await?;
    v["access_token"].as_str().map(str::to_owned).context("no access_token in the answer")
}

async fn iam_whoami(node: &Node, token: &str) -> anyhow::Result<String> {
    let url = format!("https://{}/v1/auth/whoami", node.addr(ports::IAM));
    let r = ultracloud_tls::client::http_client()
        .get(&url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    ensure!(r.status().is_success(), "{} answered {}", node.name, r.status());
    let v: Value = r.json().await?;
    Ok(v["claims"]["sub"].as_str().unwrap_or_default().to_owned())
}

/// Runs the probe subcommand inside `from`'s namespace.
async fn probe_from(lab: &Lab, from: &Node, urls: &[String]) -> anyhow::Result<Vec<crate::probe::Outcome>> {
    let out = tokio::process::Command::new("ip")
        .args(["netns", "exec", &from.ns()])
        .arg(lab.binary())
        .args(["cluster", "probe"])
        .arg(format!("--tls-dir={}", lab.secrets()?.admin_tls_dir().display()))
        .args(urls)
        .output()
        .await
        .context("running the probe")?;
    Ok(crate::probe::parse(&String::from_utf8_lossy(&out.stdout)))
}

/// Applied index per group, the highest among `nodes`.
async fn applied_targets(nodes: &[&Node]) -> BTreeMap<u64, u64> {
    let mut targets = BTreeMap::new();
    for n in nodes {
        if let Ok(s) = flare_status(n).await {
            for r in s.replicas {
                let t = targets.entry(r.group).or_insert(0);
                *t = (*t).max(r.applied);
            }
        }
    }
    targets
}

/// Whether every replica of `node` has applied at least the target of its group.
async fn caught_up(node: &Node, targets: &BTreeMap<u64, u64>) -> bool {
    match flare_status(node).await {
        Ok(s) => {
            !s.replicas.is_empty() && s.replicas.iter().all(|r| targets.get(&r.group).is_none_or(|t| r.applied >= *t))
        }
        Err(_) => false,
    }
}

/// Every check, in order.
pub async fn run(lab: &Lab, r: &mut Runner) {
    let topo = &lab.topo;
    let cp = topo.control_plane();
    let (n1, n2, n3) = (cp[0], cp[1], cp[2]);

    r.check("every node agent and service is ready", async {
        let mut count = 0;
        for n in &topo.nodes {
            let mut urls = vec![format!("http://{}/readyz", n.addr(ports::AGENT))];
            urls.extend(services_of(n.role).iter().map(|(_, p)| format!("http://{}/readyz", n.addr(*p))));
            for url in urls {
                wait_until(BOUND, &format!("{url} on {}", n.name), || http_ok(&url)).await?;
                count += 1;
            }
        }
        Ok(Seen::new(format!("{count} /readyz endpoints answer 200")))
    })
    .await;

    r.check("every surface answers from another node", async {
        let mut count = 0;
        for (i, n) in topo.nodes.iter().enumerate() {
            let from = &topo.nodes[(i + 1) % topo.nodes.len()];
            let mut urls = vec![format!("http://{}/healthz", n.addr(ports::AGENT))];
            urls.extend(services_of(n.role).iter().map(|(_, p)| format!("http://{}/healthz", n.addr(*p))));
            if services_of(n.role).iter().any(|(s, _)| *s == "chainfire") {
                urls.push(format!("etcd://{}", n.addr(ports::CHAINFIRE)));
                urls.push(format!("https://{}/v1/regions", n.addr(ports::FLAREDB)));
                urls.push(format!("https://{}/v1/openapi.json", n.addr(ports::IAM)));
                urls.push(format!("https://{}/.well-known/jwks.json", n.addr(ports::IAM)));
            }
            for (url, outcome) in probe_from(lab, from, &urls).await? {
                match outcome {
                    Ok(s) if (200..300).contains(&s) => count += 1,
                    other => bail!("{url} from {}: {other:?}", from.name),
                }
            }
        }
        Ok(Seen::new(format!("{count} admin and API surfaces reached, each from a neighbouring node")))
    })
    .await;

    r.check("chainfire: 3 members", async {
        let mut c = etcd(n1).await?;
        let mut names: Vec<String> = c.member_list().await?.members().iter().map(|m| m.name().to_owned()).collect();
        names.sort();
        let want: Vec<String> = cp.iter().map(|n| n.name.clone()).collect();
        ensure!(names == want, "members {names:?}, expected {want:?}");
        Ok(Seen::new(names.join(", ")))
    })
    .await;

    r.check("chainfire: write on node01, linearizable read on node03", async {
        let v = nonce();
        etcd_put(n1, "smoke/chainfire", &v).await?;
        let got = etcd_get(n3, "smoke/chainfire", false).await?;
        ensure!(got.as_deref() == Some(v.as_str()), "node03 read {got:?}");
        Ok(Seen::new("node03 read the value node01 wrote"))
    })
    .await;

    r.check("flaredb: write through node01, read through node02 and node03", async {
        let v = nonce();
        flare(&[n1])?.put(b"smoke/flaredb", v.as_bytes()).await.context("put through node01")?;
        for n in [n2, n3] {
            let got = flare(&[n])?.get(b"smoke/flaredb").await.with_context(|| format!("get through {}", n.name))?;
            ensure!(got.as_deref() == Some(v.as_bytes()), "{} read {got:?}", n.name);
        }
        Ok(Seen::new("both read the value"))
    })
    .await;

    r.check("flaredb: every region has replicas on 3 nodes", async {
        let client = flare(&cp)?;
        let last = std::sync::Mutex::new(String::new());
        let took = wait_until(BOUND, "3 replicas per region", || {
            let client = client.clone();
            let last = &last;
            async move {
                let Ok(map) = client.regions().await else { return false };
                let ok = map.regions.iter().all(|r| {
                    let mut v = r.desc.voters.clone();
                    v.sort_unstable();
                    v.dedup();
                    v.len() == 3
                });
                *last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    format!("{} regions", map.regions.len());
                ok && !map.regions.is_empty()
            }
        })
        .await;
        let last = last.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        let took = took.with_context(|| last.clone())?;
        Ok(Seen::new(format!("{last}, 3 voters each")).figure("waited_s", took))
    })
    .await;

    r.check("iam: a token issued by node01 is accepted by node02 and node03", async {
        let token = iam_login(lab, n1).await?;
        for n in [n2, n3] {
            let sub = iam_whoami(n, &token).await?;
            ensure!(sub == "user:admin", "{} says the token is {sub}", n.name);
        }
        Ok(Seen::new("whoami = user:admin on both"))
    })
    .await;

    r.check(
        "wire: chainfire, flaredb and storage nodes refuse clients without a cluster certificate",
        super::wire::refuse_without_certificates(lab),
    )
    .await;
    r.check("fault: chainfire leader killed → new leader, writes continue", kill_chainfire_leader(lab)).await;
    // The node leading flaredb's first region is partitioned: the majority must elect a new
    // leader and clients must stop waiting on the old one. (node03 when no leader is known.)
    let victim = flaredb_leader(lab, &cp).await.unwrap_or(n3);
    let majority: Vec<&Node> = cp.iter().copied().filter(|n| n.name != victim.name).collect();
    r.check(
        "fault: flaredb's region leader partitioned → majority writes, heals, catches up",
        partition_node(victim, [majority[0], majority[1]]),
    )
    .await;
    r.check("fault: node02 loses power → flaredb and iam serve, it rejoins", power_loss(lab, n2, [n1, n3])).await;
}

async fn chainfire_leader(lab: &Lab) -> anyhow::Result<&Node> {
    for n in lab.topo.control_plane() {
        let Ok(mut c) = etcd(n).await else { continue };
        let Ok(status) = c.status().await else { continue };
        let leader = status.leader();
        let members = c.member_list().await?;
        if let Some(m) = members.members().iter().find(|m| m.id() == leader) {
            return lab.node(m.name());
        }
    }
    bail!("no chainfire member names a leader")
}

/// The node leading flaredb's first region, as the placement component knows it.
async fn flaredb_leader<'a>(lab: &'a Lab, cp: &[&Node]) -> Option<&'a Node> {
    let map = flare(cp).ok()?.regions().await.ok()?;
    let leader = map.regions.first()?.leader?;
    let name = &map.nodes.iter().find(|n| n.id == leader)?.name;
    lab.node(name).ok()
}

pub(super) async fn service_pid(node: &Node, service: &str) -> anyhow::Result<u32> {
    let status = ultracloud_node_agent::client::fetch_status(node.addr(ports::AGENT)).await?;
    status
        .services
        .iter()
        .find(|s| s.name == service)
        .and_then(|s| s.pid)
        .with_context(|| format!("{service} has no pid on {}", node.name))
}

async fn kill_chainfire_leader(lab: &Lab) -> anyhow::Result<Seen> {
    let leader = chainfire_leader(lab).await?;
    let pid = service_pid(leader, "chainfire").await?;
    let survivor = *lab.topo.control_plane().iter().find(|n| n.name != leader.name).context("no survivor")?;
    // Freeze the leader's node agent first, so it cannot restart the member before the others
    // have elected a new leader; it restarts it once let go.
    let agent = crate::state::LabState::load(&lab.dir)?
        .and_then(|s| s.agents.get(&leader.name).copied())
        .context("the leader's node agent is not in the state file")?;
    crate::sys::freeze(agent, true);
    crate::sys::kill(i32::try_from(pid)?);
    let outcome = async {
        let failover = wait_until(BOUND, "a write through a survivor", || async {
            etcd_put(survivor, "smoke/failover", &nonce()).await.is_ok()
        })
        .await?;
        let new_leader = chainfire_leader(lab).await?.name.clone();
        ensure!(new_leader != leader.name, "the leader is still {new_leader}");
        anyhow::Ok((failover, new_leader))
    }
    .await;
    crate::sys::freeze(agent, false);
    let (failover, new_leader) = outcome?;
    // The node agent restarts the killed member; it must come back and catch up.
    let back = wait_until(BOUND, "the killed member back", || async {
        http_ok(&format!("http://{}/readyz", leader.addr(ports::CHAINFIRE_ADMIN))).await
            && etcd_get(leader, "smoke/failover", true).await.is_ok_and(|v| v.is_some())
    })
    .await?;
    Ok(Seen::new(format!(
        "killed the leader on {} (pid {pid}); {new_leader} leads and writes resumed after {:.2}s; the restarted member caught up {:.1}s after its agent resumed",
        leader.name,
        failover.as_secs_f64(),
        back.as_secs_f64()
    ))
    .figure("write_failover_s", failover)
    .figure("member_back_s", back))
}

async fn partition_node(victim: &Node, majority: [&Node; 2]) -> anyhow::Result<Seen> {
    network::partition(&victim.ns())?;
    let result = async {
        let start = Instant::now();
        let chainfire = wait_until(BOUND, "chainfire write through the majority", || async {
            etcd_put(majority[0], "smoke/partition", "during").await.is_ok()
        })
        .await?;
        let db = flare(&majority)?;
        let flaredb = wait_until(BOUND, "flaredb writes through the majority", || {
            let db = db.clone();
            async move {
                for i in 0..10 {
                    if db.put(format!("smoke/partition/{i}").as_bytes(), b"during").await.is_err() {
                        return false;
                    }
                }
                true
            }
        })
        .await?;
        let v = nonce();
        etcd_put(majority[0], "smoke/partition", &v).await?;
        anyhow::Ok((start, chainfire, flaredb, v))
    }
    .await;
    // Heal whatever happened, so a failure leaves the cluster whole.
    network::heal(&victim.ns())?;
    let (_, chainfire, flaredb, v) = result?;
    let targets = applied_targets(&majority).await;
    let cf_catch = wait_until(BOUND, "chainfire catch-up on the healed node", || async {
        etcd_get(victim, "smoke/partition", true).await.is_ok_and(|got| got.as_deref() == Some(v.as_str()))
    })
    .await?;
    let db_catch = wait_until(BOUND, "flaredb catch-up on the healed node", || caught_up(victim, &targets)).await?;
    Ok(Seen::new(format!(
        "majority wrote chainfire after {:.2}s and flaredb after {:.2}s; after healing {} caught up: chainfire {:.2}s, flaredb {:.2}s",
        chainfire.as_secs_f64(),
        flaredb.as_secs_f64(),
        victim.name,
        cf_catch.as_secs_f64(),
        db_catch.as_secs_f64()
    ))
    .figure("chainfire_majority_write_s", chainfire)
    .figure("flaredb_majority_write_s", flaredb)
    .figure("chainfire_catch_up_s", cf_catch)
    .figure("flaredb_catch_up_s", db_catch))
}

async fn power_loss(lab: &Lab, victim: &Node, others: [&Node; 2]) -> anyhow::Result<Seen> {
    let killed = nodes::kill_all(&victim.ns());
    let db = flare(&others)?;
    let flaredb = wait_until(BOUND, "flaredb write and read without the node", || {
        let db = db.clone();
        async move {
            db.put(b"smoke/offline", b"written while down").await.is_ok()
                && db.get(b"smoke/offline").await.is_ok_and(|v| v.as_deref() == Some(b"written while down".as_slice()))
        }
    })
    .await?;
    let iam = wait_until(BOUND, "iam login on one node, token accepted on the other", || async {
        match iam_login(lab, others[0]).await {
            Ok(t) => iam_whoami(others[1], &t).await.is_ok(),
            Err(_) => false,
        }
    })
    .await?;
    let v = nonce();
    wait_until(BOUND, "chainfire write without the node", || async {
        etcd_put(others[0], "smoke/offline", &v).await.is_ok()
    })
    .await?;
    let pid = lab.restart_node(victim)?;
    let restarted = Instant::now();
    let cf = wait_until(BOUND, "chainfire on the restarted node", || async {
        etcd_get(victim, "smoke/offline", true).await.is_ok_and(|got| got.as_deref() == Some(v.as_str()))
    })
    .await?;
    let targets = applied_targets(&others).await;
    wait_until(BOUND, "flaredb on the restarted node", || caught_up(victim, &targets)).await?;
    let db_rejoin = restarted.elapsed();
    let token = iam_login(lab, others[0]).await?;
    wait_until(BOUND, "iam on the restarted node", || async { iam_whoami(victim, &token).await.is_ok() }).await?;
    let iam_rejoin = restarted.elapsed();
    Ok(Seen::new(format!(
        "killed {killed} processes on {}; flaredb served after {:.2}s, iam after {:.2}s; restarted (agent pid {pid}): chainfire caught up in {:.1}s, flaredb {:.1}s, iam {:.1}s",
        victim.name,
        flaredb.as_secs_f64(),
        iam.as_secs_f64(),
        cf.as_secs_f64(),
        db_rejoin.as_secs_f64(),
        iam_rejoin.as_secs_f64()
    ))
    .figure("flaredb_serving_s", flaredb)
    .figure("iam_serving_s", iam)
    .figure("chainfire_rejoin_s", cf)
    .figure("flaredb_rejoin_s", db_rejoin)
    .figure("iam_rejoin_s", iam_rejoin))
}
