//! The plasmavmc agent: drives one worker's VMs towards the controller's plan.
//!
//! Every pass fetches the host's plan and reconciles each VM in a task of its own (a graceful
//! stop waiting for its guest never holds up the others): fetch the image into the cache,
//! make the qcow2 overlay and volumes, wait for prismnet to plug the NIC taps, start QEMU, and
//! watch it over QMP — reboots, guest power-offs and crashes (then the restart policy decides).
//! Whatever changed is reported back. QEMU runs daemonized, so an agent restart finds its VMs
//! running and manages them again through their PID files and QMP sockets.

pub mod live;
pub mod local;
pub mod migration_tls;
pub mod qemu;
pub mod qmp;
pub mod transfer;
pub mod vm;
pub mod volumes;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ultracloud_iam::guard::TokenSource;
use ultracloud_resource::client::{Client, ClientError};

use crate::client::Plasmavmc;
use crate::model::{Image, VmStatus};
use crate::server::{HostPlan, HostRegistration, PlannedVm};
use qemu::Accel;
use volumes::{LocalQcow2, VolumeBackend};

/// How often the agent looks at its VMs even when the plan did not change (crash detection).
pub const PASS_INTERVAL: Duration = Duration::from_secs(2);
/// How often the plan is read again when no change was announced (passes in between reuse
/// it: watching QEMU needs no controller round trip, and the database is spared).
pub const PLAN_REFRESH: Duration = Duration::from_secs(10);
/// How often it re-registers (its heartbeat).
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// A status is re-sent at least this often.
pub const REPORT_REFRESH: Duration = Duration::from_secs(20);

/// What the agent knows about its worker.
#[derive(Debug)]
pub struct Worker {
    /// The host's name (as registered with prismnet too).
    pub name: String,
    /// Where VMs, images and volumes live.
    pub data_dir: PathBuf,
    /// The network namespace the taps are in (and QEMU runs in), if not the agent's own.
    pub netns: Option<String>,
    /// `qemu-system-x86_64`.
    pub qemu: PathBuf,
    /// `qemu-img`.
    pub qemu_img: PathBuf,
    /// The accelerator.
    pub accel: Accel,
    /// vCPUs offered.
    pub vcpus: u32,
    /// Memory offered (MiB).
    pub memory_mib: u32,
    /// The underlay address.
    pub address: Ipv4Addr,
    /// This agent's disk-transfer URL.
    pub agent_url: String,
    /// Local volumes.
    pub volumes: LocalQcow2,
    /// VMs leaving this worker, by ID, with the worker they move to: the only agent whose
    /// credential may copy their disks from here (from the latest plan).
    pub outgoing: Mutex<HashMap<String, String>>,
    /// Where images may be fetched from.
    pub images: crate::image_fetch::ImagePolicy,
    /// The credentials live migration's wire (memory stream, disk mirrors) runs under; without
    /// them (a cluster without TLS) it runs in the clear.
    pub migration_tls: Option<migration_tls::MigrationTls>,
}

impl Worker {
    /// The cache file of an image file with this hash.
    pub fn image_cache(&self, sha256: &str) -> PathBuf {
        self.data_dir.join("images").join(sha256)
    }
}

/// The controller as the agent sees it.
#[derive(Debug, Clone)]
pub struct Controller {
    /// The controller's replicas, called with the worker's node credential.
    pub api: Plasmavmc,
    /// That credential (transfers from other agents send its token too).
    pub tokens: Arc<TokenSource>,
    /// A plain client for agent-to-agent transfers.
    pub http: reqwest::Client,
}

impl Controller {
    /// The controller at `endpoints` (comma-separated), called with `tokens`.
    pub fn new(endpoints: &str, tokens: Arc<TokenSource>) -> Result<Self, ClientError> {
        let client = Client::from_list(Plasmavmc::SERVICE, endpoints)?.with_credentials(tokens.clone());
        Ok(Self { api: Plasmavmc::new(client), tokens, http: ultracloud_tls::client::http_client() })
    }

