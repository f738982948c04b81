//! The controller's operations: validate against stored state, talk to prismnet for NICs,
//! then write in one flaredb transaction. Agents carry the changes out and report back
//! ([`report`]), which is where deletes and migrations finish.

use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use ultracloud_resource::ids::{new_id, valid_name};
pub use ultracloud_resource::store::resolve;
use ultracloud_resource::store::{Store, StoreError, check_revision, obj_key, refuse, txn_delete, txn_get, txn_put};

use crate::image_fetch::{self, FetchError, ImagePolicy};
use crate::model::{
    DiskFormat, Host, Image, ImageFile, Incoming, Migration, MigrationKind, MigrationStep, Nic, Owner, Power,
    RestartPolicy, Vm, VmState, VmStatus, Volume, now_ms,
};
use crate::network::{NetError, Prismnet};
use crate::records;
use crate::scheduler::{self, Request};

type Result<T> = std::result::Result<T, StoreError>;

/// A host not heard from for this long gets no new VMs.
pub const HOST_STALE_AFTER: Duration = Duration::from_secs(30);
/// How many times a VM's placement is decided again when other placements keep landing
/// between the decision and its recording (see [`records::txn_claim_placement`]).
const PLACEMENT_ATTEMPTS: usize = 5;
/// Largest user data accepted (decoded).
pub const MAX_USER_DATA: usize = 64 * 1024;
/// Largest VM: vCPUs.
pub const MAX_VCPUS: u32 = 64;
/// Smallest VM memory in MiB (the guest kernel needs some).
pub const MIN_MEMORY_MIB: u32 = 64;

fn invalid(m: impl Into<String>) -> StoreError {
    StoreError::Invalid(m.into())
}

fn conflict(m: impl Into<String>) -> StoreError {
    StoreError::Conflict(m.into())
}

fn net_error(what: &str, e: NetError) -> StoreError {
    match e {
        NetError::Refused(m) => invalid(format!("{what}: {m}")),
        NetError::Unavailable(m) => StoreError::Db(ultracloud_flaredb::error::FlareError::Unavailable(m)),
    }
}

/// Hosts heard from recently.
pub async fn live_hosts(store: &Store) -> Result<Vec<Host>> {
    let now = now_ms();
    let stale = u64::try_from(HOST_STALE_AFTER.as_millis()).unwrap_or(u64::MAX);
    Ok(records::hosts(store).await?.into_iter().filter(|h| now.saturating_sub(h.seen_ms) < stale).collect())
}

/// `POST …/images`: import an image from a URL.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewImage {
    /// Name.
    pub name: String,
    /// Where the disk is (`file:///…`, `http://…`).
    pub url: String,
    /// Expected SHA-256 of the disk (checked at import).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Expected format (default: detected).
    #[serde(default)]
    pub format: Option<DiskFormat>,
    /// Kernel for direct boot.
    #[serde(default)]
    pub kernel_url: Option<String>,
    /// Expected SHA-256 of the kernel.
    #[serde(default)]
    pub kernel_sha256: Option<String>,
    /// Initrd for direct boot.
    #[serde(default)]
    pub initrd_url: Option<String>,
    /// Expected SHA-256 of the initrd.
    #[serde(default)]
    pub initrd_sha256: Option<String>,
    /// Kernel command line for direct boot.
    #[serde(default)]
    pub cmdline: Option<String>,
    /// Labels (selected on by `?selector=`).
    #[serde(default, skip_serializing_if = "ultracloud_resource::Labels::is_empty")]
    pub labels: ultracloud_resource::Labels,
    /// Annotations.
    #[serde(default, skip_serializing_if = "ultracloud_resource::Labels::is_empty")]
    pub annotations: ultracloud_resource::Labels,
}

async fn import_file(
    what: &str,
    url: &str,
    sha256: Option<&str>,
    policy: &ImagePolicy,
) -> Result<(ImageFile, DiskFormat)> {
    if let Some(s) = sha256
        && !image_fetch::valid_sha256(s)
    {
        return Err(invalid(format!("{what} sha256 {s:?}: 64 hex digits")));
    }
    let d = image_fetch::digest(url, policy).await.map_err(|e| match e {
        FetchError::Refused(m) => StoreError::Forbidden(format!("{what}: {m}")),
        e => invalid(format!("{what}: {e}")),
    })?;
    if let Some(s) = sha256
        && !s.eq_ignore_ascii_case(&d.sha256)
    {
        return Err(invalid(format!("{what} {url}: SHA-256 is {}, expected {s}", d.sha256)));
    }
    Ok((ImageFile { url: url.to_owned(), sha256: d.sha256, size: d.size }, d.format))
}

