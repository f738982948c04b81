//! One VM on one worker: from its planned state to QEMU and back to a status report.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::qemu::{self, DiskArg, Launch, NicArg, VmPaths};
use super::volumes::{VolumeBackend, qemu_img};
use super::{Controller, Worker, transfer};
use crate::image_fetch;
use crate::model::{Image, ImageFile, MigrationKind, MigrationStep, Power, RestartPolicy, VmState, VmStatus, now_ms};
use crate::server::PlannedVm;

/// What the guest prints on its serial console once it is up.
pub const READY_MARKER: &str = "ULTRACLOUD-GUEST-READY";

/// What the agent remembers about a VM across its own restarts (`agent-state.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct LocalState {
    /// The agent started QEMU and means it to run: if it is gone, it crashed.
    pub(super) running: bool,
    /// The last reboot request carried out.
    pub(super) reboot_seq: u64,
    /// Restarts by the restart policy.
    pub(super) restarts: u32,
    /// Console bytes before the current boot (readiness is looked for after it).
    pub(super) console_offset: u64,
    /// A migration arrived here: a cold one's disks, or a live one's running guest.
    pub(super) migrated_in: bool,
    /// The guest was ready when it arrived by live migration (it prints no marker again).
    #[serde(default)]
    pub(super) carried_ready: bool,
    /// The guest arrived by live migration: once prismnet attaches its taps here, QEMU
    /// announces its MACs so the subnet's bridges learn where it went.
    #[serde(default)]
    pub(super) announce: bool,
    /// Live migration source: the migration (its `started_ms`) this agent started in QEMU.
    #[serde(default)]
    pub(super) live_out: Option<u64>,
    /// Live migration target: where the incoming QEMU this agent started listens.
    #[serde(default)]
    pub(super) incoming: Option<crate::model::Incoming>,
}

pub(super) fn load(paths: &VmPaths) -> LocalState {
    std::fs::read(paths.local_state()).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

pub(super) fn save(paths: &VmPaths, s: &LocalState) {
    if let Err(e) = write_json(&paths.local_state(), s) {
        tracing::warn!(dir = %paths.dir.display(), error = %e, "cannot save the VM's agent state");
    }
}

/// Writes `value` as JSON to `path` through a temporary file, so a crash leaves the old file or
/// the new one, and an encoding failure writes nothing (never an empty file).
fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path))
}

/// Records which image a VM's disks came from (the agent's image cache reads it).
fn note_image(paths: &VmPaths, image: &Image) {
    if let Err(e) = write_json(&paths.dir.join("image.json"), image) {
        tracing::warn!(dir = %paths.dir.display(), error = %e, "cannot record the VM's image");
    }
}

