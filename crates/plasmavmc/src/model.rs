//! plasmavmc's resources, as stored and as the API shows them. VMs, images and volumes belong
//! to a tenant's project (prismnet's [`Owner`]); IDs are random and unique platform-wide.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
pub use ultracloud_resource::Owner;

/// Disk image formats QEMU opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// qcow2 (copy-on-write; overlays are always qcow2).
    Qcow2,
    /// A raw disk.
    Raw,
}

impl DiskFormat {
    /// The name `qemu-img` and `-drive format=` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qcow2 => "qcow2",
            Self::Raw => "raw",
        }
    }
}

/// One file of an image: where workers fetch it and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFile {
    /// `file:///…` or `http://…`.
    pub url: String,
    /// Hex SHA-256 of the content (checked by every worker that fetches it).
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// A bootable image: a disk, and for images without a boot loader the kernel, initrd and
/// kernel command line QEMU boots directly (as OpenStack's kernel_id/ramdisk_id properties).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// ID.
    pub id: String,
    /// Owner.
    #[serde(flatten)]
    pub owner: Owner,
    /// Labels, annotations, revision, who made and changed it, when.
    #[serde(default)]
    pub meta: ultracloud_resource::Meta,
    /// Name (unique in the project).
    pub name: String,
    /// Format of the disk.
    pub format: DiskFormat,
    /// The disk (VMs boot from a qcow2 overlay on it; it is never written).
    pub disk: ImageFile,
    /// Kernel for direct boot.
    #[serde(default)]
    pub kernel: Option<ImageFile>,
    /// Initrd for direct boot.
    #[serde(default)]
    pub initrd: Option<ImageFile>,
    /// Kernel command line for direct boot.
    #[serde(default)]
    pub cmdline: Option<String>,
    /// When it was imported (Unix milliseconds).
    pub created_ms: u64,
}

/// What a VM does when its guest stops by itself or its QEMU dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Start it again whenever it stops without being asked to.
    Always,
    /// Start it again after a crash (QEMU died, guest panicked), not after a guest power-off.
    #[default]
    OnFailure,
    /// Leave it stopped.
    Never,
}

/// The power state a VM should be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Power {
    /// Running.
    #[default]
    Running,
    /// Stopped (disks kept).
    Stopped,
}

/// A VM NIC: a prismnet port (tap device on the VM's worker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    /// The prismnet port.
    pub port: String,
    /// Its subnet.
    pub subnet: String,
    /// Its MAC.
    pub mac: String,
    /// Its fixed addresses (what DHCP hands the guest).
    pub ips: Vec<Ipv4Addr>,
    /// Whether plasmavmc created the port (and deletes it with the VM) or the user brought it
    /// (it is only unbound).
    pub owned: bool,
}

/// A migration in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// The worker the VM moves to.
    pub target: String,
    /// Cold or live.
    pub kind: MigrationKind,
    /// When it was asked for (Unix milliseconds).
    pub started_ms: u64,
    /// Live: where the target's incoming QEMU listens, once it does.
    #[serde(default)]
    pub incoming: Option<Incoming>,
}

/// Where a live migration's target listens (`ip:port` each, on its underlay address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incoming {
    /// QEMU's incoming migration stream.
    pub migration: String,
    /// The NBD server exporting the target's disks (`disk0` the root disk, then volumes), which
    /// the source mirrors its disks into.
    pub nbd: String,
}

/// How a VM moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrationKind {
    /// Stop, copy the disks, start on the target.
    Cold,
    /// QEMU migration to an incoming instance on the target; the guest keeps running.
    Live,
}

/// A virtual machine, as the tenant asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    /// ID.
    pub id: String,
    /// Owner.
    #[serde(flatten)]
    pub owner: Owner,
    /// Labels, annotations, revision, who made and changed it, when.
    #[serde(default)]
    pub meta: ultracloud_resource::Meta,
    /// Name (unique in the project).
    pub name: String,
    /// Image ID.
    pub image: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// NICs, in guest order.
    pub nics: Vec<Nic>,
    /// Attached volume IDs, in guest order after the root disk.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// User data (base64), handed to the guest through QEMU fw_cfg `opt/ultracloud/userdata`.
    #[serde(default)]
    pub user_data: Option<String>,
    /// Restart policy.
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// VMs sharing this label are placed on different workers when possible.
    #[serde(default)]
    pub anti_affinity: Option<String>,
    /// Seconds a graceful stop waits for the guest before forcing it off.
    pub stop_timeout_s: u32,
    /// The worker it is placed on.
    pub host: String,
    /// Desired power state.
    pub power: Power,
    /// Bumped by every reboot request; the agent reboots when it sees a newer value.
    #[serde(default)]
    pub reboot_seq: u64,
    /// A migration in progress.
    #[serde(default)]
    pub migration: Option<Migration>,
    /// Delete requested: the agent tears it down, then the record goes.
    #[serde(default)]
    pub deleting: bool,
    /// When it was created (Unix milliseconds).
    pub created_ms: u64,
}