/// Imports an image: reads every file once to learn (and check) its hash, size and format.
pub async fn import_image(store: &Store, owner: &Owner, req: &NewImage, policy: &ImagePolicy) -> Result<Image> {
    valid_name(&req.name)?;
    for url in [Some(&req.url), req.kernel_url.as_ref(), req.initrd_url.as_ref()].into_iter().flatten() {
        image_fetch::check_url(url).map_err(|e| invalid(e.to_string()))?;
    }
    if req.kernel_url.is_none() && (req.initrd_url.is_some() || req.cmdline.is_some()) {
        return Err(invalid("initrd_url and cmdline need kernel_url (direct kernel boot)"));
    }
    if store.id_by_name::<Image>(owner, &req.name).await?.is_some() {
        return Err(conflict(format!("an image named {:?} exists", req.name)));
    }
    let (disk, detected) = import_file("disk", &req.url, req.sha256.as_deref(), policy).await?;
    if let Some(f) = req.format
        && f != detected
    {
        return Err(invalid(format!("{} is {}, not {}", req.url, detected.as_str(), f.as_str())));
    }
    let kernel = match &req.kernel_url {
        Some(u) => Some(import_file("kernel", u, req.kernel_sha256.as_deref(), policy).await?.0),
        None => None,
    };
    let initrd = match &req.initrd_url {
        Some(u) => Some(import_file("initrd", u, req.initrd_sha256.as_deref(), policy).await?.0),
        None => None,
    };
    let image = Image {
        id: new_id("img"),
        owner: owner.clone(),
        meta: ultracloud_resource::Meta::new(req.labels.clone(), req.annotations.clone())?,
        name: req.name.clone(),
        format: detected,
        disk,
        kernel,
        initrd,
        cmdline: req.cmdline.clone(),
        created_ms: now_ms(),
    };
    let owner = owner.clone();
    store
        .change(async move |t| {
            if !Store::txn_name_free::<Image>(t, &owner, &image.name).await? {
                return refuse(conflict(format!("an image named {:?} exists", image.name)));
            }
            Ok(Ok(txn_put(t, &image)?))
        })
        .await
}

/// Deletes an image no VM uses.
pub async fn delete_image(store: &Store, owner: &Owner, id: &str) -> Result<()> {
    let image: Image = resolve(store, owner, id, "image").await?;
    if let Some(vm) = store.list::<Vm>(owner).await?.iter().find(|v| v.image == image.id) {
        return Err(conflict(format!("image {} is used by VM {}", image.name, vm.name)));
    }
    store
        .change(async move |t| {
            txn_delete(t, &image)?;
            Ok(Ok(()))
        })
        .await
}

/// One NIC of a new VM: a subnet to allocate a port in, or an existing port.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicRequest {
    /// A subnet (ID or name) to create a port in.
    #[serde(default)]
    pub subnet: Option<String>,
    /// An existing, unbound port (ID or name).
    #[serde(default)]
    pub port: Option<String>,
}

/// `POST …/vms`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewVm {
    /// Name.
    pub name: String,
    /// Image (ID or name).
    pub image: String,
    /// vCPUs (default 1).
    #[serde(default)]
    pub vcpus: Option<u32>,
    /// Memory in MiB (default 256).
    #[serde(default)]
    pub memory_mib: Option<u32>,
    /// NICs.
    #[serde(default)]
    pub nics: Vec<NicRequest>,
    /// Volumes to attach (IDs or names).
    #[serde(default)]
    pub volumes: Vec<String>,
    /// User data, base64 (at most 64 KiB decoded).
    #[serde(default)]
    pub user_data: Option<String>,
    /// Restart policy (default on-failure).
    #[serde(default)]
    pub restart_policy: Option<RestartPolicy>,
    /// Anti-affinity label.
    #[serde(default)]
    pub anti_affinity: Option<String>,
    /// Graceful stop timeout in seconds (default 30).
    #[serde(default)]
    pub stop_timeout_s: Option<u32>,
    /// Pin to a worker (default: the scheduler picks).
    #[serde(default)]
    pub host: Option<String>,
    /// Start it (default true).
    #[serde(default)]
    pub start: Option<bool>,
    /// Labels (selected on by `?selector=`).
    #[serde(default, skip_serializing_if = "ultracloud_resource::Labels::is_empty")]
    pub labels: ultracloud_resource::Labels,
    /// Annotations.
    #[serde(default, skip_serializing_if = "ultracloud_resource::Labels::is_empty")]
    pub annotations: ultracloud_resource::Labels,
}

