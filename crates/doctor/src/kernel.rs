//! The Linux kernel UltraCloud boots its guests with, and how to get one without touching the host.
//!
//! Guests boot Debian's own kernel (`linux-image-amd64`) with a small busybox initramfs. Either the
//! host already has such a kernel in `/boot` with its modules (virtio among them), or the doctor
//! downloads the package and unpacks it into its cache — the host's boot is never changed. The guest
//! image builder later finds the kernel through [`guest_kernel`].

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use crate::cmd::{display, run_bounded};
use crate::lookup::Finder;

/// Default cache directory when `ULTRACLOUD_CACHE_DIR` is unset.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/ultracloud/cache";
/// Environment variable that overrides [`DEFAULT_CACHE_DIR`].
pub const CACHE_DIR_ENV: &str = "ULTRACLOUD_CACHE_DIR";
/// Directory under the cache holding the unpacked kernel package.
pub const GUEST_KERNEL_DIR: &str = "guest-kernel";
/// Marker file written last by [`fetch_guest_kernel`]; holds the kernel version.
pub const READY_MARKER: &str = "READY";
/// The Debian metapackage naming the current kernel.
pub const KERNEL_METAPACKAGE: &str = "linux-image-amd64";

/// A kernel guests can boot, with the modules their initramfs loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestKernel {
    /// Kernel release, e.g. `6.1.0-26-amd64`.
    pub version: String,
    /// The compressed kernel image to pass to `qemu -kernel`.
    pub vmlinuz: PathBuf,
    /// `…/lib/modules/<version>`, holding `kernel/drivers/virtio/…` and (when depmod ran) `modules.dep`.
    pub modules_dir: PathBuf,
}

/// Why fetching the guest kernel failed.
#[derive(Debug, thiserror::Error)]
pub enum GuestKernelError {
    /// A tool the fetch needs is not installed.
    #[error("{tool} not found (Debian package {package})")]
    ToolMissing {
        /// Binary name.
        tool: &'static str,
        /// Package providing it.
        package: &'static str,
    },
    /// A filesystem step failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done, e.g. "creating".
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A tool could not be started.
    #[error("starting `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A tool ran and failed.
    #[error("`{command}` failed: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// Its last error line or exit status.
        reason: String,
    },
    /// `apt-cache depends linux-image-amd64` named no concrete kernel package.
    #[error("`apt-cache depends {KERNEL_METAPACKAGE}` names no linux-image package (run apt-get update?)")]
    NoKernelPackage,
    /// `apt-get download` left no `.deb` behind.
    #[error("apt-get download left no .deb in {0}")]
    NoDeb(PathBuf),
    /// The unpacked package has no `boot/vmlinuz-*` with matching modules.
    #[error("the unpacked kernel package in {0} has no boot/vmlinuz-* with lib/modules")]
    NoKernel(PathBuf),
}

/// The cache directory: `$ULTRACLOUD_CACHE_DIR`, else [`DEFAULT_CACHE_DIR`].
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os(CACHE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR))
}

/// A guest kernel: the one in `<cache_dir>/guest-kernel/` if fetched, else one on the host in
/// `/boot` with virtio modules in `/lib/modules`.
pub fn guest_kernel(cache_dir: &Path) -> Option<GuestKernel> {
    find_guest_kernel(cache_dir, Path::new("/"))
}

/// [`guest_kernel`] with the host's filesystem rooted at `host_root` (tests use an empty dir).
pub(crate) fn find_guest_kernel(cache_dir: &Path, host_root: &Path) -> Option<GuestKernel> {
    cached_guest_kernel(cache_dir).or_else(|| host_guest_kernel(host_root))
}

/// The kernel [`fetch_guest_kernel`] unpacked into `cache_dir`, if complete.
pub fn cached_guest_kernel(cache_dir: &Path) -> Option<GuestKernel> {
    let root = cache_dir.join(GUEST_KERNEL_DIR);
    let version = std::fs::read_to_string(root.join(READY_MARKER)).ok()?;
    let version = version.trim();
    if version.is_empty() || version.contains('/') {
        return None;
    }
    kernel_in(&root, version)
}

/// The kernel `version` in the tree at `root`: `boot/vmlinuz-<v>` plus `lib/modules/<v>` (or the
/// merged-/usr `usr/lib/modules/<v>`) with virtio drivers.
fn kernel_in(root: &Path, version: &str) -> Option<GuestKernel> {
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{version}"));
    if !vmlinuz.is_file() {
        return None;
    }
    let modules_dir = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|base| root.join(base).join(version))
        .find(|dir| dir.join("kernel/drivers/virtio").is_dir())?;
    Some(GuestKernel { version: version.to_string(), vmlinuz, modules_dir })
}

