//! `ultracloud-doctor`: what UltraCloud needs from a Debian 12 host, what is missing, and how to
//! install it.
//!
//! `ultracloud doctor` runs [`Doctor::run`] and prints [`Report::render_table`] (or the report as
//! JSON); `ultracloud doctor --install` then calls [`install`] with [`Report::missing_packages`]
//! and, when [`Report::needs_guest_kernel`], [`fetch_guest_kernel`]. Other crates reuse two pieces:
//! the VM agent calls [`probe_kvm`] to choose between KVM and TCG, and the guest image builder calls
//! [`guest_kernel`] to find the kernel and modules to boot guests with.
//!
//! Checks look, and probe where looking would lie: kernel networking is tried in a throwaway
//! namespace, KVM by booting a kernel, busybox by reading its ELF headers.

mod check;
mod checks;
mod cmd;
mod doctor;
mod elf;
mod install;
mod kernel;
mod kvm;
mod lookup;
mod privileges;
mod probe_net;
mod report;

pub use check::{Check, Status, apt_fix};
pub use doctor::Doctor;
pub use elf::{ElfError, Linkage, linkage, linkage_of};
pub use install::{InstallError, install, is_package_name};
pub use kernel::{
    CACHE_DIR_ENV, DEFAULT_CACHE_DIR, GUEST_KERNEL_DIR, GuestKernel, GuestKernelError, KERNEL_METAPACKAGE,
    READY_MARKER, cached_guest_kernel, default_cache_dir, fetch_guest_kernel, guest_kernel,
};
pub use kvm::{DEFAULT_KVM_PROBE_TIMEOUT, DEV_KVM, KvmProbe, probe_kvm};
pub use privileges::{Privileges, PrivilegesError};
pub use probe_net::{FeatureResult, NETNS_PREFIX, NetFeature, NetProbe, probe_kernel_networking};
pub use report::{INSTALL_COMMAND, Report};