/// Validates the parts of a VM request that need no stored state.
pub fn check_new_vm(req: &NewVm) -> Result<(u32, u32)> {
    valid_name(&req.name)?;
    let vcpus = req.vcpus.unwrap_or(1);
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(invalid(format!("vcpus {vcpus}: 1 to {MAX_VCPUS}")));
    }
    let memory = req.memory_mib.unwrap_or(256);
    if memory < MIN_MEMORY_MIB {
        return Err(invalid(format!("memory_mib {memory}: at least {MIN_MEMORY_MIB}")));
    }
    if let Some(ud) = &req.user_data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(ud.trim())
            .map_err(|e| invalid(format!("user_data is not valid base64: {e}")))?;
        if bytes.len() > MAX_USER_DATA {
            return Err(invalid(format!("user_data is {} bytes decoded; at most {MAX_USER_DATA}", bytes.len())));
        }
    }
    for (i, n) in req.nics.iter().enumerate() {
        if n.subnet.is_some() == n.port.is_some() {
            return Err(invalid(format!("nics[{i}]: give either subnet or port")));
        }
        // IDs and names share one alphabet; anything else never reaches a prismnet URL.
        for (field, v) in [("subnet", &n.subnet), ("port", &n.port)] {
            if let Some(v) = v
                && valid_name(v).is_err()
            {
                return Err(invalid(format!(
                    "nics[{i}].{field} {v:?}: an ID or a name (lowercase letters, digits, dashes)"
                )));
            }
        }
    }
    if let Some(l) = &req.anti_affinity
        && (l.is_empty() || l.len() > 63)
    {
        return Err(invalid("anti_affinity: 1-63 characters"));
    }
    if req.stop_timeout_s.is_some_and(|s| s > 3600) {
        return Err(invalid("stop_timeout_s: at most 3600"));
    }
    Ok((vcpus, memory))
}

/// Creates a VM: places it, plugs its NICs into prismnet, stores it. On any refusal the ports
/// made so far are removed again.
pub async fn create_vm(store: &Store, net: &Prismnet, owner: &Owner, req: &NewVm) -> Result<Vm> {
    let (vcpus, memory_mib) = check_new_vm(req)?;
    let image: Image = resolve(store, owner, &req.image, "image").await?;
    if store.id_by_name::<Vm>(owner, &req.name).await?.is_some() {
        return Err(conflict(format!("a VM named {:?} exists", req.name)));
    }
    let mut volumes = Vec::new();
    for v in &req.volumes {
        let vol: Volume = resolve(store, owner, v, "volume").await?;
        if let Some(other) = &vol.attached_to {
            return Err(conflict(format!("volume {} is attached to {other}", vol.name)));
        }
        volumes.push(vol);
    }
    let pinned: Vec<&str> = volumes.iter().filter_map(|v| v.host.as_deref()).collect();
    if pinned.windows(2).any(|w| w[0] != w[1]) {
        return Err(invalid("the volumes live on different workers; a VM can use local volumes of one worker"));
    }
    if let (Some(h), Some(v)) = (&req.host, pinned.first())
        && h != v
    {
        return Err(invalid(format!("host {h}: the volumes live on {v}")));
    }
    let only = req.host.as_deref().or(pinned.first().copied());
    let id = new_id("vm");
    for attempt in 1..=PLACEMENT_ATTEMPTS {
        let epoch = records::placement_epoch(store).await?;
        let hosts = live_hosts(store).await?;
        let vms = store.list_all::<Vm>().await?;
        let host = scheduler::place(
            &hosts,
            &vms,
            &Request { vcpus, memory_mib, anti_affinity: req.anti_affinity.as_deref(), moving: None, only },
        )
        .map_err(|e| conflict(e.to_string()))?;
        let nics = plug_nics(net, owner, req, &id, &host).await?;
        let vm = Vm {
            id: id.clone(),
            owner: owner.clone(),
            meta: ultracloud_resource::Meta::new(req.labels.clone(), req.annotations.clone())?,
            name: req.name.clone(),
            image: image.id.clone(),
            vcpus,
            memory_mib,
            nics: nics.clone(),
            volumes: volumes.iter().map(|v| v.id.clone()).collect(),
            user_data: req.user_data.as_ref().map(|u| u.trim().to_owned()),
            restart_policy: req.restart_policy.unwrap_or_default(),
            anti_affinity: req.anti_affinity.clone(),
            stop_timeout_s: req.stop_timeout_s.unwrap_or(30),
            host,
            power: if req.start.unwrap_or(true) { Power::Running } else { Power::Stopped },
            reboot_seq: 0,
            migration: None,
            deleting: false,
            created_ms: now_ms(),
        };
        let (vm_owner, vm_copy, vols) = (owner.clone(), vm.clone(), volumes.clone());
        let written = store
            .change(async move |t| {
                let (owner, vm, volumes) = (&vm_owner, &vm_copy, &vols);
                if !records::txn_claim_placement(t, epoch).await? {
                    return Ok(Ok(None));
                }
                if !Store::txn_name_free::<Vm>(t, owner, &vm.name).await? {
                    return refuse(conflict(format!("a VM named {:?} exists", vm.name)));
                }
                for v in volumes {
                    let Some(mut cur) = txn_get::<Volume>(t, &obj_key::<Volume>(&v.id)).await? else {
                        return refuse(StoreError::NotFound(format!("volume {} was deleted", v.name)));
                    };
                    if cur.attached_to.is_some() {
                        return refuse(conflict(format!("volume {} was attached meanwhile", v.name)));
                    }
                    cur.attached_to = Some(vm.id.clone());
                    cur.host = Some(vm.host.clone());
                    txn_put(t, &cur)?;
                }
                Ok(Ok(Some(txn_put(t, vm)?)))
            })
            .await;
        match written {
            Ok(Some(vm)) => {
                records::add_event(store, &vm.id, "created", format!("placed on {}", vm.host)).await?;
                return Ok(vm);
            }
            // Another placement landed between our reading the VMs and our recording: the
            // room we counted may be gone; decide again (the ports are made again for the
            // host chosen then).
            Ok(None) => release_nics(net, owner, &nics).await,
            Err(e) => {
                release_nics(net, owner, &nics).await;
                return Err(e);
            }
        }
        tracing::debug!(vm = %id, attempt, "placement raced another; deciding again");
    }
    Err(conflict(format!(
        "other VMs were being placed at the same time {PLACEMENT_ATTEMPTS} times in a row; retry the request"
    )))
}

