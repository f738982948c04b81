//! Smoke checks of plasmavmc: real QEMU guests (the project's guest image, TCG) on the two
//! workers in one tenant subnet; they reach each other; one is rebooted and cold-migrated
//! node04 → node05 and still answers at the same address, then live-migrated back keeping its
//! memory.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use reqwest::Method;
use serde_json::{Value, json};

use super::control_plane::iam_login;
use super::{Runner, Seen};
use crate::lab::{Lab, wait_until};
use crate::sys;
use crate::topology::{Node, Role, ports};

/// How long a guest may take to boot under TCG here (it takes seconds; this is the bound).
const BOOT_BOUND: Duration = Duration::from_secs(240);

/// The namespace that stands in for a client on the tenant subnet (plugged on node04).
const PROBE_NS: &str = "uclab-vmprobe";

const TWO_VMS: &str = "plasmavmc: VMs on node04 and node05 in one subnet reach each other";

const ISOLATION: &str = "isolation: other tenants and tenant roles refused on VM, port, plans, disk, console";

/// Another tenant's member and viewer (and the smoke tenant's own member, on platform-only
/// routes) probe smoke-a, its port and its worker; every probe must be refused.
async fn isolation(lab: &Lab, ctx: &Ctx) -> anyhow::Result<Seen> {
    let vm = ctx.vm("smoke-a").await?;
    let id = vm["id"].as_str().context("smoke-a has no ID")?;
    let port = vm["nics"][0]["port"].as_str().context("smoke-a has no port")?;
    let host = vm["host"].as_str().unwrap_or_default();
    let worker = ctx.workers.iter().find(|w| w.name == host).context("smoke-a's worker")?;
    let target = super::isolation::Target { admin: &ctx.token, vm: ("smoke-a", id), port, worker };
    super::isolation::check(lab, target).await
}

/// Every check, in order; what they made is removed whatever happened.
pub async fn run(lab: &Lab, r: &mut Runner) {
    let mut ctx = match Ctx::open(lab).await {
        Ok(c) => c,
        Err(e) => {
            r.check(TWO_VMS, async { Err(e) }).await;
            return;
        }
    };
    if r.check(TWO_VMS, two_vms(lab, &mut ctx)).await
        && r.check(ISOLATION, isolation(lab, &ctx)).await
        && r.check("plasmavmc: a VM reboots, cold-migrates node04 → node05, same address", reboot_and_migrate(&ctx))
            .await
    {
        r.check("plasmavmc: the VM live-migrates node05 → node04 and keeps its memory", live_migrate(&ctx)).await;
    }
    ctx.clean_up().await;
}

/// The smoke tenant's compute and network endpoints, and what the checks made.
struct Ctx {
    http: reqwest::Client,
    token: String,
    vmc: String,
    net: String,
    workers: Vec<Node>,
    ips: Vec<String>,
}

impl Ctx {
    async fn call(&self, method: Method, url: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.request(method, url).bearer_auth(&self.token).timeout(Duration::from_secs(120));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| url.to_owned())?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    async fn create(&self, url: String, body: Value) -> anyhow::Result<Value> {
        let (s, v) = self.call(Method::POST, &url, Some(body)).await?;
        ensure!(s == 201, "{url} answered {s}: {v}");
        Ok(v)
    }

    async fn vm(&self, name: &str) -> anyhow::Result<Value> {
        let (s, v) = self.call(Method::GET, &format!("{}/vms/{name}", self.vmc), None).await?;
        ensure!(s == 200, "VM {name}: {s} {v}");
        Ok(v)
    }

    async fn ready(&self, name: &str, host: &str) -> anyhow::Result<Duration> {
        let waited = wait_until(BOOT_BOUND, &format!("VM {name} ready on {host}"), || async {
            self.vm(name)
                .await
                .is_ok_and(|v| v["host"] == host && v["state"] == "running" && v["status"]["guest_ready"] == true)
        })
        .await;
        match waited {
            Ok(d) => Ok(d),
            Err(e) => {
                let last = self.vm(name).await.map(|v| v["status"].clone()).unwrap_or_default();
                Err(e.context(format!("last report: {last}")))
            }
        }
    }

    /// Removes the VMs, the probe's port and namespace, the subnet and VPC.
    async fn clean_up(&self) {
        for name in ["smoke-a", "smoke-b"] {
            let _ = self.call(Method::DELETE, &format!("{}/vms/{name}", self.vmc), None).await;
        }
        let _ = wait_until(Duration::from_secs(60), "the smoke VMs deleted", || async {
            self.call(Method::GET, &format!("{}/vms", self.vmc), None)
                .await
                .is_ok_and(|(_, v)| v["items"].as_array().is_some_and(|a| a.is_empty()))
        })
        .await;
        // Port names are not unique, so the probe's port is found by listing.
        if let Ok((_, ports)) = self.call(Method::GET, &format!("{}/ports", self.net), None).await {
            for p in ports["items"].as_array().into_iter().flatten().filter(|p| p["name"] == "probe") {
                let id = p["id"].as_str().unwrap_or_default();
                let _ = self.call(Method::DELETE, &format!("{}/ports/{id}", self.net), None).await;
            }
        }
        for pid in sys::pids_in(PROBE_NS) {
            sys::kill(pid);
        }
        let _ = sys::ip(&["netns", "del", PROBE_NS]);
        let _ = self.call(Method::DELETE, &format!("{}/subnets/vms", self.net), None).await;
        let _ = self.call(Method::DELETE, &format!("{}/vpcs/vms", self.net), None).await;
    }
}

