//! `ultracloud bench vms`: VM create-to-ready time (with the part that is QEMU booting the
//! guest), N VMs created at once on one worker, and the memory each VM costs on the worker
//! (QEMU's resident set plus the agent's growth). Run it on the worker's machine against a
//! running stack, e.g. `ultracloud quickstart --keep`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use ultracloud_plasmavmc::api::{ListQuery, NewVm, NicRequest, VmState, VmView};
use ultracloud_plasmavmc::client::Plasmavmc;

use super::project::{Ctx, ProjectArgs};
use super::table::Output;

/// Measure VM creation and memory on a running stack (prints figures; never pass/fail).
#[derive(Debug, Args)]
pub struct VmBench {
    /// VMs created concurrently in the second round.
    #[arg(long, default_value_t = 10)]
    count: usize,
    /// Image (name or ID).
    #[arg(long, default_value = "guest")]
    image: String,
    /// Subnet the VMs' NICs go in.
    #[arg(long, default_value = "demo")]
    subnet: String,
    /// Memory per VM in MiB.
    #[arg(long, default_value_t = 192)]
    memory: u32,
    /// The plasmavmc controller (a bare host:port is https:// when a cluster CA is trusted).
    #[arg(long, env = "ULTRACLOUD_PLASMAVMC", default_value = "127.0.0.1:8680")]
    plasmavmc: String,
    /// Tenant.
    #[arg(long, short, default_value = "demo")]
    tenant: String,
    /// Project.
    #[arg(long, short, default_value = "quickstart")]
    project: String,
}