/// Makes or binds the ports of a new VM's NICs on `host`; on a failure, what was made is undone.
async fn plug_nics(net: &Prismnet, owner: &Owner, req: &NewVm, id: &str, host: &str) -> Result<Vec<Nic>> {
    let mut nics = Vec::new();
    for (i, n) in req.nics.iter().enumerate() {
        let plugged = match (&n.subnet, &n.port) {
            (Some(subnet), _) => net.create_port(owner, subnet, id, host).await.map(|p| (p, true)),
            (None, Some(port)) => match net.get_port(owner, port).await {
                Ok(p) if p.binding.is_some() || !p.device_owner.is_empty() => {
                    Err(NetError::Refused(format!("port {port} is in use by {:?}", p.device_owner)))
                }
                Ok(p) => net.bind_port(owner, &p.id, id, host, None).await.map(|p| (p, false)),
                Err(e) => Err(e),
            },
            (None, None) => Err(NetError::Refused("no subnet or port".into())),
        };
        match plugged {
            Ok((p, owned)) => {
                nics.push(Nic { port: p.id, subnet: p.subnet, mac: p.mac, ips: p.fixed_ips, owned });
            }
            Err(e) => {
                release_nics(net, owner, &nics).await;
                return Err(net_error(&format!("nics[{i}]"), e));
            }
        }
    }
    Ok(nics)
}

async fn release_nics(net: &Prismnet, owner: &Owner, nics: &[Nic]) {
    for n in nics {
        let done = if n.owned { net.delete_port(owner, &n.port).await } else { net.unbind_port(owner, &n.port).await };
        if let Err(e) = done {
            tracing::warn!(port = %n.port, error = %e, "could not release a VM port; it is left in prismnet");
        }
    }
}

/// A change to a VM asked for through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start.
    Start,
    /// Stop (gracefully, then forced after the timeout).
    Stop,
    /// Reboot (a reset of a running VM).
    Reboot,
    /// Delete.
    Delete,
}