/// An HTTP request from the probe namespace.
fn http(method: &str, url: &str) -> anyhow::Result<String> {
    sys::in_ns(PROBE_NS, "curl", &["-sf", "-m", "5", "-X", method, url])
}

impl Ctx {
    /// Logs in, makes the smoke tenant's compute project, and removes an earlier run's leftovers.
    async fn open(lab: &Lab) -> anyhow::Result<Self> {
        let cp = lab.topo.control_plane();
        let workers: Vec<Node> = lab.topo.nodes.iter().filter(|n| n.role == Role::Worker).cloned().collect();
        ensure!(workers.len() >= 2, "need two workers");
        let iam = format!("https://{}", cp[0].addr(ports::IAM));
        let ctx = Ctx {
            http: ultracloud_tls::client::http_client(),
            token: iam_login(lab, cp[0]).await?,
            vmc: format!("https://{}/v1/tenants/smoke/projects/compute", cp[0].addr(ports::PLASMAVMC)),
            net: format!("https://{}/v1/tenants/smoke/projects/compute", cp[0].addr(ports::PRISMNET)),
            workers,
            ips: Vec::new(),
        };
        for (url, body) in [
            (format!("{iam}/v1/tenants"), json!({"id": "smoke"})),
            (format!("{iam}/v1/tenants/smoke/projects"), json!({"id": "compute"})),
        ] {
            let (s, v) = ctx.call(Method::POST, &url, Some(body)).await?;
            ensure!(s == 201 || s == 409, "{url} answered {s}: {v}");
        }
        ctx.clean_up().await;
        Ok(ctx)
    }
}

async fn two_vms(lab: &Lab, ctx: &mut Ctx) -> anyhow::Result<Seen> {
    let workers = ctx.workers.clone();
    let image_dir = lab.guest_image_dir();
    let manifest = ultracloud_guest_image::read_manifest(&image_dir)
        .with_context(|| format!("no guest image in {} (`cluster build` makes it)", image_dir.display()))?;
    let url = |f: &str| format!("file://{}", image_dir.join(f).display());
    let (s, v) = ctx
        .call(
            Method::POST,
            &format!("{}/images", ctx.vmc),
            Some(json!({
                "name": "guest", "url": url(&manifest.files.disk.file), "sha256": manifest.files.disk.sha256,
                "kernel_url": url(&manifest.files.kernel.file), "initrd_url": url(&manifest.files.initrd.file),
                "cmdline": manifest.cmdline,
            })),
        )
        .await?;
    ensure!(s == 201 || s == 409, "importing the guest image: {s} {v}");
    ctx.create(format!("{}/vpcs", ctx.net), json!({"name": "vms", "cidr": "10.78.0.0/16"})).await?;
    ctx.create(format!("{}/subnets", ctx.net), json!({"name": "vms", "vpc": "vms", "cidr": "10.78.1.0/24"})).await?;

    // A client on the subnet, on node04.
    let _ = sys::ip(&["netns", "del", PROBE_NS]);
    sys::ip(&["netns", "add", PROBE_NS])?;
    sys::ip(&["-n", PROBE_NS, "link", "set", "lo", "up"])?;
    let probe = ctx
        .create(
            format!("{}/ports", ctx.net),
            json!({"subnet": "vms", "name": "probe", "binding": {"host": workers[0].name, "plug": {"kind": "netns", "netns": PROBE_NS}}}),
        )
        .await?;
    let probe_ip = probe["fixed_ips"][0].as_str().unwrap_or_default().to_owned();
    wait_until(Duration::from_secs(60), "the probe plugged", || async {
        sys::ip(&["-n", PROBE_NS, "link", "show", "eth0"]).is_ok()
    })
    .await?;
    sys::ip(&["-n", PROBE_NS, "addr", "add", &format!("{probe_ip}/24"), "dev", "eth0"])?;

    let started = Instant::now();
    for (name, w) in [("smoke-a", &workers[0]), ("smoke-b", &workers[1])] {
        let body = json!({"name": name, "image": "guest", "memory_mib": 192, "nics": [{"subnet": "vms"}], "host": w.name, "stop_timeout_s": 20});
        let v = ctx.create(format!("{}/vms", ctx.vmc), body).await?;
        ctx.ips.push(v["addresses"][0].as_str().unwrap_or_default().to_owned());
    }
    let a_ready = ctx.ready("smoke-a", &workers[0].name).await?;
    ctx.ready("smoke-b", &workers[1].name).await?;
    let both = started.elapsed();
    let (a, b) = (ctx.ips[0].clone(), ctx.ips[1].clone());
    let answered = wait_until(Duration::from_secs(60), "both guests answer the probe", || async {
        http("GET", &format!("http://{a}/health")).is_ok() && http("GET", &format!("http://{b}/health")).is_ok()
    })
    .await?;
    // VM to VM, across the workers: a asks b (the guest agent's /reach).
    let reach = http("GET", &format!("http://{a}/reach/{b}:80"))?;
    let v: Value = serde_json::from_str(&reach).with_context(|| format!("/reach answered {reach:?}"))?;
    ensure!(v["ok"] == true, "smoke-a could not reach smoke-b: {v}");
    let seen = Seen::new(format!(
        "smoke-a ({a}) on {} and smoke-b ({b}) on {} ready {:.1}s after create; a → b over HTTP: {}",
        workers[0].name,
        workers[1].name,
        both.as_secs_f64(),
        v["status"]
    ))
    .figure("create_to_ready_s", a_ready)
    .figure("both_ready_s", both)
    .figure("probe_answered_s", answered);
    Ok(seen)
}

