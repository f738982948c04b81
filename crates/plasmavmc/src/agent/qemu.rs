//! Starting, finding and stopping a VM's QEMU process. QEMU daemonizes (`-daemonize`,
//! `-pidfile`), so it outlives the agent: a restarted agent finds it by its PID file and its
//! QMP socket instead of killing it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

/// The accelerator a worker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// QEMU's software emulation (always works).
    Tcg,
}

impl Accel {
    /// Its QEMU name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }
}

/// Decides the accelerator: `tcg` or `kvm` as configured, or `auto`: KVM when a guest kernel
/// really boots under it (on some machines `/dev/kvm` exists but guests hang), TCG otherwise.
pub fn probe_accel(setting: &str, qemu: &Path, kernel: Option<&Path>) -> (Accel, String) {
    match setting {
        "tcg" => return (Accel::Tcg, "configured".into()),
        "kvm" => return (Accel::Kvm, "configured".into()),
        _ => {}
    }
    let Some(kernel) = kernel else {
        return (Accel::Tcg, "no guest kernel to probe KVM with".into());
    };
    match ultracloud_doctor::probe_kvm(qemu, kernel, ultracloud_doctor::DEFAULT_KVM_PROBE_TIMEOUT) {
        ultracloud_doctor::KvmProbe::Usable => (Accel::Kvm, "a guest booted under KVM".into()),
        ultracloud_doctor::KvmProbe::Absent => (Accel::Tcg, "no /dev/kvm".into()),
        ultracloud_doctor::KvmProbe::Unusable(why) => (Accel::Tcg, format!("KVM unusable: {why}")),
    }
}

/// Where a VM's files live on its worker.
#[derive(Debug, Clone)]
pub struct VmPaths {
    /// `<data>/vms/<id>`.
    pub dir: PathBuf,
}

impl VmPaths {
    /// The paths of VM `id` under `data_dir`.
    pub fn new(data_dir: &Path, id: &str) -> Self {
        Self { dir: data_dir.join("vms").join(id) }
    }
    /// The root disk (a qcow2 overlay on the image).
    pub fn root_disk(&self) -> PathBuf {
        self.dir.join("root.qcow2")
    }
    /// The QMP socket.
    pub fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    /// The serial console log.
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// QEMU's PID file.
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    /// The user data handed over by fw_cfg.
    pub fn user_data(&self) -> PathBuf {
        self.dir.join("user-data")
    }
    /// The agent's own notes about the VM.
    pub fn local_state(&self) -> PathBuf {
        self.dir.join("agent-state.json")
    }
}

/// A NIC as QEMU sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicArg {
    /// The tap device (made by the prismnet agent).
    pub tap: String,
    /// The MAC.
    pub mac: String,
}

/// A disk as QEMU sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskArg {
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: &'static str,
    /// Serial number the guest sees (`/dev/disk/by-id/virtio-<serial>`).
    pub serial: String,
}

/// Everything a QEMU command line needs.
#[derive(Debug, Clone)]
pub struct Launch {
    /// VM ID (also QEMU's `-name`, which finds the process again).
    pub id: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Accelerator.
    pub accel: Accel,
    /// Disks, root first.
    pub disks: Vec<DiskArg>,
    /// NICs.
    pub nics: Vec<NicArg>,
    /// Direct boot: kernel, initrd, command line.
    pub kernel: Option<(PathBuf, Option<PathBuf>, String)>,
    /// User data file for fw_cfg.
    pub user_data: Option<PathBuf>,
    /// Wait for an incoming live migration (`-incoming defer`: the address is set over QMP)
    /// instead of booting.
    pub incoming: bool,
}

/// QEMU's arguments for `l`, with its files under `paths`.
pub fn args(l: &Launch, paths: &VmPaths) -> Vec<String> {
    let p = |p: &Path| p.display().to_string();
    let mut a: Vec<String> = vec![
        "-name".into(),
        format!("ultracloud-{},process=uc-{}", l.id, l.id),
        "-machine".into(),
        "pc".into(),
        // TCG's translation cache defaults to 1 GiB; 64 MiB serves these guests and keeps
        // the per-VM memory close to the guest's own.
        "-accel".into(),
        match l.accel {
            Accel::Kvm => "kvm".into(),
            Accel::Tcg => "tcg,tb-size=64".into(),
        },
        "-cpu".into(),
        "qemu64".into(),
        "-smp".into(),
        l.vcpus.to_string(),
        "-m".into(),
        l.memory_mib.to_string(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        // A guest power-off leaves QEMU up in the `shutdown` state: the agent tells it from a
        // crash (QEMU gone) and applies the restart policy.
        "-no-shutdown".into(),
        "-serial".into(),
        format!("file:{}", p(&paths.console())),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", p(&paths.qmp())),
        "-pidfile".into(),
        p(&paths.pidfile()),
        "-daemonize".into(),
    ];
    if let Some((kernel, initrd, cmdline)) = &l.kernel {
        a.extend(["-kernel".into(), p(kernel), "-append".into(), cmdline.clone()]);
        if let Some(i) = initrd {
            a.extend(["-initrd".into(), p(i)]);
        }
    }
    for (i, d) in l.disks.iter().enumerate() {
        a.push("-drive".into());
        a.push(format!("file={},if=none,id=disk{i},format={},cache=writeback", p(&d.path), d.format));
        a.push("-device".into());
        a.push(format!("virtio-blk-pci,drive=disk{i},serial={}", d.serial));
    }
    for (i, n) in l.nics.iter().enumerate() {
        a.push("-netdev".into());
        a.push(format!("tap,id=net{i},ifname={},script=no,downscript=no", n.tap));
        a.push("-device".into());
        a.push(format!("virtio-net-pci,netdev=net{i},mac={}", n.mac));
    }
    if let Some(u) = &l.user_data {
        a.push("-fw_cfg".into());
        a.push(format!("name=opt/ultracloud/userdata,file={}", p(u)));
    }
    if l.incoming {
        a.extend(["-incoming".into(), "defer".into()]);
    }
    a
}

/// Starts QEMU (inside `netns` when set) and waits for it to daemonize.
pub async fn start(qemu: &Path, netns: Option<&str>, l: &Launch, paths: &VmPaths) -> Result<u32, String> {
    let _ = std::fs::remove_file(paths.pidfile());
    let _ = std::fs::remove_file(paths.qmp());
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(qemu);
            c
        }
        None => Command::new(qemu),
    };
    cmd.args(args(l, paths)).stdin(std::process::Stdio::null()).kill_on_drop(false);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .map_err(|_| "QEMU did not daemonize within 60 s".to_owned())?
        .map_err(|e| format!("starting {}: {e}", qemu.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("QEMU failed ({}): {}", out.status, err.trim()));
    }
    pid_of(paths, &l.id).ok_or_else(|| "QEMU daemonized but left no PID file".to_owned())
}