/// Applies an action to a VM record (the agent carries it out) — with `if_match`, only if the
/// VM is still at that revision (412 otherwise), checked in the transaction.
pub async fn act(store: &Store, owner: &Owner, id: &str, action: Action, if_match: Option<u64>) -> Result<Vm> {
    let vm: Vm = resolve(store, owner, id, "VM").await?;
    let id = vm.id.clone();
    let out = store
        .change(async move |t| {
            let Some(mut vm) = txn_get::<Vm>(t, &obj_key::<Vm>(&id)).await? else {
                return refuse(StoreError::NotFound(format!("VM {id} was deleted")));
            };
            if let Err(e) = check_revision(&vm, if_match) {
                return refuse(e);
            }
            if vm.deleting {
                return refuse(conflict(format!("VM {} is being deleted", vm.name)));
            }
            if vm.migration.is_some() && action != Action::Delete {
                return refuse(conflict(format!("VM {} is migrating; wait for it to finish", vm.name)));
            }
            match action {
                Action::Start => vm.power = Power::Running,
                Action::Stop => vm.power = Power::Stopped,
                Action::Reboot if vm.power == Power::Stopped => {
                    return refuse(conflict(format!("VM {} is stopped; start it instead", vm.name)));
                }
                Action::Reboot => vm.reboot_seq += 1,
                Action::Delete => {
                    vm.deleting = true;
                    vm.migration = None;
                }
            }
            Ok(Ok(txn_put(t, &vm)?))
        })
        .await?;
    let kind = match action {
        Action::Start => "start-requested",
        Action::Stop => "stop-requested",
        Action::Reboot => "reboot-requested",
        Action::Delete => "delete-requested",
    };
    records::add_event(store, &out.id, kind, "").await?;
    Ok(out)
}

/// `POST …/vms/{id}/migrate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// Target worker (default: the scheduler picks another one).
    #[serde(default)]
    pub target: Option<String>,
    /// Live migration (default: cold).
    #[serde(default)]
    pub live: bool,
}

/// Starts a migration (with `if_match`, only from that revision of the VM). A live one first
/// puts the VM's ports on standby on the target (prismnet makes their taps there, detached),
/// since the incoming QEMU opens them before the move.
pub async fn migrate(
    store: &Store,
    net: &Prismnet,
    owner: &Owner,
    id: &str,
    req: &MigrateRequest,
    if_match: Option<u64>,
) -> Result<Vm> {
    let vm: Vm = resolve(store, owner, id, "VM").await?;
    // Checked before the placement (which may set up a standby port) and again when recorded.
    check_revision(&vm, if_match)?;
    if req.target.as_deref() == Some(vm.host.as_str()) {
        return Err(invalid(format!("VM {} already runs on {}", vm.name, vm.host)));
    }
    if req.live {
        let status = records::status(store, &vm.id).await?.unwrap_or_default();
        if status.state != VmState::Running {
            return Err(conflict(format!("VM {} is not running; a cold migration moves a stopped VM", vm.name)));
        }
    }
    let kind = if req.live { MigrationKind::Live } else { MigrationKind::Cold };
    let mut placed = None;
    for attempt in 1..=PLACEMENT_ATTEMPTS {
        let epoch = records::placement_epoch(store).await?;
        let hosts: Vec<Host> = live_hosts(store).await?.into_iter().filter(|h| h.name != vm.host).collect();
        let vms = store.list_all::<Vm>().await?;
        let target = scheduler::place(
            &hosts,
            &vms,
            &Request {
                vcpus: vm.vcpus,
                memory_mib: vm.memory_mib,
                anti_affinity: vm.anti_affinity.as_deref(),
                moving: Some(&vm.id),
                only: req.target.as_deref(),
            },
        )
        .map_err(|e| conflict(e.to_string()))?;
        if kind == MigrationKind::Live {
            set_standby(net, &vm, Some(&target)).await?;
        }
        let (vm_id, to) = (vm.id.clone(), target.clone());
        let recorded = store
            .change(async move |t| {
                if !records::txn_claim_placement(t, epoch).await? {
                    return Ok(Ok(None));
                }
                let Some(mut vm) = txn_get::<Vm>(t, &obj_key::<Vm>(&vm_id)).await? else {
                    return refuse(StoreError::NotFound(format!("VM {vm_id} was deleted")));
                };
                if let Err(e) = check_revision(&vm, if_match) {
                    return refuse(e);
                }
                if vm.deleting {
                    return refuse(conflict(format!("VM {} is being deleted", vm.name)));
                }
                if let Some(m) = &vm.migration {
                    return refuse(conflict(format!("VM {} is already migrating to {}", vm.name, m.target)));
                }
                vm.migration = Some(Migration { target: to.clone(), kind, started_ms: now_ms(), incoming: None });
                Ok(Ok(Some(txn_put(t, &vm)?)))
            })
            .await;
        match recorded {
            Ok(Some(out)) => {
                placed = Some((out, target));
                break;
            }
            other => {
                // Refused, or raced by another placement: off standby before anything else.
                if kind == MigrationKind::Live {
                    set_standby(net, &vm, None).await?;
                }
                other?;
            }
        }
        tracing::debug!(vm = %vm.id, attempt, "placement raced another; deciding again");
    }
    let Some((out, target)) = placed else {
        return Err(conflict(format!(
            "other VMs were being placed at the same time {PLACEMENT_ATTEMPTS} times in a row; retry the request"
        )));
    };
    let what = if req.live { "live" } else { "cold" };
    records::add_event(store, &out.id, "migration-started", format!("{what} {} → {target}", out.host)).await?;
    Ok(out)
}