/// The last `max` bytes of the console log (lossy UTF-8).
pub fn console_tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else { return String::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Whether the guest is known ready: it arrived ready, or printed the marker since `offset`.
pub(super) fn guest_ready(paths: &VmPaths, local: &LocalState) -> bool {
    local.carried_ready || marker_since(paths, local.console_offset)
}

fn marker_since(paths: &VmPaths, offset: u64) -> bool {
    let Ok(mut f) = std::fs::File::open(paths.console()) else { return false };
    if f.seek(SeekFrom::Start(offset)).is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    buf.windows(READY_MARKER.len()).any(|w| w == READY_MARKER.as_bytes())
}

fn console_len(paths: &VmPaths) -> u64 {
    std::fs::metadata(paths.console()).map(|m| m.len()).unwrap_or(0)
}

/// Reconciles one planned VM and says where it stands.
pub async fn reconcile(w: &Worker, ctl: &Controller, p: &PlannedVm) -> VmStatus {
    let vm = &p.vm;
    let paths = VmPaths::new(&w.data_dir, &vm.id);
    let mut local = load(&paths);
    let mut status = VmStatus { host: w.name.clone(), reboot_seq: local.reboot_seq, ..Default::default() };
    if vm.deleting {
        teardown(w, &vm.id).await;
        status.state = VmState::Deleted;
        return status;
    }
    if let Some(m) = vm.migration.as_ref().filter(|m| m.target == w.name && vm.host != w.name) {
        return match m.kind {
            MigrationKind::Cold => migrate_in(w, ctl, p, &paths, &mut local).await,
            MigrationKind::Live => super::live::migrate_in(w, p, &paths, &mut local).await,
        };
    }
    local.migrated_in = false;
    if let Some(m) = &vm.migration {
        if m.kind == MigrationKind::Live {
            return super::live::migrate_out(w, p, m, &paths, &mut local).await;
        }
        let mut s = stop(w, p, &paths, &mut local).await;
        if s.state == VmState::Stopped {
            s.state = VmState::Migrating;
            s.migration_step = Some(MigrationStep::SourceReady);
        }
        return s;
    }
    match vm.power {
        Power::Running => run(w, p, &paths, &mut local).await,
        Power::Stopped => stop(w, p, &paths, &mut local).await,
    }
}

fn finish(status: &mut VmStatus, local: &LocalState, paths: &VmPaths) {
    status.reboot_seq = local.reboot_seq;
    status.restarts = local.restarts;
    save(paths, local);
}

async fn run(w: &Worker, p: &PlannedVm, paths: &VmPaths, local: &mut LocalState) -> VmStatus {
    let vm = &p.vm;
    let mut status = VmStatus { host: w.name.clone(), ..Default::default() };
    if let Some(pid) = qemu::pid_of(paths, &vm.id) {
        let run_state = match qemu::qmp_status(paths).await {
            Ok(s) => s,
            Err(e) => {
                status.state = VmState::Starting;
                status.pid = Some(pid);
                status.message = e.to_string();
                finish(&mut status, local, paths);
                return status;
            }
        };
        match run_state.as_str() {
            "shutdown" | "guest-panicked" | "internal-error" => {
                let crashed = run_state != "shutdown";
                qemu::quit(paths, &vm.id).await;
                local.running = false;
                let restart = match vm.restart_policy {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => crashed,
                    RestartPolicy::Never => false,
                };
                if !restart {
                    status.state = if crashed { VmState::Crashed } else { VmState::Stopped };
                    status.halted = true;
                    status.message =
                        if crashed { format!("the guest {run_state}") } else { "the guest powered off".into() };
                    finish(&mut status, local, paths);
                    return status;
                }
                local.restarts += 1;
                tracing::info!(vm = %vm.id, state = %run_state, "restarting by policy");
            }
            _ => {
                if run_state == "postmigrate" {
                    // A live migration out completed in QEMU but was called off (its target
                    // failed before taking over): the guest carries on here.
                    match super::qmp::run(&paths.qmp(), "cont", None).await {
                        Ok(_) => status.message = "resumed here: the live migration did not finish".into(),
                        Err(e) => status.message = format!("resuming after a called-off migration: {e}"),
                    }
                }
                if vm.reboot_seq > local.reboot_seq {
                    local.console_offset = console_len(paths);
                    match super::qmp::run(&paths.qmp(), "system_reset", None).await {
                        Ok(_) => {
                            local.reboot_seq = vm.reboot_seq;
                            local.carried_ready = false;
                        }
                        Err(e) => status.message = format!("reboot: {e}"),
                    }
                }
                status.state = VmState::Running;
                status.pid = Some(pid);
                status.accel = Some(w.accel.as_str().to_owned());
                status.guest_ready = guest_ready(paths, local);
                if local.announce {
                    local.announce = !super::live::announce(w, vm, paths).await;
                }
                finish(&mut status, local, paths);
                return status;
            }
        }
    } else if local.running {
        // QEMU is gone without being asked: a crash.
        local.running = false;
        if vm.restart_policy == RestartPolicy::Never {
            status.state = VmState::Crashed;
            status.halted = true;
            status.message = "QEMU exited unexpectedly".into();
            finish(&mut status, local, paths);
            return status;
        }
        local.restarts += 1;
        tracing::info!(vm = %vm.id, "QEMU is gone; restarting by policy");
    }
    match start(w, p, paths, false).await {
        Ok(pid) => {
            local.running = true;
            local.console_offset = 0;
            local.carried_ready = false;
            local.reboot_seq = vm.reboot_seq;
            status.state = VmState::Running;
            status.pid = Some(pid);
            status.accel = Some(w.accel.as_str().to_owned());
        }
        Err(Pending(why)) => {
            status.state = VmState::Starting;
            status.message = why;
        }
        Err(Failed(why)) => {
            tracing::warn!(vm = %vm.id, error = %why, "cannot start the VM");
            status.state = VmState::Failed;
            status.message = why;
        }
    }
    finish(&mut status, local, paths);
    status
}

pub(super) enum StartProblem {
    /// Waiting for something that comes by itself (the NIC tap).
    Pending(String),
    /// Something is wrong (image, disk, QEMU).
    Failed(String),
}
pub(super) use StartProblem::{Failed, Pending};

async fn fetch_image_file(w: &Worker, f: &ImageFile) -> Result<std::path::PathBuf, StartProblem> {
    let cached = w.image_cache(&f.sha256);
    if !cached.exists() {
        image_fetch::fetch_to(&f.url, &f.sha256, &cached, &w.images)
            .await
            .map_err(|e| Failed(format!("image: {e}")))?;
    }
    Ok(cached)
}

/// Makes sure the image is cached and the root overlay exists.
async fn prepare_root(w: &Worker, image: &Image, paths: &VmPaths) -> Result<(), StartProblem> {
    let base = fetch_image_file(w, &image.disk).await?;
    std::fs::create_dir_all(&paths.dir).map_err(|e| Failed(format!("creating {}: {e}", paths.dir.display())))?;
    note_image(paths, image);
    let root = paths.root_disk();
    if !root.exists() {
        let tmp = root.with_extension("partial");
        let (b, t) = (base.display().to_string(), tmp.display().to_string());
        qemu_img(&w.qemu_img, &["create", "-q", "-f", "qcow2", "-F", image.format.as_str(), "-b", &b, &t])
            .await
            .map_err(Failed)?;
        std::fs::rename(&tmp, &root).map_err(|e| Failed(format!("renaming {t}: {e}")))?;
    }
    Ok(())
}

/// `ip link show dev <dev>` (in `netns`): the line, if the device exists.
pub(super) async fn link(netns: Option<&str>, dev: &str) -> Option<String> {
    let mut cmd = tokio::process::Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-o", "link", "show", "dev", dev]).stderr(std::process::Stdio::null());
    let out = cmd.output().await.ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts the VM's QEMU; `incoming`: waiting for a live migration instead of booting.
pub(super) async fn start(w: &Worker, p: &PlannedVm, paths: &VmPaths, incoming: bool) -> Result<u32, StartProblem> {
    let vm = &p.vm;
    prepare_root(w, &p.image, paths).await?;
    let mut disks = vec![DiskArg { path: paths.root_disk(), format: "qcow2", serial: "root".into() }];
    for v in &p.volumes {
        disks.push(w.volumes.ensure(v).await.map_err(Failed)?);
    }
    let mut nics = Vec::new();
    for n in &vm.nics {
        let tap = ultracloud_prismnet::agent::nft::port_dev(&n.port);
        if link(w.netns.as_deref(), &tap).await.is_none() {
            return Err(Pending(format!("waiting for prismnet to plug port {} (tap {tap})", n.port)));
        }
        nics.push(NicArg { tap, mac: n.mac.clone() });
    }
    let user_data = match &vm.user_data {
        Some(b64) => {
            let bytes =
                base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| Failed(format!("user data: {e}")))?;
            write_private(&paths.user_data(), &bytes).map_err(|e| Failed(format!("writing user data: {e}")))?;
            Some(paths.user_data())
        }
        None => None,
    };
    let kernel = match &p.image.kernel {
        Some(k) => {
            let k = fetch_image_file(w, k).await?;
            let i = match &p.image.initrd {
                Some(i) => Some(fetch_image_file(w, i).await?),
                None => None,
            };
            Some((k, i, p.image.cmdline.clone().unwrap_or_else(|| "console=ttyS0".into())))
        }
        None => None,
    };
    let launch = Launch {
        id: vm.id.clone(),
        vcpus: vm.vcpus,
        memory_mib: vm.memory_mib,
        accel: w.accel,
        disks,
        nics,
        kernel,
        user_data,
        incoming,
    };
    tracing::info!(vm = %vm.id, accel = w.accel.as_str(), "starting QEMU");
    qemu::start(&w.qemu, w.netns.as_deref(), &launch, paths).await.map_err(Failed)
}

/// Writes a file only its owner can read (user data may carry secrets).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)
}

