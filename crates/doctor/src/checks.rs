//! The individual checks: each turns what was found on the host into one report row.
//!
//! Finding things (PATH lookup, ELF parsing, probes) lives in the modules named after them; this
//! file only decides status, detail and fix, so the wording of the report is in one place.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::check::{Check, Spec, apt_fix};
use crate::cmd::run_bounded;
use crate::elf::{self, Linkage};
use crate::kernel::{GUEST_KERNEL_DIR, GuestKernel, KERNEL_METAPACKAGE};
use crate::kvm::{DEV_KVM, KvmProbe, probe_kvm};
use crate::lookup::Finder;
use crate::privileges::{Privileges, PrivilegesError};
use crate::probe_net::{NetFeature, probe_kernel_networking};
use crate::report::{GUEST_KERNEL_ID, INSTALL_COMMAND};

/// The fix for missing privileges.
const RUN_AS_ROOT: &str = "run as root (sudo)";

const PRIVILEGES: Spec = spec("privileges", "privileges", true);
const IPROUTE2: Spec = spec("iproute2", "iproute2", true);
const KERNEL_NET: Spec = spec("kernel-net", "kernel networking", true);
const FIREWALL: Spec = spec("firewall", "firewall", true);
const QEMU_SYSTEM: Spec = spec("qemu-system", "qemu-system-x86_64", true);
const QEMU_IMG: Spec = spec("qemu-img", "qemu-img", true);
const DNSMASQ: Spec = spec("dnsmasq", "dnsmasq", true);
const BUSYBOX: Spec = spec("busybox-static", "busybox (static)", true);
const KMOD: Spec = spec("kmod", "depmod (kmod)", false);
const S3_CLIENT: Spec = spec("s3-client", "aws (S3 client)", false);
const GUEST_KERNEL: Spec = spec(GUEST_KERNEL_ID, "guest kernel", true);
const KVM: Spec = spec("kvm", "KVM", false);

const fn spec(id: &'static str, name: &'static str, required: bool) -> Spec {
    Spec { id, name, required }
}

/// Root, or `CAP_NET_ADMIN` + `CAP_SYS_ADMIN`.
pub(crate) fn privileges(found: &Result<Privileges, PrivilegesError>) -> Check {
    match found {
        Ok(p) if p.is_root() => PRIVILEGES.ok("root (euid 0)"),
        Ok(p) if p.sufficient() => PRIVILEGES.ok(format!("euid {} with CAP_NET_ADMIN and CAP_SYS_ADMIN", p.euid)),
        Ok(p) => PRIVILEGES.missing(format!("euid {} without {}", p.euid, p.missing_caps().join(", ")), RUN_AS_ROOT),
        Err(e) => PRIVILEGES.missing(format!("cannot tell: {e}"), RUN_AS_ROOT),
    }
}

/// `ip` on PATH, and `ip netns list` works.
pub(crate) fn iproute2(ip: Option<&Path>) -> Check {
    let Some(ip) = ip else {
        return IPROUTE2.missing_packages("`ip` not found", &["iproute2"]);
    };
    let mut cmd = Command::new(ip);
    cmd.args(["netns", "list"]);
    match run_bounded(&mut cmd, Duration::from_secs(5)) {
        Ok(ran) if ran.success() => IPROUTE2.ok(format!("{} (netns supported)", ip.display())),
        Ok(ran) => {
            IPROUTE2.missing_packages(format!("`{} netns list` failed: {}", ip.display(), ran.failure()), &["iproute2"])
        }
        Err(e) => IPROUTE2.missing_packages(format!("cannot run {}: {e}", ip.display()), &["iproute2"]),
    }
}

/// A real netns + bridge + veth + vxlan + tap probe, when privileged and `ip` exists.
pub(crate) fn kernel_net(privileged: bool, ip: Option<&Path>) -> Check {
    let Some(ip) = ip else {
        return KERNEL_NET.warn("not probed (`ip` missing)", None);
    };
    if !privileged {
        return KERNEL_NET.warn("not probed (needs root)", Some(RUN_AS_ROOT.to_string()));
    }
    let probe = probe_kernel_networking(ip);
    let failed = probe.failed();
    if failed.is_empty() {
        return KERNEL_NET.ok(probe.summary());
    }
    let fix = if failed.contains(&NetFeature::Netns) {
        "enable network namespaces (CONFIG_NET_NS; containers may forbid them)".to_string()
    } else {
        let modules: Vec<&str> = failed.iter().filter_map(|f| f.module()).collect();
        format!("modprobe {}", modules.join(" "))
    };
    KERNEL_NET.missing(probe.summary(), fix)
}