/// Rebinds the VM's ports on its host, standing by on `target` (or no longer).
async fn set_standby(net: &Prismnet, vm: &Vm, target: Option<&str>) -> Result<()> {
    for n in &vm.nics {
        net.bind_port(&vm.owner, &n.port, &vm.id, &vm.host, target)
            .await
            .map_err(|e| net_error(&format!("port {} on standby", n.port), e))?;
    }
    Ok(())
}

/// An agent's report on a VM: stored; deletes and migrations finish here.
pub async fn report(store: &Store, net: &Prismnet, host: &str, vm_id: &str, mut status: VmStatus) -> Result<()> {
    let Some(vm) = store.get::<Vm>(vm_id).await? else {
        return Err(StoreError::NotFound(format!("VM {vm_id} not found")));
    };
    let target = vm.migration.as_ref().map(|m| m.target.as_str());
    status.host = host.to_owned();
    status.updated_ms = now_ms();
    if status.migration_step == Some(MigrationStep::HandedOver) {
        // The source's account of a live migration (how long the guest paused), kept as an
        // event once: the source may report it again after the VM has moved.
        let recent = records::events(store, vm_id).await?;
        if !recent.iter().rev().take(8).any(|e| e.kind == "handed-over" && e.message == status.message) {
            records::add_event(store, vm_id, "handed-over", status.message.clone()).await?;
        }
    }
    if host != vm.host {
        // The migration target only tells where the copy stands.
        if Some(host) == target {
            match status.migration_step {
                Some(MigrationStep::TargetDone) => return finish_migration(store, net, &vm).await,
                Some(MigrationStep::Failed) => return abort_migration(store, net, &vm, &status.message).await,
                Some(MigrationStep::TargetListening) => return record_incoming(store, &vm, status.incoming).await,
                _ => return Ok(()),
            }
        }
        return Ok(());
    }
    let before = records::status(store, vm_id).await?.unwrap_or_default();
    if status.migration_step == Some(MigrationStep::Failed) && vm.migration.is_some() {
        abort_migration(store, net, &vm, &status.message).await?;
        status.migration_step = None;
    }
    records::put_status(store, vm_id, &status).await?;
    if before.state != status.state || before.restarts != status.restarts {
        let kind = match status.state {
            VmState::Running if status.restarts > before.restarts => "restarted",
            VmState::Running => "started",
            VmState::Stopped => "stopped",
            VmState::Crashed => "crashed",
            VmState::Failed => "failed",
            VmState::Migrating => "migrating",
            VmState::Deleted => "torn-down",
            VmState::Starting => "starting",
            VmState::Stopping => "stopping",
            VmState::Pending => "pending",
        };
        records::add_event(store, vm_id, kind, status.message.clone()).await?;
    }
    if before.migration_step != status.migration_step || status.state == VmState::Deleted {
        store.bump().await?;
    }
    if status.halted && vm.power == Power::Running && !vm.deleting {
        let id = vm.id.clone();
        store
            .change(async move |t| {
                if let Some(mut vm) = txn_get::<Vm>(t, &obj_key::<Vm>(&id)).await? {
                    vm.power = Power::Stopped;
                    txn_put(t, &vm)?;
                }
                Ok(Ok(()))
            })
            .await?;
    }
    if status.state == VmState::Deleted && vm.deleting {
        finish_delete(store, net, &vm).await?;
    }
    Ok(())
}

/// Removes a deleted VM's record, NICs and volume attachments.
pub async fn finish_delete(store: &Store, net: &Prismnet, vm: &Vm) -> Result<()> {
    for n in &vm.nics {
        let done =
            if n.owned { net.delete_port(&vm.owner, &n.port).await } else { net.unbind_port(&vm.owner, &n.port).await };
        done.map_err(|e| net_error(&format!("releasing port {}", n.port), e))?;
    }
    let gone = vm.clone();
    store
        .change(async move |t| {
            let vm = &gone;
            for v in &vm.volumes {
                if let Some(mut vol) = txn_get::<Volume>(t, &obj_key::<Volume>(v)).await?
                    && vol.attached_to.as_deref() == Some(vm.id.as_str())
                {
                    vol.attached_to = None;
                    txn_put(t, &vol)?;
                }
            }
            txn_delete(t, vm)?;
            Ok(Ok(()))
        })
        .await?;
    records::forget_vm(store, &vm.id).await
}