async fn stop(w: &Worker, p: &PlannedVm, paths: &VmPaths, local: &mut LocalState) -> VmStatus {
    let vm = &p.vm;
    let mut status = VmStatus { host: w.name.clone(), state: VmState::Stopped, ..Default::default() };
    if qemu::pid_of(paths, &vm.id).is_some() {
        let timeout = Duration::from_secs(u64::from(vm.stop_timeout_s));
        let graceful = qemu::shutdown(paths, &vm.id, timeout).await;
        status.message = if graceful { "stopped".into() } else { "forced off after the stop timeout".into() };
    }
    local.running = false;
    finish(&mut status, local, paths);
    status
}

/// Tears a VM down on this worker: QEMU and every file of it (volumes live elsewhere).
pub async fn teardown(w: &Worker, id: &str) {
    let paths = VmPaths::new(&w.data_dir, id);
    qemu::quit(&paths, id).await;
    if let Err(e) = std::fs::remove_dir_all(&paths.dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(vm = %id, error = %e, "cannot remove the VM's files");
    }
}

/// The target side of a cold migration: once the source has stopped the VM, copy its root
/// overlay and volumes here and point the overlay at this worker's copy of the image.
async fn migrate_in(w: &Worker, ctl: &Controller, p: &PlannedVm, paths: &VmPaths, local: &mut LocalState) -> VmStatus {
    let mut status = VmStatus { host: w.name.clone(), state: VmState::Migrating, ..Default::default() };
    if local.migrated_in {
        status.migration_step = Some(MigrationStep::TargetDone);
        return status;
    }
    let Some(source) = p.source.as_ref().filter(|s| s.ready) else {
        status.message = "waiting for the source to stop the VM".into();
        return status;
    };
    let started = Instant::now();
    let copied = async {
        let token = ctl.tokens.token().await?;
        let base = fetch_image_file(w, &p.image.disk).await.map_err(|e| match e {
            Pending(m) | Failed(m) => m,
        })?;
        std::fs::create_dir_all(&paths.dir).map_err(|e| format!("creating {}: {e}", paths.dir.display()))?;
        note_image(paths, &p.image);
        let root = paths.root_disk();
        let mut bytes = transfer::pull(&ctl.http, &token, &source.agent_url, &p.vm.id, "root", &root).await?;
        let (b, r) = (base.display().to_string(), root.display().to_string());
        qemu_img(&w.qemu_img, &["rebase", "-u", "-F", p.image.format.as_str(), "-b", &b, &r]).await?;
        for v in &p.volumes {
            bytes +=
                transfer::pull(&ctl.http, &token, &source.agent_url, &p.vm.id, &v.id, &w.volumes.path(&v.id)).await?;
        }
        Ok::<u64, String>(bytes)
    }
    .await;
    match copied {
        Ok(bytes) => {
            tracing::info!(vm = %p.vm.id, bytes, secs = started.elapsed().as_secs_f64(), "migration: disks copied in");
            local.migrated_in = true;
            local.running = false;
            save(paths, local);
            status.migration_step = Some(MigrationStep::TargetDone);
            status.message = format!("copied {bytes} bytes in {:.1} s", started.elapsed().as_secs_f64());
        }
        Err(e) => {
            tracing::warn!(vm = %p.vm.id, error = %e, "migration: copying the disks failed");
            let _ = std::fs::remove_dir_all(&paths.dir);
            status.migration_step = Some(MigrationStep::Failed);
            status.message = format!("copying the disks from {}: {e}", source.host);
        }
    }
    status.updated_ms = now_ms();
    status
}