/// `nft` preferred, `iptables` tolerated.
pub(crate) fn firewall(finder: &Finder) -> Check {
    match (finder.find("nft"), finder.find("iptables")) {
        (Some(nft), _) => FIREWALL.ok(format!("nftables ({})", nft.display())),
        (None, Some(iptables)) => {
            let mut row = FIREWALL.warn(
                format!("only iptables ({}); nftables preferred", iptables.display()),
                Some(apt_fix(&["nftables"])),
            );
            row.packages = vec!["nftables".to_string()];
            row
        }
        (None, None) => FIREWALL.missing_packages("neither `nft` nor `iptables` found", &["nftables"]),
    }
}

/// A binary that one Debian package provides.
fn binary(spec: Spec, finder: &Finder, name: &str, package: &str) -> Check {
    match finder.find(name) {
        Some(path) => spec.ok(path.display().to_string()),
        None => spec.missing_packages(format!("`{name}` not found"), &[package]),
    }
}

/// `qemu-system-x86_64` from qemu-system-x86.
pub(crate) fn qemu_system(qemu: Option<&Path>) -> Check {
    match qemu {
        Some(path) => QEMU_SYSTEM.ok(path.display().to_string()),
        None => QEMU_SYSTEM.missing_packages("`qemu-system-x86_64` not found", &["qemu-system-x86"]),
    }
}

/// `qemu-img` from qemu-utils.
pub(crate) fn qemu_img(finder: &Finder) -> Check {
    binary(QEMU_IMG, finder, "qemu-img", "qemu-utils")
}

/// `dnsmasq` from dnsmasq-base (the `dnsmasq` package would start a system daemon).
pub(crate) fn dnsmasq(finder: &Finder) -> Check {
    binary(DNSMASQ, finder, "dnsmasq", "dnsmasq-base")
}

/// `aws` from awscli: the S3 client the quickstart proves lightningstor with (advisory: nodes
/// do not need it).
pub(crate) fn s3_client(finder: &Finder) -> Check {
    binary(S3_CLIENT, finder, "aws", "awscli")
}

/// A statically linked busybox, for guest initramfs images.
pub(crate) fn busybox(finder: &Finder) -> Check {
    let candidates = finder.find_all("busybox");
    let mut problems = Vec::new();
    for path in &candidates {
        match elf::linkage(path) {
            Ok(Linkage::Static) => return BUSYBOX.ok(format!("{} (static)", path.display())),
            Ok(Linkage::Dynamic) => problems.push(format!("{} is dynamically linked", path.display())),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    let detail = if problems.is_empty() { "`busybox` not found".to_string() } else { problems.join("; ") };
    BUSYBOX.missing_packages(detail, &["busybox-static"])
}

/// `depmod`, which gives a fetched guest kernel its `modules.dep`.
pub(crate) fn depmod(finder: &Finder) -> Check {
    match finder.find("depmod") {
        Some(path) => KMOD.ok(path.display().to_string()),
        None => KMOD.missing_packages("`depmod` not found: a fetched guest kernel gets no modules.dep", &["kmod"]),
    }
}

/// A guest kernel in the cache or in the host's /boot.
pub(crate) fn guest_kernel(found: Option<&GuestKernel>, cache_dir: &Path) -> Check {
    match found {
        Some(k) => GUEST_KERNEL.ok(format!("{} ({})", k.version, k.vmlinuz.display())),
        None => GUEST_KERNEL.missing(
            format!(
                "none in {} or /boot (fetches {KERNEL_METAPACKAGE} there; host boot unchanged)",
                cache_dir.join(GUEST_KERNEL_DIR).display()
            ),
            INSTALL_COMMAND,
        ),
    }
}

/// KVM, decided by a real boot; never fails readiness.
pub(crate) fn kvm(qemu: Option<&Path>, kernel: Option<&GuestKernel>, timeout: Duration) -> Check {
    if !Path::new(DEV_KVM).exists() {
        return KVM.warn("/dev/kvm absent → TCG", None);
    }
    let not_probed = |why: &str| KVM.warn(format!("/dev/kvm present, not probed ({why}) → TCG"), None);
    let Some(qemu) = qemu else {
        return not_probed("no qemu-system-x86_64");
    };
    let Some(kernel) = kernel else {
        return not_probed("no guest kernel");
    };
    match probe_kvm(qemu, &kernel.vmlinuz, timeout) {
        KvmProbe::Usable => KVM.ok("usable (a guest kernel booted under -accel kvm)"),
        KvmProbe::Unusable(reason) => KVM.warn(format!("unusable ({reason}) → TCG fallback"), None),
        KvmProbe::Absent => KVM.warn("/dev/kvm absent → TCG", None),
    }
}