/// What a VM is doing, as its agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    /// Placed; its agent has not reported yet.
    #[default]
    Pending,
    /// Fetching the image, making disks, waiting for the NIC, starting QEMU.
    Starting,
    /// QEMU runs the guest.
    Running,
    /// A graceful stop is in progress.
    Stopping,
    /// Not running; disks kept.
    Stopped,
    /// QEMU died or the guest panicked; the restart policy decides what follows.
    Crashed,
    /// Moving to another worker.
    Migrating,
    /// Cannot run (the reason is in `message`); retried.
    Failed,
    /// Torn down on its worker (the record is about to go).
    Deleted,
}

/// The agent's report on one VM.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VmStatus {
    /// State.
    pub state: VmState,
    /// The worker reporting.
    pub host: String,
    /// `kvm` or `tcg` while running.
    #[serde(default)]
    pub accel: Option<String>,
    /// QEMU's PID while running.
    #[serde(default)]
    pub pid: Option<u32>,
    /// The guest printed its readiness marker since QEMU last started.
    #[serde(default)]
    pub guest_ready: bool,
    /// The last reboot request carried out.
    #[serde(default)]
    pub reboot_seq: u64,
    /// Times the restart policy started it again.
    #[serde(default)]
    pub restarts: u32,
    /// Why it is failed, crashed or stopped, when known.
    #[serde(default)]
    pub message: String,
    /// The VM stopped by itself and its restart policy leaves it stopped: the controller records
    /// it as stopped (a start request runs it again).
    #[serde(default)]
    pub halted: bool,
    /// Where a migration stands on the reporting side (cold: the source stopped the VM, the
    /// target holds its disks; live: the target listens, the target runs the VM).
    #[serde(default)]
    pub migration_step: Option<MigrationStep>,
    /// Live migration target: where its incoming QEMU listens.
    #[serde(default)]
    pub incoming: Option<Incoming>,
    /// When this report was made (Unix milliseconds).
    #[serde(default)]
    pub updated_ms: u64,
}

/// Where a migration stands, as an agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationStep {
    /// Source (cold): stopped, disks ready to be copied.
    SourceReady,
    /// Target (live): the incoming QEMU waits, its disks exported over NBD (see
    /// [`VmStatus::incoming`]).
    TargetListening,
    /// Source (live): QEMU completed the migration; the guest runs on the target.
    HandedOver,
    /// Target: disks copied (cold) or migration completed (live); the VM can switch worker.
    TargetDone,
    /// Either side: it failed (the reason is in `message`); the VM stays on the source.
    Failed,
}

/// A block volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// ID.
    pub id: String,
    /// Owner.
    #[serde(flatten)]
    pub owner: Owner,
    /// Labels, annotations, revision, who made and changed it, when.
    #[serde(default)]
    pub meta: ultracloud_resource::Meta,
    /// Name (unique in the project).
    pub name: String,
    /// Size in GiB.
    pub size_gib: u32,
    /// The backend holding it (`local`: a qcow2 file on one worker).
    pub backend: String,
    /// The worker holding it (local volumes live where they were first attached).
    #[serde(default)]
    pub host: Option<String>,
    /// The VM it is attached to.
    #[serde(default)]
    pub attached_to: Option<String>,
    /// When it was created (Unix milliseconds).
    pub created_ms: u64,
}

/// Something that happened to a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When (Unix milliseconds).
    pub at_ms: u64,
    /// What (`created`, `started`, `stopped`, `crashed`, `restarted`, `migrated`, …).
    pub kind: String,
    /// Details.
    #[serde(default)]
    pub message: String,
}

/// A worker's plasmavmc agent, as it registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Its name (the same as its prismnet agent's).
    pub name: String,
    /// Virtual CPUs it offers.
    pub vcpus: u32,
    /// Memory it offers, in MiB.
    pub memory_mib: u32,
    /// `kvm` or `tcg`.
    pub accel: String,
    /// Where other agents fetch disks from during a migration (`http://ip:port`).
    pub agent_url: String,
    /// Its underlay address (live migration streams go there).
    pub address: Ipv4Addr,
    /// Last heartbeat (Unix milliseconds); hosts silent for a while get no new VMs.
    pub seen_ms: u64,
}

ultracloud_resource::resource!(Vm, "plasmavmc", "vm", named);
ultracloud_resource::resource!(Image, "plasmavmc", "image", named);
ultracloud_resource::resource!(Volume, "plasmavmc", "volume", named);

/// Now, in Unix milliseconds.
pub use ultracloud_runtime::clock::now_ms;