/// Versions of the `vmlinuz-*` files in `<root>/boot`.
fn vmlinuz_versions(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.join("boot")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = name.strip_prefix("vmlinuz-")?;
            (!version.is_empty()).then(|| version.to_string())
        })
        .collect()
}

/// The host's best guest-capable kernel: the running one if it qualifies, else the newest.
fn host_guest_kernel(host_root: &Path) -> Option<GuestKernel> {
    let running = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let running = running.trim();
    let mut versions = vmlinuz_versions(host_root);
    versions.sort_by(|a, b| version_cmp(b, a));
    if let Some(pos) = versions.iter().position(|v| v == running) {
        let v = versions.remove(pos);
        versions.insert(0, v);
    }
    versions.iter().find_map(|v| kernel_in(host_root, v))
}

/// Compares version strings piecewise, digits numerically (`6.1.0-10` > `6.1.0-9`).
fn version_cmp(a: &str, b: &str) -> Ordering {
    fn pieces(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (pa, pb) = (pieces(a), pieces(b));
    for (x, y) in pa.iter().zip(&pb) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    pa.len().cmp(&pb.len())
}

/// The concrete kernel package in `apt-cache depends linux-image-amd64` output.
pub(crate) fn kernel_package_from_depends(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let dep = line.trim().strip_prefix("Depends:")?.trim();
        let dep = dep.trim_start_matches('<').trim_end_matches('>');
        (dep.starts_with("linux-image-") && dep != KERNEL_METAPACKAGE).then(|| dep.to_string())
    })
}

/// Removes the fetch's scratch directory on every path out.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), %error, "removing guest kernel scratch dir");
        }
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> GuestKernelError {
    let path = path.to_path_buf();
    move |source| GuestKernelError::Io { action, path, source }
}

/// Runs a fetch step, turning every failure into a [`GuestKernelError`]; returns its stdout.
fn step(cmd: &mut Command, timeout: Duration) -> Result<String, GuestKernelError> {
    let command = display(cmd);
    tracing::info!(%command, "guest kernel");
    let ran =
        run_bounded(cmd, timeout).map_err(|source| GuestKernelError::Spawn { command: command.clone(), source })?;
    if !ran.success() {
        return Err(GuestKernelError::Command { command, reason: ran.failure() });
    }
    Ok(ran.stdout)
}

fn tool(finder: &Finder, tool: &'static str, package: &'static str) -> Result<PathBuf, GuestKernelError> {
    finder.find(tool).ok_or(GuestKernelError::ToolMissing { tool, package })
}

