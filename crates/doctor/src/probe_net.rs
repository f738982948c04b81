//! A real probe of the kernel networking UltraCloud builds tenant networks from.
//!
//! Module lists and config files lie (a feature may be built as a module that is not shipped, or
//! blocked in a container), so the doctor creates what the network agent will create — a bridge, a
//! veth pair, a VXLAN device and a tap — inside a throwaway network namespace, and reports which
//! ones the kernel refused. The namespace is deleted by a guard on every path out, and leftovers
//! from a doctor that was killed mid-probe are removed on the next run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::cmd::{display, run_bounded};

/// Prefix of the namespaces this probe creates; `<prefix><pid>-<n>`.
pub const NETNS_PREFIX: &str = "ucdoctor-";
/// Deadline for each `ip` invocation.
const IP_TIMEOUT: Duration = Duration::from_secs(5);

/// Distinguishes concurrent probes of one process (tests run them on several threads).
static PROBE_SEQ: AtomicU32 = AtomicU32::new(0);

/// One kernel feature the probe tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetFeature {
    /// Creating a network namespace (and bringing its `lo` up).
    Netns,
    /// A Linux bridge.
    Bridge,
    /// A veth pair.
    Veth,
    /// A VXLAN device.
    Vxlan,
    /// A tap device.
    Tap,
}

impl NetFeature {
    /// Every feature, in probe order.
    pub const ALL: [NetFeature; 5] =
        [NetFeature::Netns, NetFeature::Bridge, NetFeature::Veth, NetFeature::Vxlan, NetFeature::Tap];

    /// Short lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            NetFeature::Netns => "netns",
            NetFeature::Bridge => "bridge",
            NetFeature::Veth => "veth",
            NetFeature::Vxlan => "vxlan",
            NetFeature::Tap => "tap",
        }
    }

    /// The kernel module that provides the feature, for a `modprobe` hint.
    pub fn module(self) -> Option<&'static str> {
        match self {
            NetFeature::Netns => None,
            NetFeature::Bridge => Some("bridge"),
            NetFeature::Veth => Some("veth"),
            NetFeature::Vxlan => Some("vxlan"),
            NetFeature::Tap => Some("tun"),
        }
    }

    /// The `ip` arguments (after `-n <ns>`) that create the feature's device.
    fn ip_args(self) -> &'static [&'static str] {
        match self {
            NetFeature::Netns => &["link", "set", "lo", "up"],
            NetFeature::Bridge => &["link", "add", "br0", "type", "bridge"],
            NetFeature::Veth => &["link", "add", "veth0", "type", "veth", "peer", "name", "veth1"],
            NetFeature::Vxlan => &[
                "link",
                "add",
                "vx0",
                "type",
                "vxlan",
                "id",
                "42",
                "dstport",
                "4789",
                "local",
                "127.0.0.1",
                "nolearning",
            ],
            NetFeature::Tap => &["tuntap", "add", "dev", "tap0", "mode", "tap"],
        }
    }
}

/// The outcome for one feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeatureResult {
    /// Which feature.
    pub feature: NetFeature,
    /// `None` when it worked, else why not.
    pub error: Option<String>,
}

/// The outcome of [`probe_kernel_networking`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetProbe {
    /// The namespace the probe used (already deleted).
    pub netns: String,
    /// One result per feature, in [`NetFeature::ALL`] order.
    pub results: Vec<FeatureResult>,
}

impl NetProbe {
    /// The features that failed.
    pub fn failed(&self) -> Vec<NetFeature> {
        self.results.iter().filter(|r| r.error.is_some()).map(|r| r.feature).collect()
    }

