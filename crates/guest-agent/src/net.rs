//! The guest's network: interface listing for `GET /addrs`, bringing links up, and DHCP through
//! busybox `udhcpc` with the event script the guest image ships.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::init::{Children, command};

/// The interface DHCP runs on.
pub const DHCP_INTERFACE: &str = "eth0";
/// The `udhcpc` event script installed by the guest image.
pub const UDHCPC_SCRIPT: &str = "/etc/udhcpc/default.script";
/// Where `udhcpc`'s own messages go (they would clutter the console).
pub const UDHCPC_LOG: &str = "/run/ultracloud-guest/udhcpc.log";
/// Written by the `udhcpc` script once the interface is configured (address and default route):
/// `interface=…`, `ip=…`, `mask=…`, `router=…` lines. Removed when the lease is lost.
pub const LEASE_FILE: &str = "/run/ultracloud-guest/lease";

/// One network interface as `GET /addrs` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    /// Kernel name, e.g. `eth0`.
    pub name: String,
    /// MAC address, e.g. `52:54:00:12:34:56` (absent for interfaces without one).
    pub mac: Option<String>,
    /// IPv4 addresses in CIDR notation, e.g. `10.0.2.15/24`.
    pub ipv4: Vec<String>,
}

/// The hostname.
pub fn hostname() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The MAC address of `ifname` from sysfs.
pub fn mac_of(ifname: &str) -> Option<String> {
    let mac = std::fs::read_to_string(Path::new("/sys/class/net").join(ifname).join("address")).ok()?;
    let mac = mac.trim();
    (!mac.is_empty()).then(|| mac.to_string())
}

/// `(interface, address, prefix length)` of every IPv4 address.
fn ipv4_addresses() -> Vec<(String, Ipv4Addr, u32)> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| {
            let ip = a.address.as_ref()?.as_sockaddr_in()?.ip();
            let prefix = a
                .netmask
                .as_ref()
                .and_then(|m| m.as_sockaddr_in())
                .map(|m| u32::from(m.ip()).count_ones())
                .unwrap_or(32);
            Some((a.interface_name, ip, prefix))
        })
        .collect()
}

/// Every interface in `/sys/class/net`, sorted by name, with its MAC and IPv4 addresses.
pub fn interfaces() -> Vec<Interface> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    let addrs = ipv4_addresses();
    for (name, _, _) in &addrs {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names.sort();
    names
        .into_iter()
        .map(|name| Interface {
            mac: mac_of(&name).filter(|m| m != "00:00:00:00:00:00"),
            ipv4: addrs.iter().filter(|(n, _, _)| *n == name).map(|(_, ip, p)| format!("{ip}/{p}")).collect(),
            name,
        })
        .collect()
}

/// Sets `ifname` up with `ip link`.
pub fn link_up(children: &Children, ifname: &str) -> Result<(), String> {
    let status = children
        .run(command("ip").args(["link", "set", "dev", ifname, "up"]).stdin(Stdio::null()))
        .map_err(|e| format!("starting ip: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("`ip link set dev {ifname} up` failed: {status}")) }
}

/// Starts `udhcpc` in the foreground (as our child, so it keeps renewing the lease); returns its pid.
pub fn start_dhcp(children: &Children, ifname: &str, hostname: Option<&str>) -> Result<u32, String> {
    let log = Path::new(UDHCPC_LOG);
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("opening {UDHCPC_LOG}: {e}"))?;
    let err = out.try_clone().map_err(|e| format!("opening {UDHCPC_LOG}: {e}"))?;
    let mut cmd: Command = command("udhcpc");
    // Five discovers two seconds apart, then a five second pause, until a lease arrives.
    cmd.args(["-f", "-i", ifname, "-s", UDHCPC_SCRIPT, "-t", "5", "-T", "2", "-A", "5"]);
    if let Some(name) = hostname {
        cmd.arg("-x").arg(format!("hostname:{name}"));
    }
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    children.spawn_watched(&mut cmd).map_err(|e| format!("starting udhcpc: {e}"))
}

/// The address in a lease file's content, if the lease is for `ifname`.
pub fn parse_lease(content: &str, ifname: &str) -> Option<Ipv4Addr> {
    let value = |key: &str| content.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='));
    if value("interface")? != ifname {
        return None;
    }
    value("ip")?.trim().parse().ok()
}

/// Waits until the `udhcpc` script reports a lease on `ifname`, `udhcpc` (`pid`) exits, or
/// `timeout` passes.
pub fn wait_for_lease(children: &Children, ifname: &str, pid: u32, timeout: Duration) -> Result<Ipv4Addr, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let lease = std::fs::read_to_string(LEASE_FILE).ok();
        if let Some(ip) = lease.and_then(|l| parse_lease(&l, ifname)) {
            return Ok(ip);
        }
        if let Some(status) = children.exit_of(pid) {
            return Err(format!("udhcpc exited ({status}){}", last_log_line()));
        }
        if Instant::now() >= deadline {
            return Err(format!("no lease on {ifname} after {} s{}", timeout.as_secs(), last_log_line()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `"; udhcpc: <last line of its log>"`, or nothing.
fn last_log_line() -> String {
    std::fs::read_to_string(UDHCPC_LOG)
        .ok()
        .and_then(|log| log.lines().rev().find(|l| !l.trim().is_empty()).map(|l| format!("; {}", l.trim())))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_listed() {
        let lo = interfaces().into_iter().find(|i| i.name == "lo").unwrap();
        assert_eq!(lo.mac, None);
        assert!(lo.ipv4.contains(&"127.0.0.1/8".to_string()));
    }

    #[test]
    fn parses_the_lease_file() {
        let lease = "interface=eth0\nip=10.0.2.15\nmask=24\nrouter=10.0.2.2\n";
        assert_eq!(parse_lease(lease, "eth0"), Some(Ipv4Addr::new(10, 0, 2, 15)));
        assert_eq!(parse_lease(lease, "eth1"), None);
        assert_eq!(parse_lease("interface=eth0\nip=bogus\n", "eth0"), None);
        assert_eq!(parse_lease("", "eth0"), None);
    }
}