/// Downloads Debian's current kernel package and unpacks it into `<cache_dir>/guest-kernel/`
/// (without installing it: the host's boot does not change), runs `depmod` on it when `depmod`
/// exists, and writes the `READY` marker. Returns the `guest-kernel` directory.
///
/// Needs network access to the Debian mirror and an up-to-date `apt-get update`; takes a while
/// (the package is ~70 MB). An earlier fetched kernel is replaced only once the new one is complete.
pub fn fetch_guest_kernel(cache_dir: &Path) -> Result<PathBuf, GuestKernelError> {
    let finder = Finder::system();
    let apt_cache = tool(&finder, "apt-cache", "apt")?;
    let apt_get = tool(&finder, "apt-get", "apt")?;
    let dpkg = tool(&finder, "dpkg", "dpkg")?;

    std::fs::create_dir_all(cache_dir).map_err(io_err("creating", cache_dir))?;
    let scratch = ScratchDir(cache_dir.join(format!(".guest-kernel-tmp-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&scratch.0);
    let debs = scratch.0.join("deb");
    let root = scratch.0.join("root");
    for dir in [&debs, &root] {
        std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    }

    let depends = step(Command::new(&apt_cache).args(["depends", KERNEL_METAPACKAGE]), Duration::from_secs(60))?;
    let package = kernel_package_from_depends(&depends).ok_or(GuestKernelError::NoKernelPackage)?;
    step(Command::new(&apt_get).args(["download", &package]).current_dir(&debs), Duration::from_secs(15 * 60))?;
    let deb = std::fs::read_dir(&debs)
        .map_err(io_err("listing", &debs))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| GuestKernelError::NoDeb(debs.clone()))?;
    step(Command::new(&dpkg).arg("-x").arg(&deb).arg(&root), Duration::from_secs(5 * 60))?;

    let kernel = vmlinuz_versions(&root)
        .iter()
        .find_map(|v| kernel_in(&root, v))
        .ok_or_else(|| GuestKernelError::NoKernel(root.clone()))?;
    if let Some(depmod) = finder.find("depmod") {
        step(Command::new(depmod).arg("-b").arg(&root).arg(&kernel.version), Duration::from_secs(2 * 60))?;
    } else {
        tracing::warn!("depmod not found (package kmod): guest kernel has no modules.dep");
    }
    let marker = root.join(READY_MARKER);
    std::fs::write(&marker, format!("{}\n", kernel.version)).map_err(io_err("writing", &marker))?;

    // Swap the complete tree into place; the old one goes into scratch and is removed with it.
    let target = cache_dir.join(GUEST_KERNEL_DIR);
    if target.exists() {
        let old = scratch.0.join("old");
        std::fs::rename(&target, &old).map_err(io_err("moving aside", &target))?;
    }
    std::fs::rename(&root, &target).map_err(io_err("moving into place", &target))?;
    tracing::info!(version = %kernel.version, path = %target.display(), "guest kernel ready");
    Ok(target)
}

/// Lays out a fake kernel tree (`boot/vmlinuz-<v>`, `lib/modules/<v>/kernel/drivers/virtio`), for tests.
#[cfg(test)]
pub(crate) fn fake_kernel_tree(root: &Path, version: &str) {
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::write(root.join("boot").join(format!("vmlinuz-{version}")), b"kernel").unwrap();
    std::fs::create_dir_all(root.join("lib/modules").join(version).join("kernel/drivers/virtio")).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apt_cache_depends() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-26-amd64\n";
        assert_eq!(kernel_package_from_depends(out).as_deref(), Some("linux-image-6.1.0-26-amd64"));
        assert_eq!(kernel_package_from_depends("linux-image-amd64\n"), None);
    }

    #[test]
    fn cache_needs_the_ready_marker() {
        let cache = tempfile::tempdir().unwrap();
        let root = cache.path().join(GUEST_KERNEL_DIR);
        fake_kernel_tree(&root, "6.1.0-26-amd64");
        assert_eq!(cached_guest_kernel(cache.path()), None);
        std::fs::write(root.join(READY_MARKER), "6.1.0-26-amd64\n").unwrap();
        let k = cached_guest_kernel(cache.path()).unwrap();
        assert_eq!(k.version, "6.1.0-26-amd64");
        assert_eq!(k.vmlinuz, root.join("boot/vmlinuz-6.1.0-26-amd64"));
        assert_eq!(k.modules_dir, root.join("lib/modules/6.1.0-26-amd64"));
    }

    #[test]
    fn host_kernel_needs_virtio_modules_and_prefers_newest() {
        let host = tempfile::tempdir().unwrap();
        let empty = tempfile::tempdir().unwrap();
        fake_kernel_tree(host.path(), "6.1.0-9-amd64");
        fake_kernel_tree(host.path(), "6.1.0-10-amd64");
        // a vmlinuz without modules does not qualify
        std::fs::write(host.path().join("boot/vmlinuz-6.1.0-99-amd64"), b"k").unwrap();
        let k = find_guest_kernel(empty.path(), host.path()).unwrap();
        assert_eq!(k.version, "6.1.0-10-amd64");
        assert_eq!(find_guest_kernel(empty.path(), empty.path()), None);
    }

    #[test]
    fn version_order() {
        assert_eq!(version_cmp("6.1.0-10-amd64", "6.1.0-9-amd64"), Ordering::Greater);
        assert_eq!(version_cmp("6.1.0", "6.1.0"), Ordering::Equal);
        assert_eq!(version_cmp("6.10", "6.9"), Ordering::Greater);
        assert_eq!(version_cmp("6.1", "6.1.1"), Ordering::Less);
    }

    /// Downloads ~70 MB from the Debian mirror: run by hand with `--ignored`.
    #[test]
    #[ignore]
    fn fetches_the_real_kernel() {
        let cache = tempfile::tempdir().unwrap();
        let dir = fetch_guest_kernel(cache.path()).unwrap();
        let k = cached_guest_kernel(cache.path()).unwrap();
        assert!(k.vmlinuz.starts_with(&dir));
        assert!(!cache.path().join(format!(".guest-kernel-tmp-{}", std::process::id())).exists());
    }
}