/// The resident set (KiB) of every process whose NUL-separated arguments satisfy `pick`.
fn rss_kib(pick: impl Fn(&[&str]) -> bool) -> u64 {
    let Ok(procs) = std::fs::read_dir("/proc") else { return 0 };
    procs
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                let text = String::from_utf8_lossy(&c);
                pick(&text.split('\0').collect::<Vec<_>>())
            })
        })
        .filter_map(|e| {
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

/// The project's session (its token renews itself: a run outlasts an access token) and
/// plasmavmc's client.
async fn open(a: &VmBench) -> anyhow::Result<(Ctx, Plasmavmc)> {
    let args = ProjectArgs {
        tenant: Some(a.tenant.clone()),
        project: Some(a.project.clone()),
        iam: None,
        output: Output::Table,
        json: false,
    };
    let c = Ctx::open(Plasmavmc::SERVICE, &a.plasmavmc, &args).await?;
    let vmc = Plasmavmc::new(c.client.clone());
    Ok((c, vmc))
}

/// The project's VMs now.
async fn vms(c: &Ctx, vmc: &Plasmavmc) -> anyhow::Result<Vec<VmView>> {
    Ok(vmc.vms(&c.owner).list_all(&ListQuery::default()).await?)
}

/// When each VM was first seen running (QEMU up) and guest-ready, from `start`.
async fn watch(
    c: &Ctx,
    vmc: &Plasmavmc,
    names: &[String],
    start: Instant,
) -> anyhow::Result<HashMap<String, (Duration, Duration)>> {
    let mut running: HashMap<String, Duration> = HashMap::new();
    let mut ready: HashMap<String, (Duration, Duration)> = HashMap::new();
    while ready.len() < names.len() {
        if start.elapsed() > Duration::from_secs(600) {
            bail!("{} of {} VMs ready after 10 minutes", ready.len(), names.len());
        }
        for v in vms(c, vmc).await? {
            let name = v.vm.name.clone();
            if !names.contains(&name) || ready.contains_key(&name) {
                continue;
            }
            if v.state == VmState::Running {
                running.entry(name.clone()).or_insert_with(|| start.elapsed());
            }
            if v.status.as_ref().is_some_and(|s| s.guest_ready) {
                let up = running.get(&name).copied().unwrap_or_else(|| start.elapsed());
                ready.insert(name, (up, start.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(ready)
}

fn stats(mut xs: Vec<f64>) -> String {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        return "-".into();
    }
    format!("min {:.1}s  median {:.1}s  max {:.1}s", xs[0], xs[n / 2], xs[n - 1])
}

async fn create(c: &Ctx, vmc: &Plasmavmc, name: &str, a: &VmBench) -> anyhow::Result<VmView> {
    let new = NewVm {
        name: name.to_owned(),
        image: a.image.clone(),
        vcpus: None,
        memory_mib: Some(a.memory),
        nics: vec![NicRequest { subnet: Some(a.subnet.clone()), port: None }],
        volumes: Vec::new(),
        user_data: None,
        restart_policy: None,
        anti_affinity: None,
        stop_timeout_s: Some(5),
        host: None,
        start: None,
        labels: Default::default(),
        annotations: Default::default(),
    };
    vmc.vms(&c.owner).create(&new).await.with_context(|| format!("creating {name}"))
}

async fn delete_all(c: &Ctx, vmc: &Plasmavmc, names: &[String]) -> anyhow::Result<()> {
    for n in names {
        let _ = vmc.vms(&c.owner).delete(n).await;
    }
    let start = Instant::now();
    loop {
        let left = vms(c, vmc).await?.iter().filter(|v| names.contains(&v.vm.name)).count();
        if left == 0 {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("{left} bench VMs still there after 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Runs `bench vms`.
pub async fn run(a: VmBench) -> anyhow::Result<ExitCode> {
    let (c, vmc) = open(&a).await?;
    let agent = |args: &[&str]| args.get(1) == Some(&"plasmavmc-agent");
    let qemu_of = |id: String| move |args: &[&str]| args.iter().any(|a| a.starts_with(&format!("ultracloud-{id},")));
    let agent_before = rss_kib(agent);
    let tag = &ultracloud_iam::credential::new_id()[..4];

    // One VM alone: the create-to-ready path and its QEMU part.
    let one = vec![format!("bench-{tag}-solo")];
    let start = Instant::now();
    let v = create(&c, &vmc, &one[0], &a).await?;
    let api = start.elapsed();
    let t = watch(&c, &vmc, &one, start).await?;
    let (up, ready) = t[&one[0]];
    let solo_rss = rss_kib(qemu_of(v.vm.id.clone()));
    let accel = vms(&c, &vmc).await?.into_iter().find(|x| x.vm.id == v.vm.id).and_then(|x| x.status?.accel);
    println!("one VM ({} MiB, {}):", a.memory, accel.as_deref().unwrap_or("tcg"));
    println!("  API create answered        {:>6.2}s", api.as_secs_f64());
    println!("  QEMU running               {:>6.2}s  (image fetch, overlay, tap, QEMU start)", up.as_secs_f64());
    println!(
        "  guest ready (HTTP up)      {:>6.2}s  (of which QEMU booting the guest: {:.2}s)",
        ready.as_secs_f64(),
        (ready - up).as_secs_f64()
    );
    println!("  QEMU resident memory       {:>6} MiB", solo_rss / 1024);
    delete_all(&c, &vmc, &one).await?;

    // N at once.
    let names: Vec<String> = (0..a.count).map(|i| format!("bench-{tag}-{i}")).collect();
    let start = Instant::now();
    let mut ids = Vec::new();
    let created = futures::future::join_all(names.iter().map(|n| create(&c, &vmc, n, &a))).await;
    for r in created {
        ids.push(r?.vm.id);
    }
    let t = watch(&c, &vmc, &names, start).await?;
    let wall = start.elapsed();
    let qemu: u64 = ids.iter().map(|id| rss_kib(qemu_of(id.clone()))).sum();
    let agent_after = rss_kib(agent);
    println!("\n{} VMs created at once on one worker:", a.count);
    println!("  all ready after            {:>6.2}s", wall.as_secs_f64());
    println!("  create → ready per VM      {}", stats(t.values().map(|(_, r)| r.as_secs_f64()).collect()));
    println!("  QEMU boot part per VM      {}", stats(t.values().map(|(u, r)| (*r - *u).as_secs_f64()).collect()));
    println!(
        "  memory per VM              {:>6} MiB QEMU RSS + {} KiB agent growth (agent {} → {} MiB)",
        qemu / 1024 / a.count.max(1) as u64,
        agent_after.saturating_sub(agent_before) / a.count.max(1) as u64,
        agent_before / 1024,
        agent_after / 1024
    );
    delete_all(&c, &vmc, &names).await?;
    Ok(ExitCode::SUCCESS)
}
