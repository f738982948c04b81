//! The doctor itself: where it looks, and the order the checks run in.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::checks;
use crate::kernel::{default_cache_dir, find_guest_kernel};
use crate::kvm::DEFAULT_KVM_PROBE_TIMEOUT;
use crate::lookup::{Finder, env_path};
use crate::privileges::Privileges;
use crate::report::Report;

/// Checks a host for what UltraCloud needs. Build one with [`Doctor::from_env`] (the real host) or
/// [`Doctor::with_path`] (a simulated PATH, for tests), then call [`Doctor::run`].
#[derive(Debug, Clone)]
pub struct Doctor {
    finder: Finder,
    cache_dir: PathBuf,
    host_root: PathBuf,
    kvm_timeout: Duration,
}

impl Doctor {
    /// The real host: binaries on `$PATH` and in Debian's `sbin`/`bin` directories (an ordinary
    /// user's PATH lacks `/usr/sbin`, where `ip` and `dnsmasq` live); cache from
    /// `$ULTRACLOUD_CACHE_DIR` or `/var/lib/ultracloud/cache`.
    pub fn from_env() -> Self {
        Self { finder: Finder::with_system_dirs(&env_path()), ..Self::with_path(OsString::new()) }
    }

    /// Looks for binaries only in the directories of `path` (a colon-separated PATH value), so a
    /// test can simulate a host by pointing it at a directory of fake tools.
    pub fn with_path(path: OsString) -> Self {
        Self {
            finder: Finder::new(&path),
            cache_dir: default_cache_dir(),
            host_root: PathBuf::from("/"),
            kvm_timeout: DEFAULT_KVM_PROBE_TIMEOUT,
        }
    }

    /// Uses `dir` as the cache holding `guest-kernel/` instead of the default.
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = dir.into();
        self
    }

    /// Looks for host kernels under `root` (`<root>/boot`, `<root>/lib/modules`) instead of `/`.
    pub fn with_host_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.host_root = root.into();
        self
    }

    /// Bounds the KVM boot probe by `timeout` instead of 8 s.
    pub fn with_kvm_timeout(mut self, timeout: Duration) -> Self {
        self.kvm_timeout = timeout;
        self
    }

    /// The cache directory, where [`crate::fetch_guest_kernel`] should put the guest kernel.
    pub fn cache_dir(&self) -> &std::path::Path {
        &self.cache_dir
    }

    /// Runs every check, in this order (ids): `privileges`, `iproute2`, `kernel-net`, `firewall`,
    /// `qemu-system`, `qemu-img`, `dnsmasq`, `busybox-static`, `kmod`, `s3-client`, `guest-kernel`, `kvm`.
    /// `kernel-net` creates and deletes a throwaway netns when privileged; `kvm` may boot a guest
    /// kernel for up to the KVM timeout. Worst case about 15 s.
    pub fn run(&self) -> Report {
        let privileges = Privileges::current();
        let privileged = privileges.as_ref().is_ok_and(Privileges::sufficient);
        let ip = self.finder.find("ip");
        let qemu = self.finder.find("qemu-system-x86_64");
        let kernel = find_guest_kernel(&self.cache_dir, &self.host_root);
        Report::new(vec![
            checks::privileges(&privileges),
            checks::iproute2(ip.as_deref()),
            checks::kernel_net(privileged, ip.as_deref()),
            checks::firewall(&self.finder),
            checks::qemu_system(qemu.as_deref()),
            checks::qemu_img(&self.finder),
            checks::dnsmasq(&self.finder),
            checks::busybox(&self.finder),
            checks::depmod(&self.finder),
            checks::s3_client(&self.finder),
            checks::guest_kernel(kernel.as_ref(), &self.cache_dir),
            checks::kvm(qemu.as_deref(), kernel.as_ref(), self.kvm_timeout),
        ])
    }
}