/// The PID of the VM's running QEMU, if its PID file names a live QEMU of this VM (a stale
/// file or a reused PID is not taken for it).
pub fn pid_of(paths: &VmPaths, id: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(paths.pidfile()).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let needle = format!("ultracloud-{id},");
    let alive = cmdline.split(|b| *b == 0).any(|arg| arg.starts_with(needle.as_bytes()));
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(false);
    (alive && !zombie).then_some(pid)
}

/// The run state QEMU reports over QMP.
pub async fn qmp_status(paths: &VmPaths) -> Result<String, super::qmp::QmpError> {
    super::qmp::Qmp::connect(&paths.qmp()).await?.status().await
}

/// Ends the VM's QEMU at once: QMP `quit`, then SIGKILL if it lingers.
pub async fn quit(paths: &VmPaths, id: &str) {
    if pid_of(paths, id).is_none() {
        return;
    }
    let _ = super::qmp::run(&paths.qmp(), "quit", None).await;
    for _ in 0..50 {
        if pid_of(paths, id).is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kill(paths, id).await;
}

/// Stops the VM gracefully: ACPI power-button presses (repeated every 2 s: a press the guest
/// gets before its handler runs is lost), up to `timeout` for the guest to power off, then
/// [`quit`]. True when the guest powered off by itself.
pub async fn shutdown(paths: &VmPaths, id: &str, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut graceful = false;
    let mut next_press = tokio::time::Instant::now();
    while tokio::time::Instant::now() < deadline {
        if tokio::time::Instant::now() >= next_press {
            let _ = super::qmp::run(&paths.qmp(), "system_powerdown", None).await;
            next_press += Duration::from_secs(2);
        }
        match qmp_status(paths).await {
            Ok(s) if s == "shutdown" => {
                graceful = true;
                break;
            }
            Err(_) if pid_of(paths, id).is_none() => {
                graceful = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    quit(paths, id).await;
    graceful
}

/// Kills the VM's QEMU with SIGKILL and waits (up to 10 s) for it to go.
pub async fn kill(paths: &VmPaths, id: &str) {
    let Some(pid) = pid_of(paths, id) else { return };
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    for _ in 0..100 {
        if pid_of(paths, id).is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_has_disks_nics_boot_and_userdata() {
        let paths = VmPaths::new(Path::new("/data"), "vm-1");
        let l = Launch {
            id: "vm-1".into(),
            vcpus: 2,
            memory_mib: 256,
            accel: Accel::Tcg,
            disks: vec![DiskArg { path: paths.root_disk(), format: "qcow2", serial: "root".into() }],
            nics: vec![NicArg { tap: "ptabc".into(), mac: "52:54:00:00:00:01".into() }],
            kernel: Some(("/img/vmlinuz".into(), Some("/img/initrd".into()), "console=ttyS0".into())),
            user_data: Some(paths.user_data()),
            incoming: false,
        };
        let a = args(&l, &paths).join(" ");
        assert!(a.contains("-machine pc -accel tcg,tb-size=64"), "{a}");
        assert!(a.contains("file=/data/vms/vm-1/root.qcow2,if=none,id=disk0,format=qcow2"), "{a}");
        assert!(a.contains("tap,id=net0,ifname=ptabc,script=no,downscript=no"), "{a}");
        assert!(a.contains("virtio-net-pci,netdev=net0,mac=52:54:00:00:00:01"), "{a}");
        assert!(a.contains("-kernel /img/vmlinuz -append console=ttyS0 -initrd /img/initrd"), "{a}");
        assert!(a.contains("name=opt/ultracloud/userdata,file=/data/vms/vm-1/user-data"), "{a}");
        assert!(a.contains("-no-shutdown") && a.contains("-daemonize"), "{a}");
        assert!(!a.contains("-incoming"));
    }

    #[test]
    fn a_stale_pid_file_is_not_a_vm() {
        let dir = tempfile::tempdir().unwrap();
        let paths = VmPaths::new(dir.path(), "vm-x");
        std::fs::create_dir_all(&paths.dir).unwrap();
        std::fs::write(paths.pidfile(), std::process::id().to_string()).unwrap();
        assert_eq!(pid_of(&paths, "vm-x"), None, "this test process is not that VM's QEMU");
    }
}