async fn finish_migration(store: &Store, net: &Prismnet, vm: &Vm) -> Result<()> {
    let Some(m) = vm.migration.clone() else { return Ok(()) };
    for n in &vm.nics {
        net.bind_port(&vm.owner, &n.port, &vm.id, &m.target, None)
            .await
            .map_err(|e| net_error(&format!("moving port {}", n.port), e))?;
    }
    let (id, target) = (vm.id.clone(), m.target.clone());
    store
        .change(async move |t| {
            let Some(mut vm) = txn_get::<Vm>(t, &obj_key::<Vm>(&id)).await? else {
                return Ok(Ok(()));
            };
            let from = std::mem::replace(&mut vm.host, target.clone());
            vm.migration = None;
            for v in &vm.volumes {
                if let Some(mut vol) = txn_get::<Volume>(t, &obj_key::<Volume>(v)).await? {
                    vol.host = Some(target.clone());
                    txn_put(t, &vol)?;
                }
            }
            txn_put(t, &vm)?;
            tracing::info!(vm = %id, %from, to = %target, "migration finished");
            Ok(Ok(()))
        })
        .await?;
    // A live-migrated guest never stopped: it is running and ready on its new host already.
    let before = records::status(store, &vm.id).await?.unwrap_or_default();
    let live = m.kind == MigrationKind::Live;
    let status = VmStatus {
        host: m.target.clone(),
        state: if live { VmState::Running } else { VmState::Pending },
        guest_ready: live && before.guest_ready,
        updated_ms: now_ms(),
        ..Default::default()
    };
    records::put_status(store, &vm.id, &status).await?;
    let what = if live { "live" } else { "cold" };
    records::add_event(store, &vm.id, "migrated", format!("{what} {} → {}", vm.host, m.target)).await
}

/// A live migration's target listens: the source's plan learns where.
async fn record_incoming(store: &Store, vm: &Vm, incoming: Option<Incoming>) -> Result<()> {
    let Some(incoming) = incoming else { return Ok(()) };
    if vm.migration.as_ref().is_none_or(|m| m.incoming.as_ref() == Some(&incoming)) {
        return Ok(());
    }
    let id = vm.id.clone();
    store
        .change(async move |t| {
            if let Some(mut vm) = txn_get::<Vm>(t, &obj_key::<Vm>(&id)).await?
                && let Some(m) = vm.migration.as_mut()
                && m.kind == MigrationKind::Live
            {
                m.incoming = Some(incoming.clone());
                txn_put(t, &vm)?;
            }
            Ok(Ok(()))
        })
        .await
}

async fn abort_migration(store: &Store, net: &Prismnet, vm: &Vm, why: &str) -> Result<()> {
    if vm.migration.as_ref().is_some_and(|m| m.kind == MigrationKind::Live) {
        set_standby(net, vm, None).await?;
    }
    let id = vm.id.clone();
    store
        .change(async move |t| {
            if let Some(mut vm) = txn_get::<Vm>(t, &obj_key::<Vm>(&id)).await? {
                vm.migration = None;
                txn_put(t, &vm)?;
            }
            Ok(Ok(()))
        })
        .await?;
    records::add_event(store, &vm.id, "migration-failed", why).await
}

/// `POST …/volumes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewVolume {
    /// Name.
    pub name: String,
    /// Size in GiB (1 to 1024).
    pub size_gib: u32,
    /// Labels (selected on by `?selector=`).
    #[serde(default, skip_serializing_if = "ultracloud_resource::Labels::is_empty")]
    pub labels: ultracloud_resource::Labels,
    /// Annotations.
    #[serde(default, skip_serializing_if = "ultracloud_resource::Labels::is_empty")]
    pub annotations: ultracloud_resource::Labels,
}

/// Creates a volume (its file is made on the worker of the VM it is first attached to).
pub async fn create_volume(store: &Store, owner: &Owner, req: &NewVolume) -> Result<Volume> {
    valid_name(&req.name)?;
    if req.size_gib == 0 || req.size_gib > 1024 {
        return Err(invalid(format!("size_gib {}: 1 to 1024", req.size_gib)));
    }
    let vol = Volume {
        id: new_id("vol"),
        owner: owner.clone(),
        meta: ultracloud_resource::Meta::new(req.labels.clone(), req.annotations.clone())?,
        name: req.name.clone(),
        size_gib: req.size_gib,
        backend: "local".into(),
        host: None,
        attached_to: None,
        created_ms: now_ms(),
    };
    let owner = owner.clone();
    store
        .change(async move |t| {
            if !Store::txn_name_free::<Volume>(t, &owner, &vol.name).await? {
                return refuse(conflict(format!("a volume named {:?} exists", vol.name)));
            }
            Ok(Ok(txn_put(t, &vol)?))
        })
        .await
}

