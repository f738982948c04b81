//! End-to-end runs of the doctor against simulated hosts: a PATH of fake tools, a temp cache and an
//! empty host root. Needs no root and installs nothing (as root the netns probe really runs, using
//! the fake `ip`, which creates nothing).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is its failure report

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use ultracloud_doctor::{Doctor, Report, Status};

/// Everything UltraCloud needs, faked.
const ALL_TOOLS: &[&str] = &["ip", "nft", "iptables", "qemu-system-x86_64", "qemu-img", "dnsmasq", "depmod", "aws"];

/// A little-endian ELF64 header with one PT_LOAD program header and no PT_INTERP: "static".
fn static_elf() -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[6] = 1;
    b[32..40].copy_from_slice(&64u64.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&1u16.to_le_bytes());
    let mut ph = vec![0u8; 56];
    ph[..4].copy_from_slice(&1u32.to_le_bytes());
    b.extend(ph);
    b
}

struct Host {
    bin: TempDir,
    cache: TempDir,
    root: TempDir,
}

impl Host {
    /// A host with `tools` (symlinks to /bin/true), a static busybox, and a fetched guest kernel.
    fn new(tools: &[&str]) -> Self {
        let host = Self {
            bin: tempfile::tempdir().unwrap(),
            cache: tempfile::tempdir().unwrap(),
            root: tempfile::tempdir().unwrap(),
        };
        for tool in tools {
            symlink("/bin/true", host.bin.path().join(tool)).unwrap();
        }
        host.put_busybox(&static_elf());
        let kernel = host.cache.path().join("guest-kernel");
        std::fs::create_dir_all(kernel.join("boot")).unwrap();
        std::fs::write(kernel.join("boot/vmlinuz-6.1.0-26-amd64"), b"k").unwrap();
        std::fs::create_dir_all(kernel.join("lib/modules/6.1.0-26-amd64/kernel/drivers/virtio")).unwrap();
        std::fs::write(kernel.join("READY"), "6.1.0-26-amd64\n").unwrap();
        host
    }

    fn put_busybox(&self, bytes: &[u8]) {
        let path = self.bin.path().join("busybox");
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn remove(&self, tool: &str) {
        std::fs::remove_file(self.bin.path().join(tool)).unwrap();
    }

    fn run(&self) -> Report {
        Doctor::with_path(self.bin.path().as_os_str().to_owned())
            .with_cache_dir(self.cache.path())
            .with_host_root(self.root.path())
            .with_kvm_timeout(Duration::from_secs(2))
            .run()
    }
}

fn status(report: &Report, id: &str) -> Status {
    report.check(id).unwrap_or_else(|| panic!("no check {id}")).status
}

/// The table line of the check named `name`.
fn table_line<'a>(table: &'a str, name: &str) -> &'a str {
    table.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no row {name} in\n{table}"))
}

#[test]
fn all_tools_present() {
    let host = Host::new(ALL_TOOLS);
    let report = host.run();
    for id in [
        "iproute2",
        "firewall",
        "qemu-system",
        "qemu-img",
        "dnsmasq",
        "busybox-static",
        "kmod",
        "s3-client",
        "guest-kernel",
    ] {
        assert_eq!(status(&report, id), Status::Ok, "{id}: {:?}", report.check(id));
    }
    assert!(report.missing_packages().is_empty());
    assert!(!report.needs_guest_kernel());
    let kernel = report.check("guest-kernel").unwrap();
    assert!(kernel.detail.starts_with("6.1.0-26-amd64 ("), "{}", kernel.detail);
    // Only privileges can stand between this simulated host and readiness.
    assert_eq!(report.ready(), status(&report, "privileges") == Status::Ok);
    // KVM is advisory whatever the probe says (the fake qemu prints no banner).
    let kvm = report.check("kvm").unwrap();
    assert!(!kvm.required && kvm.status != Status::Missing);
    if Path::new("/dev/kvm").exists() {
        assert!(kvm.detail.contains("→ TCG"), "{}", kvm.detail);
    }
}