    /// Registers (or refreshes) the worker.
    pub async fn register(&self, w: &Worker) -> Result<(), String> {
        let body = HostRegistration {
            vcpus: w.vcpus,
            memory_mib: w.memory_mib,
            accel: w.accel.as_str().to_owned(),
            agent_url: w.agent_url.clone(),
            address: w.address,
        };
        self.api.register_host(&w.name, &body).await.map_err(|e| e.to_string())
    }

    /// The worker's plan.
    pub async fn plan(&self, host: &str) -> Result<HostPlan, String> {
        self.api.host_plan(host).await.map_err(|e| format!("reading the plan: {e}"))
    }

    /// Reports a VM's status.
    pub async fn report(&self, host: &str, vm: &str, s: &VmStatus) -> Result<(), String> {
        self.api.report(host, vm, s).await.map_err(|e| e.to_string())
    }

    /// Uploads a VM's console tail.
    pub async fn console(&self, host: &str, vm: &str, text: String) -> Result<(), String> {
        self.api.upload_console(host, vm, text).await.map_err(|e| e.to_string())
    }

    /// Waits (up to ~15 s) for the version to move past `after`.
    pub async fn wait(&self, after: u64) -> Result<u64, String> {
        self.api.wait(after).await.map_err(|e| e.to_string())
    }
}

/// What was last reported per VM, so unchanged reports are not re-sent every pass.
#[derive(Debug, Default)]
struct Reported {
    status: HashMap<String, (VmStatus, Instant)>,
    console_len: HashMap<String, u64>,
}

/// Shared between the loop and the per-VM tasks.
#[derive(Debug)]
struct Shared {
    worker: Arc<Worker>,
    ctl: Controller,
    busy: Mutex<HashSet<String>>,
    reported: Mutex<Reported>,
}

/// Runs the agent until `shutdown`: register, then plan → reconcile → wait for a change (or
/// [`PASS_INTERVAL`]); the plan is read again on a change or after [`PLAN_REFRESH`]. `ready` is
/// set once the worker is registered and a plan was read.
pub async fn run(
    worker: Arc<Worker>,
    ctl: Controller,
    ready: Arc<std::sync::atomic::AtomicBool>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let shared = Arc::new(Shared { worker, ctl, busy: Mutex::default(), reported: Mutex::default() });
    let mut registered_at: Option<Instant> = None;
    let mut version = 0;
    let mut plan: Option<(HostPlan, Instant)> = None;
    let mut changed = true;
    loop {
        if registered_at.is_none_or(|t| t.elapsed() >= HEARTBEAT) {
            match shared.ctl.register(&shared.worker).await {
                Ok(()) => registered_at = Some(Instant::now()),
                Err(e) => tracing::warn!(error = %e, "cannot register with the controller; retrying"),
            }
        }
        if changed || plan.as_ref().is_none_or(|(_, at)| at.elapsed() >= PLAN_REFRESH) {
            match shared.ctl.plan(&shared.worker.name).await {
                Ok(p) => {
                    version = p.version;
                    plan = Some((p, Instant::now()));
                    ready.store(registered_at.is_some(), std::sync::atomic::Ordering::Relaxed);
                }
                // The last plan stays in force: VMs keep running (and restarting) without the
                // controller.
                Err(e) => tracing::warn!(error = %e, "cannot read the plan; retrying"),
            }
        }
        if let Some((p, _)) = &plan {
            pass(&shared, p.clone()).await;
        }
        changed = tokio::select! {
            () = shutdown.cancelled() => return,
            r = tokio::time::timeout(PASS_INTERVAL, shared.ctl.wait(version)) => matches!(r, Ok(Ok(v)) if v != version),
        };
    }
}