/// Attaches (`Some(vm)`) or detaches (`None`) a volume; the VM must be stopped.
pub async fn set_attachment(
    store: &Store,
    owner: &Owner,
    volume: &str,
    vm: Option<&str>,
    if_match: Option<u64>,
) -> Result<Volume> {
    let vol: Volume = resolve(store, owner, volume, "volume").await?;
    let target_vm = match (vm, &vol.attached_to) {
        (Some(v), _) => resolve::<Vm>(store, owner, v, "VM").await?,
        (None, Some(v)) => store.get::<Vm>(v).await?.ok_or_else(|| conflict("the VM it was attached to is gone"))?,
        (None, None) => return Err(conflict(format!("volume {} is not attached", vol.name))),
    };
    let (vol_id, vm_id, attach) = (vol.id.clone(), target_vm.id.clone(), vm.is_some());
    let out = store
        .change(async move |t| {
            let key = obj_key::<Volume>(&vol_id);
            let Some(mut vol) = txn_get::<Volume>(t, &key).await? else {
                return refuse(StoreError::NotFound(format!("volume {vol_id} was deleted")));
            };
            if let Err(e) = check_revision(&vol, if_match) {
                return refuse(e);
            }
            let Some(mut vm) = txn_get::<Vm>(t, &obj_key::<Vm>(&vm_id)).await? else {
                return refuse(StoreError::NotFound(format!("VM {vm_id} was deleted")));
            };
            if vm.power != Power::Stopped || vm.migration.is_some() || vm.deleting {
                return refuse(conflict(format!("stop VM {} first (volumes are attached to stopped VMs)", vm.name)));
            }
            if attach {
                if let Some(other) = &vol.attached_to {
                    return refuse(conflict(format!("volume {} is attached to {other}", vol.name)));
                }
                if let Some(h) = &vol.host
                    && *h != vm.host
                {
                    return refuse(invalid(format!(
                        "volume {} lives on {h} and VM {} on {}; local volumes stay on their worker",
                        vol.name, vm.name, vm.host
                    )));
                }
                vol.attached_to = Some(vm.id.clone());
                vol.host = Some(vm.host.clone());
                vm.volumes.push(vol.id.clone());
            } else {
                vol.attached_to = None;
                vm.volumes.retain(|v| *v != vol.id);
            }
            let vol = txn_put(t, &vol)?;
            txn_put(t, &vm)?;
            Ok(Ok(vol))
        })
        .await?;
    let kind = if attach { "volume-attached" } else { "volume-detached" };
    records::add_event(store, &target_vm.id, kind, out.name.clone()).await?;
    Ok(out)
}

/// Deletes a detached volume (its agent removes the file).
pub async fn delete_volume(store: &Store, owner: &Owner, id: &str) -> Result<()> {
    let vol: Volume = resolve(store, owner, id, "volume").await?;
    if let Some(vm) = &vol.attached_to {
        return Err(conflict(format!("volume {} is attached to {vm}; detach it first", vol.name)));
    }
    store
        .change(async move |t| {
            txn_delete(t, &vol)?;
            Ok(Ok(()))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> NewVm {
        NewVm { name: "web-1".into(), image: "guest".into(), ..Default::default() }
    }

    #[test]
    fn bad_vm_requests_name_what_is_wrong() {
        let err = |r: NewVm| check_new_vm(&r).unwrap_err().to_string();
        assert_eq!(check_new_vm(&req()).unwrap(), (1, 256));
        assert!(err(NewVm { name: "Web".into(), ..req() }).contains("name \"Web\""));
        assert!(err(NewVm { vcpus: Some(0), ..req() }).contains("vcpus 0"));
        assert!(err(NewVm { memory_mib: Some(8), ..req() }).contains("memory_mib 8"));
        assert!(
            err(NewVm { user_data: Some("%%%not base64".into()), ..req() }).contains("user_data is not valid base64")
        );
        let big = base64::engine::general_purpose::STANDARD.encode(vec![b'x'; MAX_USER_DATA + 1]);
        assert!(err(NewVm { user_data: Some(big), ..req() }).contains("at most 65536"));
        let both = NicRequest { subnet: Some("a".into()), port: Some("b".into()) };
        assert!(err(NewVm { nics: vec![both], ..req() }).contains("nics[0]"));
        assert!(err(NewVm { nics: vec![NicRequest::default()], ..req() }).contains("nics[0]"));
    }
}
