//! `ultracloud-guest-image`: builds the bootable image plasmavmc starts guest VMs from.
//!
//! An image is a directory with Debian's kernel (`vmlinuz`), a small initramfs (`initrd.img`:
//! static busybox, the virtio/ext4/fw_cfg/power-button modules and an `/init` that mounts the
//! root disk), an ext4 root disk (`root.qcow2`: busybox and the guest agent as `/sbin/init`) and
//! `manifest.json` with checksums and the kernel command line. A VM boots it with
//! `-kernel vmlinuz -initrd initrd.img -append <cmdline>` and a qcow2 overlay of `root.qcow2` as
//! its virtio disk; the guest agent (`crates/guest-agent`) then announces itself on the serial
//! console. Building needs no root: the initramfs is written here as a cpio archive and the disk
//! with `mke2fs -d`.
//!
//! Images are rebuilt in a temporary directory and swapped in whole, so a half-built image is
//! never seen. The swap replaces the files: whoever boots VMs should import the image (copy it
//! under its SHA-256) rather than point overlays at this directory.

mod cpio;
mod error;
mod initramfs;
mod manifest;
mod rootfs;

use std::path::{Path, PathBuf};
use std::process::Command;

use ultracloud_doctor::{GuestKernel, Linkage};

pub use cpio::CpioWriter;
pub use error::{BuildError, ManifestError, STATIC_AGENT_BUILD};
pub use initramfs::{GUEST_MODULES, ModuleDeps};
pub use manifest::{ImageFile, MANIFEST_FILE, MANIFEST_VERSION, Manifest, ManifestFiles, read_manifest, verify_image};
pub use rootfs::AGENT_PATH;

/// The guest agent binary's file name.
pub const GUEST_AGENT_BIN: &str = "ultracloud-guest";
/// Where cargo puts the static guest agent, relative to the target directory.
pub const STATIC_AGENT_TARGET_PATH: &str = "x86_64-unknown-linux-gnu/release/ultracloud-guest";
/// Kernel command line the image boots with: serial console, the root disk for the initramfs,
/// kernel messages only from warnings up, and a reboot (which `qemu -no-reboot` turns into an exit)
/// instead of a hang should PID 1 die.
pub const KERNEL_CMDLINE: &str = "console=ttyS0 root=/dev/vda quiet panic=-1";
/// Default size of the root filesystem.
pub const DEFAULT_DISK_SIZE_MIB: u32 = 512;
/// Smallest root filesystem accepted.
pub const MIN_DISK_SIZE_MIB: u32 = 32;
/// The kernel file name inside an image directory.
pub const KERNEL_FILE: &str = "vmlinuz";
/// The initramfs file name.
pub const INITRD_FILE: &str = "initrd.img";
/// The root disk file name.
pub const DISK_FILE: &str = "root.qcow2";

/// What to build and from what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// The image directory to create or replace.
    pub out_dir: PathBuf,
    /// The statically linked `ultracloud-guest` binary.
    pub guest_agent: PathBuf,
    /// Cache holding (or receiving) the guest kernel, see [`ultracloud_doctor::guest_kernel`].
    pub cache_dir: PathBuf,
    /// Size of the root filesystem in MiB (the qcow2 file only grows with what is written).
    pub disk_size_mib: u32,
}

impl BuildOptions {
    /// Options with the default output directory, cache and disk size.
    pub fn new(guest_agent: PathBuf) -> Self {
        Self {
            out_dir: default_out_dir(),
            guest_agent,
            cache_dir: ultracloud_doctor::default_cache_dir(),
            disk_size_mib: DEFAULT_DISK_SIZE_MIB,
        }
    }
}

/// `<cache>/guest-image`, the image directory plasmavmc looks in by default.
pub fn default_out_dir() -> PathBuf {
    ultracloud_doctor::default_cache_dir().join("guest-image")
}