    /// `bridge ok, vxlan FAILED (…)` style summary.
    pub fn summary(&self) -> String {
        self.results
            .iter()
            .map(|r| match &r.error {
                None => format!("{} ok", r.feature.name()),
                Some(e) => format!("{} FAILED ({e})", r.feature.name()),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Deletes the probe namespace when dropped, so no exit path leaves it behind.
struct NetnsGuard {
    ip: PathBuf,
    name: String,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        delete_netns(&self.ip, &self.name);
    }
}

fn delete_netns(ip: &Path, name: &str) {
    let mut cmd = Command::new(ip);
    cmd.args(["netns", "delete", name]);
    match run_bounded(&mut cmd, IP_TIMEOUT) {
        Ok(ran) if ran.success() => {}
        Ok(ran) => {
            tracing::warn!(netns = name, error = %ran.failure(), "deleting probe netns failed")
        }
        Err(error) => tracing::warn!(netns = name, %error, "deleting probe netns failed"),
    }
}

/// Runs `ip <args>`; `Err` carries a one-line reason.
fn ip(ip: &Path, args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new(ip);
    cmd.args(args);
    match run_bounded(&mut cmd, IP_TIMEOUT) {
        Ok(ran) if ran.success() => Ok(()),
        Ok(ran) => Err(ran.failure()),
        Err(e) => Err(format!("cannot run {}: {e}", display(&cmd))),
    }
}

/// Deletes `ucdoctor-<pid>-…` namespaces whose process is gone (a doctor killed mid-probe).
fn remove_stale(ip_path: &Path) {
    let mut cmd = Command::new(ip_path);
    cmd.args(["netns", "list"]);
    let Ok(ran) = run_bounded(&mut cmd, IP_TIMEOUT) else {
        return;
    };
    for line in ran.stdout.lines() {
        // Lines look like `ucdoctor-123-0 (id: 4)`.
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(NETNS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(netns = name, "removing probe netns left by a dead doctor");
            delete_netns(ip_path, name);
        }
    }
}

/// Creates a throwaway namespace with a bridge, veth pair, VXLAN device and tap using the `ip`
/// binary at `ip_path`, deletes it, and reports what worked. Needs root or
/// `CAP_NET_ADMIN`+`CAP_SYS_ADMIN`; without them every feature reports the kernel's refusal.
pub fn probe_kernel_networking(ip_path: &Path) -> NetProbe {
    remove_stale(ip_path);
    let seq = PROBE_SEQ.fetch_add(1, Ordering::Relaxed);
    let name = format!("{NETNS_PREFIX}{}-{seq}", std::process::id());
    let mut results = Vec::with_capacity(NetFeature::ALL.len());

    // The guard exists before the namespace does, so even a half-created one is deleted.
    let _guard = NetnsGuard { ip: ip_path.to_path_buf(), name: name.clone() };
    let created = ip(ip_path, &["netns", "add", &name]).and_then(|()| {
        let mut args = vec!["-n", name.as_str()];
        args.extend(NetFeature::Netns.ip_args());
        ip(ip_path, &args)
    });
    let netns_ok = created.is_ok();
    results.push(FeatureResult { feature: NetFeature::Netns, error: created.err() });
    for feature in &NetFeature::ALL[1..] {
        let error = if netns_ok {
            let mut args = vec!["-n", name.as_str()];
            args.extend(feature.ip_args());
            ip(ip_path, &args).err()
        } else {
            Some("not tried: no namespace".to_string())
        };
        results.push(FeatureResult { feature: *feature, error });
    }
    NetProbe { netns: name, results }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privileges::Privileges;
    use std::os::unix::fs::PermissionsExt;

    /// A fake `ip` that logs its arguments and refuses VXLAN.
    fn fake_ip(dir: &Path) -> (PathBuf, PathBuf) {
        let log = dir.join("ip.log");
        let ip = dir.join("ip");
        let script = format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\ncase \"$*\" in *vxlan*) echo 'Error: Unknown device type.' >&2; exit 2;; esac\nexit 0\n",
            log.display()
        );
        std::fs::write(&ip, script).unwrap();
        std::fs::set_permissions(&ip, std::fs::Permissions::from_mode(0o755)).unwrap();
        (ip, log)
    }

    #[test]
    fn reports_failed_feature_and_always_deletes_the_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let (ip, log) = fake_ip(dir.path());
        let probe = probe_kernel_networking(&ip);
        assert_eq!(probe.failed(), vec![NetFeature::Vxlan]);
        assert!(probe.summary().contains("vxlan FAILED (Error: Unknown device type."));
        assert!(probe.summary().contains("tap ok"));
        let log = std::fs::read_to_string(log).unwrap();
        let last = log.lines().last().unwrap();
        assert_eq!(last, format!("netns delete {}", probe.netns));
        assert!(log.contains(&format!("-n {} link add vx0 type vxlan id 42", probe.netns)));
    }

    #[test]
    fn missing_ip_binary_fails_everything() {
        let probe = probe_kernel_networking(Path::new("/nonexistent/ip"));
        assert_eq!(probe.failed().len(), NetFeature::ALL.len());
    }

    /// As root this touches the real kernel; it must leave no namespace behind.
    #[test]
    fn real_probe_cleans_up_when_privileged() {
        let privileged = Privileges::current().is_ok_and(|p| p.sufficient());
        let Some(ip) = crate::lookup::Finder::system().find("ip") else {
            return;
        };
        if !privileged {
            return;
        }
        let probe = probe_kernel_networking(&ip);
        let listed = Command::new(&ip).args(["netns", "list"]).output().unwrap();
        let listed = String::from_utf8_lossy(&listed.stdout);
        assert!(
            !listed.lines().any(|l| l.split_whitespace().next() == Some(&probe.netns)),
            "{} left behind",
            probe.netns
        );
        assert_eq!(probe.results.len(), NetFeature::ALL.len());
    }
}