async fn pass(shared: &Arc<Shared>, plan: HostPlan) {
    let w = &shared.worker;
    let planned: HashSet<String> = plan.vms.iter().map(|p| p.vm.id.clone()).collect();
    let outgoing = plan
        .vms
        .iter()
        .filter(|p| p.vm.host == w.name)
        .filter_map(|p| Some((p.vm.id.clone(), p.vm.migration.as_ref()?.target.clone())))
        .collect();
    *w.outgoing.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = outgoing;
    for p in plan.vms {
        if !shared.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(p.vm.id.clone()) {
            continue;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            let id = p.vm.id.clone();
            let status = vm::reconcile(&shared.worker, &shared.ctl, &p).await;
            publish(&shared, &p, status).await;
            shared.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
        });
    }
    // VMs here that are no longer planned here (deleted while the agent was away, or moved).
    if let Ok(entries) = std::fs::read_dir(w.data_dir.join("vms")) {
        for e in entries.flatten() {
            let Some(id) = e.file_name().to_str().map(str::to_owned) else { continue };
            if planned.contains(&id)
                || shared.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&id)
            {
                continue;
            }
            tracing::info!(vm = %id, "removing a VM no longer planned here");
            local::teardown(w, &id).await;
            let mut r = shared.reported.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            r.status.remove(&id);
            r.console_len.remove(&id);
        }
    }
    let keep: HashSet<&str> = plan.volumes.iter().map(|v| v.id.as_str()).collect();
    for id in w.volumes.held() {
        if !keep.contains(id.as_str()) {
            tracing::info!(volume = %id, "removing a volume no longer held here");
            if let Err(e) = w.volumes.remove(&id).await {
                tracing::warn!(error = %e, "volume removal failed");
            }
        }
    }
    gc_images(w, &plan_images(&shared.worker));
}

/// Images referenced by VM directories still here (their overlays need the backing files).
fn plan_images(w: &Worker) -> HashSet<String> {
    let mut keep = HashSet::new();
    if let Ok(entries) = std::fs::read_dir(w.data_dir.join("vms")) {
        for e in entries.flatten() {
            if let Ok(text) = std::fs::read_to_string(e.path().join("image.json"))
                && let Ok(img) = serde_json::from_str::<Image>(&text)
            {
                keep.extend(
                    [Some(&img.disk), img.kernel.as_ref(), img.initrd.as_ref()]
                        .into_iter()
                        .flatten()
                        .map(|f| f.sha256.clone()),
                );
            }
        }
    }
    keep
}

/// Removes cached image files no VM here uses (a later VM fetches them again).
fn gc_images(w: &Worker, keep: &HashSet<String>) {
    let Ok(entries) = std::fs::read_dir(w.data_dir.join("images")) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) && !name.ends_with(".partial") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

async fn publish(shared: &Shared, p: &PlannedVm, status: VmStatus) {
    let (host, id) = (&shared.worker.name, &p.vm.id);
    let fresh = {
        let r = shared.reported.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        r.status.get(id).is_some_and(|(s, at)| *s == status && at.elapsed() < REPORT_REFRESH)
    };
    if !fresh {
        match shared.ctl.report(host, id, &status).await {
            Ok(()) => {
                let mut r = shared.reported.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                r.status.insert(id.clone(), (status, Instant::now()));
            }
            Err(e) => tracing::warn!(vm = %id, error = %e, "cannot report the VM's status"),
        }
    }
    let console = qemu::VmPaths::new(&shared.worker.data_dir, id).console();
    let len = std::fs::metadata(&console).map(|m| m.len()).unwrap_or(0);
    let known = shared.reported.lock().unwrap_or_else(std::sync::PoisonError::into_inner).console_len.get(id).copied();
    if len > 0 && known != Some(len) {
        let text = local::console_tail(&console, crate::server::CONSOLE_KEPT as u64);
        if shared.ctl.console(host, id, text).await.is_ok() {
            shared
                .reported
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .console_len
                .insert(id.clone(), len);
        }
    }
}