/// The guest agent next to the running executable, else where cargo builds the static one
/// (`<exe dir>/../x86_64-unknown-linux-gnu/release/ultracloud-guest`, also tried one level up for
/// test binaries in `target/debug/deps`).
pub fn default_guest_agent_path() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let mut candidates = vec![dir.join(GUEST_AGENT_BIN)];
    candidates.extend(dir.ancestors().skip(1).take(2).map(|d| d.join(STATIC_AGENT_TARGET_PATH)));
    // A workspace build also leaves a dynamically linked agent next to the binary: prefer a
    // static one wherever it is, and name the first one found otherwise (the build refuses it
    // with the command that makes a static one).
    let existing: Vec<PathBuf> = candidates.into_iter().filter(|p| p.is_file()).collect();
    existing.iter().find(|p| linkage(p).is_ok_and(|l| l == Linkage::Static)).or(existing.first()).cloned()
}

/// Builds the image described by `opts`, reporting each step to `progress`.
pub fn build(opts: &BuildOptions, mut progress: impl FnMut(&str)) -> Result<Manifest, BuildError> {
    // Check everything cheap before the slow steps.
    let busybox = find_tool("busybox", "busybox-static")?;
    if linkage(&busybox)? != Linkage::Static {
        return Err(BuildError::BusyboxNotStatic { path: busybox });
    }
    if !opts.guest_agent.is_file() {
        return Err(BuildError::GuestAgentMissing { path: opts.guest_agent.clone() });
    }
    if linkage(&opts.guest_agent)? != Linkage::Static {
        return Err(BuildError::GuestAgentNotStatic { path: opts.guest_agent.clone() });
    }
    find_tool("mke2fs", "e2fsprogs")?;
    find_tool("qemu-img", "qemu-utils")?;
    let disk_size_mib = opts.disk_size_mib.max(MIN_DISK_SIZE_MIB);

    let kernel = guest_kernel(&opts.cache_dir, &mut progress)?;
    progress(&format!("guest kernel {} ({})", kernel.version, kernel.vmlinuz.display()));
    initramfs::ensure_modules_dep(&kernel)?;

    let tmp = TempDir::beside(&opts.out_dir)?;
    let dir = tmp.path();
    let vmlinuz = dir.join(KERNEL_FILE);
    std::fs::copy(&kernel.vmlinuz, &vmlinuz).map_err(io_err("copying the kernel to", &vmlinuz))?;

    progress("writing the initramfs");
    let modules = initramfs::write_initramfs(&kernel, &busybox, &dir.join(INITRD_FILE))?;
    progress(&format!("initramfs holds {} kernel modules", modules.len()));

    progress(&format!(
        "staging the root filesystem (busybox {}, agent {})",
        busybox.display(),
        opts.guest_agent.display()
    ));
    let stage = dir.join(".root");
    std::fs::create_dir(&stage).map_err(io_err("creating", &stage))?;
    let applets = rootfs::busybox_applets(&busybox)?;
    rootfs::stage_root(&stage, &busybox, &applets, &opts.guest_agent)?;
    progress(&format!("making the {disk_size_mib} MiB ext4 root disk"));
    rootfs::make_disk(&stage, &dir.join(".root.raw"), &dir.join(DISK_FILE), disk_size_mib)?;
    std::fs::remove_dir_all(&stage).map_err(io_err("removing", &stage))?;

    progress("hashing");
    let describe = |file, format| ImageFile::describe(dir, file, format).map_err(BuildError::Manifest);
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        kernel_version: kernel.version.clone(),
        cmdline: KERNEL_CMDLINE.to_string(),
        files: ManifestFiles {
            kernel: describe(KERNEL_FILE, None)?,
            initrd: describe(INITRD_FILE, None)?,
            disk: describe(DISK_FILE, Some("qcow2"))?,
        },
    };
    manifest.write(dir).map_err(BuildError::Manifest)?;
    tmp.replace(&opts.out_dir)?;
    progress(&format!("image ready in {}", opts.out_dir.display()));
    Ok(manifest)
}

/// The guest kernel from the cache or host, fetching it into the cache when there is none.
fn guest_kernel(cache_dir: &Path, progress: &mut impl FnMut(&str)) -> Result<GuestKernel, BuildError> {
    if let Some(kernel) = ultracloud_doctor::guest_kernel(cache_dir) {
        return Ok(kernel);
    }
    progress(&format!("no guest kernel yet: fetching Debian's into {} (~70 MB)", cache_dir.display()));
    ultracloud_doctor::fetch_guest_kernel(cache_dir).map_err(BuildError::FetchKernel)?;
    ultracloud_doctor::guest_kernel(cache_dir).ok_or_else(|| BuildError::NoKernel(cache_dir.to_path_buf()))
}