async fn reboot_and_migrate(ctx: &Ctx) -> anyhow::Result<Seen> {
    let a = ctx.ips[0].clone();
    ensure!(http("POST", &format!("http://{a}/visit")).is_ok(), "visiting smoke-a");
    let (s, v) = ctx.call(Method::POST, &format!("{}/vms/smoke-a/reboot", ctx.vmc), None).await?;
    ensure!(s == 200, "reboot: {s} {v}");
    let rebooted = Instant::now();
    wait_until(BOOT_BOUND, "smoke-a back after the reboot", || async {
        http("GET", &format!("http://{a}/state"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| v["visits"] == 0)
    })
    .await?;
    let reboot = rebooted.elapsed();
    ensure!(http("PUT", &format!("http://{a}/files/smoke")).is_ok(), "writing a file in smoke-a");
    let target = ctx.workers[1].name.clone();
    let (s, v) =
        ctx.call(Method::POST, &format!("{}/vms/smoke-a/migrate", ctx.vmc), Some(json!({"target": target}))).await?;
    ensure!(s == 200, "migrate: {s} {v}");
    let moved = Instant::now();
    ctx.ready("smoke-a", &target).await?;
    wait_until(Duration::from_secs(60), "smoke-a answers from node05", || async {
        http("GET", &format!("http://{a}/health")).is_ok()
    })
    .await?;
    let migration = moved.elapsed();
    let v = ctx.vm("smoke-a").await?;
    ensure!(v["addresses"][0] == a.as_str(), "same address after the move: {}", v["addresses"]);
    ensure!(http("GET", &format!("http://{a}/files/smoke")).is_ok(), "the file written before the move is there");
    Ok(Seen::new(format!(
        "rebooted in {:.1}s; cold-migrated {} → {target} in {:.1}s, answering at {a} with its disk",
        reboot.as_secs_f64(),
        ctx.workers[0].name,
        migration.as_secs_f64()
    ))
    .figure("reboot_s", reboot)
    .figure("cold_migration_s", migration))
}

/// The guest's in-memory visit counter.
fn visits(ip: &str) -> Option<u64> {
    let text = http("GET", &format!("http://{ip}/state")).ok()?;
    serde_json::from_str::<Value>(&text).ok()?["visits"].as_u64()
}

async fn live_migrate(ctx: &Ctx) -> anyhow::Result<Seen> {
    let a = ctx.ips[0].clone();
    for _ in 0..3 {
        ensure!(http("POST", &format!("http://{a}/visit")).is_ok(), "visiting smoke-a");
    }
    let counted = visits(&a).context("reading smoke-a's counter")?;
    let target = ctx.workers[0].name.clone();
    let body = json!({"target": target, "live": true});
    let (s, v) = ctx.call(Method::POST, &format!("{}/vms/smoke-a/migrate", ctx.vmc), Some(body)).await?;
    ensure!(s == 200, "live migrate: {s} {v}");
    let moved = Instant::now();
    ctx.ready("smoke-a", &target).await?;
    wait_until(Duration::from_secs(60), "smoke-a answers from node04", || async {
        http("GET", &format!("http://{a}/health")).is_ok()
    })
    .await?;
    let migration = moved.elapsed();
    let now = visits(&a);
    ensure!(now == Some(counted), "the counter was {counted} before the live migration and is {now:?} after");
    ensure!(http("GET", &format!("http://{a}/files/smoke")).is_ok(), "the file written earlier is there");
    Ok(Seen::new(format!(
        "live-migrated {} → {target} in {:.1}s; the guest kept running (its counter stayed at {counted})",
        ctx.workers[1].name,
        migration.as_secs_f64()
    ))
    .figure("live_migration_s", migration))
}
