//! A VM's life on this worker below the reconcile loop: what the agent remembers about it
//! across its own restarts, its console, its root disk from the image cache, starting QEMU and
//! tearing it down. The reconcile state machine ([`super::vm`]) and live migration
//! ([`super::live`]) both build on these; neither depends on the other's internals.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::Worker;
use super::qemu::{self, DiskArg, Launch, NicArg, VmPaths};
use super::volumes::{VolumeBackend, qemu_img};
use crate::image_fetch;
use crate::model::{Image, ImageFile};
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
pub(super) fn note_image(paths: &VmPaths, image: &Image) {
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

pub(super) fn console_len(paths: &VmPaths) -> u64 {
    std::fs::metadata(paths.console()).map(|m| m.len()).unwrap_or(0)
}

pub(super) enum StartProblem {
    /// Waiting for something that comes by itself (the NIC tap).
    Pending(String),
    /// Something is wrong (image, disk, QEMU).
    Failed(String),
}
pub(super) use StartProblem::{Failed, Pending};

pub(super) async fn fetch_image_file(w: &Worker, f: &ImageFile) -> Result<std::path::PathBuf, StartProblem> {
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
            ultracloud_runtime::secret_file::write_bytes(&paths.user_data(), &bytes)
                .map_err(|e| Failed(format!("writing user data: {e}")))?;
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