#[test]
fn missing_qemu_is_not_ready_and_says_how_to_fix() {
    let host = Host::new(ALL_TOOLS);
    host.remove("qemu-system-x86_64");
    let report = host.run();
    assert!(!report.ready());
    assert_eq!(status(&report, "qemu-system"), Status::Missing);
    assert!(report.missing_packages().contains(&"qemu-system-x86".to_string()));
    let table = report.render_table();
    let line = table_line(&table, "qemu-system-x86_64");
    assert!(line.contains(" MISSING "), "{line}");
    assert!(line.ends_with("apt-get install -y qemu-system-x86"), "{line}");
    assert!(table.contains("NOT READY"));
    assert!(table.contains("apt-get install -y --no-install-recommends qemu-system-x86\n"));
    assert!(table.contains("ultracloud doctor --install"));
    if Path::new("/dev/kvm").exists() {
        let kvm = report.check("kvm").unwrap();
        assert!(kvm.detail.contains("not probed (no qemu-system-x86_64)"), "{}", kvm.detail);
    }
}

#[test]
fn iptables_alone_is_a_warning() {
    let host = Host::new(ALL_TOOLS);
    host.remove("nft");
    let report = host.run();
    let row = report.check("firewall").unwrap();
    assert_eq!(row.status, Status::Warn);
    assert!(row.detail.starts_with("only iptables"));
    assert_eq!(report.missing_packages(), vec!["nftables"]);
    host.remove("iptables");
    let report = host.run();
    assert_eq!(status(&report, "firewall"), Status::Missing);
    assert!(!report.ready());
}

#[test]
fn dynamic_busybox_is_not_enough() {
    let host = Host::new(ALL_TOOLS);
    host.remove("busybox");
    symlink("/bin/sh", host.bin.path().join("busybox")).unwrap();
    let report = host.run();
    let row = report.check("busybox-static").unwrap();
    assert_eq!(row.status, Status::Missing, "{row:?}");
    assert!(row.detail.contains("dynamically linked"), "{}", row.detail);
    assert_eq!(row.fix.as_deref(), Some("apt-get install -y busybox-static"));
}

#[test]
fn bare_host_lists_every_package_and_the_kernel() {
    let host = Host::new(&[]);
    host.remove("busybox");
    std::fs::remove_dir_all(host.cache.path().join("guest-kernel")).unwrap();
    let report = host.run();
    assert!(!report.ready());
    assert_eq!(
        report.missing_packages(),
        vec![
            "iproute2",
            "nftables",
            "qemu-system-x86",
            "qemu-utils",
            "dnsmasq-base",
            "busybox-static",
            "kmod",
            "awscli"
        ]
    );
    assert!(report.needs_guest_kernel());
    assert!(!report.missing_packages().iter().any(|p| p.starts_with("linux-image")));
    assert_eq!(status(&report, "kmod"), Status::Warn, "advisory rows only warn");
    assert_eq!(status(&report, "s3-client"), Status::Warn, "the quickstart's S3 client is advisory too");
    assert_eq!(status(&report, "kernel-net"), Status::Warn, "not probed without ip");
    let table = report.render_table();
    assert!(table_line(&table, "dnsmasq").ends_with("apt-get install -y dnsmasq-base"));
    assert!(table_line(&table, "guest kernel").contains(" MISSING "));
    assert!(table.starts_with("CHECK "));

    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["ready"], false);
    assert_eq!(json["needs_guest_kernel"], true);
    assert_eq!(json["missing_packages"][4], "dnsmasq-base");
    assert_eq!(
        json["apt_command"],
        "apt-get install -y --no-install-recommends iproute2 nftables qemu-system-x86 qemu-utils dnsmasq-base busybox-static kmod awscli"
    );
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 12);
    for row in checks {
        let keys: Vec<&str> = row.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["detail", "fix", "id", "name", "packages", "required", "status"], "{row}");
        assert!(["ok", "missing", "warn"].contains(&row["status"].as_str().unwrap()));
    }
}

/// The real host: must finish promptly and, as root, leave no probe namespace behind.
#[test]
fn real_host_runs_promptly() {
    let start = Instant::now();
    let report = Doctor::from_env().run();
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_eq!(report.checks().len(), 12);
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let own = format!("ucdoctor-{}-", std::process::id());
    assert!(!listed.contains(&own), "probe netns left behind: {listed}");
    println!("{}", report.render_table());
}