fn linkage(path: &Path) -> Result<Linkage, BuildError> {
    ultracloud_doctor::linkage(path).map_err(|source| BuildError::Elf { path: path.to_path_buf(), source })
}

/// A directory next to the image directory that is removed unless [`TempDir::replace`] moved it
/// into place.
struct TempDir(PathBuf);

impl TempDir {
    fn beside(target: &Path) -> Result<Self, BuildError> {
        let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
        let path = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).map_err(io_err("creating", &path))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Puts this directory at `target`: atomically swapped with an existing one (which is then
    /// removed), or renamed there.
    fn replace(self, target: &Path) -> Result<(), BuildError> {
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        if target.exists() {
            renameat2(AT_FDCWD, &self.0, AT_FDCWD, target, RenameFlags::RENAME_EXCHANGE).map_err(|e| {
                BuildError::Io { action: "swapping the new image into", path: target.to_path_buf(), source: e.into() }
            })?;
            // Drop removes what is now the old image.
        } else {
            std::fs::rename(&self.0, target).map_err(io_err("moving the new image to", target))?;
        }
        Ok(())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), %error, "removing guest image scratch dir");
        }
    }
}

/// Finds `tool` in `PATH` and the usual sbin directories.
pub(crate) fn find_tool(tool: &'static str, package: &'static str) -> Result<PathBuf, BuildError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .ok_or(BuildError::ToolMissing { tool, package })
}

/// Runs a tool to completion; returns its stdout, or its stderr as the error.
pub(crate) fn run_tool(cmd: &mut Command) -> Result<String, BuildError> {
    let command = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
    );
    tracing::debug!(%command, "guest image");
    let out = cmd.output().map_err(|source| BuildError::Spawn { command: command.clone(), source })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let reason = stderr.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_string);
        return Err(BuildError::Command { command, reason: reason.unwrap_or_else(|| out.status.to_string()) });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Maps an I/O error to [`BuildError::Io`].
pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BuildError {
    let path = path.to_path_buf();
    move |source| BuildError::Io { action, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_dynamic_guest_agent_with_the_build_command() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = BuildOptions::new(PathBuf::from("/bin/sh")); // dynamically linked on Debian
        opts.out_dir = dir.path().join("img");
        opts.cache_dir = dir.path().join("cache");
        match build(&opts, |_| {}) {
            Err(e @ BuildError::GuestAgentNotStatic { .. }) => {
                assert!(e.to_string().contains(STATIC_AGENT_BUILD), "{e}");
                assert!(STATIC_AGENT_BUILD.contains("-p ultracloud-guest-agent --target x86_64-unknown-linux-gnu"));
            }
            Err(BuildError::ToolMissing { tool, .. }) => {
                ultracloud_runtime::prerequisite::missing(&format!("{tool} not installed"))
            }
            other => panic!("unexpected: {other:?}"),
        }
        opts.guest_agent = dir.path().join("missing");
        assert!(matches!(
            build(&opts, |_| {}),
            Err(BuildError::GuestAgentMissing { .. } | BuildError::ToolMissing { .. })
        ));
        assert!(!opts.out_dir.exists());
    }

    #[test]
    fn temp_dir_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("img");
        for round in ["one", "two"] {
            let tmp = TempDir::beside(&target).unwrap();
            std::fs::write(tmp.path().join("f"), round).unwrap();
            tmp.replace(&target).unwrap();
            assert_eq!(std::fs::read_to_string(target.join("f")).unwrap(), round);
        }
        // Only the image remains: no scratch or old directories.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        drop(TempDir::beside(&target).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn default_paths() {
        assert!(default_out_dir().ends_with("guest-image"));
        // Test binaries live in target/debug/deps: the candidates reach target/<triple>/release.
        if let Some(p) = default_guest_agent_path() {
            assert!(p.ends_with(GUEST_AGENT_BIN));
        }
    }
}
