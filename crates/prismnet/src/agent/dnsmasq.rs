//! One dnsmasq per subnet and host, inside a namespace of its own (so tenants' overlapping
//! CIDRs never meet in one routing table), serving static leases only. It runs detached with a
//! pid file, so an agent restart leaves it serving; lease changes are a file rewrite and a
//! SIGHUP.

use std::path::{Path, PathBuf};

use super::host::{CommandError, HostNs};
use crate::plan::{DhcpPlan, SubnetPlan};

/// The namespace of a subnet's DHCP server on `host`.
pub fn namespace(host: &str, vni: u32) -> String {
    format!("pndhcp-{host}-{vni:x}")
}

/// The files of one server.
#[derive(Debug, Clone)]
pub struct Files {
    dir: PathBuf,
}

impl Files {
    /// Files under `state/dhcp/<vni>/`.
    pub fn new(state: &Path, vni: u32) -> Self {
        Self { dir: state.join("dhcp").join(format!("{vni:x}")) }
    }

    fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    fn opts(&self) -> PathBuf {
        self.dir.join("opts")
    }

    fn pid(&self) -> PathBuf {
        self.dir.join("pid")
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The running dnsmasq's PID, if it runs.
    pub fn running(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid()).ok()?.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline).contains("dnsmasq").then_some(pid)
    }
}

fn hosts_file(d: &DhcpPlan) -> String {
    d.leases.iter().map(|(mac, ip)| format!("{mac},{ip}\n")).collect()
}

fn opts_file(s: &SubnetPlan) -> String {
    let mut out = format!("option:mtu,{}\n", s.mtu);
    match s.gateway {
        Some(g) => out.push_str(&format!("option:router,{g}\n")),
        None => out.push_str("option:router\n"),
    }
    if !s.dns_servers.is_empty() {
        let list: Vec<String> = s.dns_servers.iter().map(ToString::to_string).collect();
        out.push_str(&format!("option:dns-server,{}\n", list.join(",")));
    }
    out
}

/// Writes `content` to `path` when it differs; true when it changed.
fn write_if_changed(path: &Path, content: &str) -> std::io::Result<bool> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(content) {
        return Ok(false);
    }
    std::fs::write(path, content)?;
    Ok(true)
}

/// Lease-file lines (`expiry mac ip name client-id`) that no longer match a host entry: the
/// port was deleted, or its address went to another port. dnsmasq never offers an address
/// leased to another MAC, so such a lease would keep a new VM from its address for hours.
fn stale_leases(leases: &str, d: &DhcpPlan) -> Vec<String> {
    leases
        .lines()
        .filter(|l| {
            let mut f = l.split_whitespace().skip(1);
            let (Some(mac), Some(ip)) = (f.next(), f.next()) else { return false };
            !d.leases.iter().any(|(m, i)| m.eq_ignore_ascii_case(mac) && i.to_string() == ip)
        })
        .map(str::to_owned)
        .collect()
}

/// Stops dnsmasq and drops stale leases from its lease file (it reads the file only at start),
/// when there are any. True when it was stopped (the caller starts it again).
fn drop_stale_leases(f: &Files, d: &DhcpPlan) -> bool {
    let leases_path = f.dir().join("leases");
    let Ok(leases) = std::fs::read_to_string(&leases_path) else { return false };
    let stale = stale_leases(&leases, d);
    if stale.is_empty() {
        return false;
    }
    if let Some(pid) = f.running() {
        ultracloud_runtime::process::stop(&[pid], std::time::Duration::from_secs(1));
    }
    let kept: String = leases.lines().filter(|l| !stale.iter().any(|s| s == l)).map(|l| format!("{l}\n")).collect();
    let _ = std::fs::write(&leases_path, kept);
    true
}

/// Makes the subnet's dnsmasq serve `d`: files written, process started or told to reload.
pub async fn ensure(state: &Path, host: &str, s: &SubnetPlan, d: &DhcpPlan) -> Result<(), CommandError> {
    let io = |e: std::io::Error| CommandError { command: "writing dnsmasq files".into(), detail: e.to_string() };
    let f = Files::new(state, s.vni);
    std::fs::create_dir_all(f.dir()).map_err(io)?;
    let changed = write_if_changed(&f.hosts(), &hosts_file(d)).map_err(io)?
        | write_if_changed(&f.opts(), &opts_file(s)).map_err(io)?;
    if changed {
        drop_stale_leases(&f, d);
    }
    if let Some(pid) = f.running() {
        if changed {
            // SIGHUP re-reads --dhcp-hostsfile and --dhcp-optsfile.
            if let Err(e) = ultracloud_runtime::process::hangup(pid) {
                tracing::warn!(pid, error = %e, "cannot tell dnsmasq to re-read its files");
            }
        }
        return Ok(());
    }
    let ns = namespace(host, s.vni);
    let range = format!("--dhcp-range={},static,{},12h", s.cidr.network(), s.cidr.netmask());
    let args = [
        "--conf-file=/dev/null".to_owned(),
        "--port=0".to_owned(),
        "--interface=dhcp0".to_owned(),
        "--bind-interfaces".to_owned(),
        "--dhcp-authoritative".to_owned(),
        "--user=root".to_owned(),
        range,
        format!("--dhcp-hostsfile={}", f.hosts().display()),
        format!("--dhcp-optsfile={}", f.opts().display()),
        format!("--dhcp-leasefile={}", f.dir().join("leases").display()),
        format!("--pid-file={}", f.pid().display()),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    HostNs { netns: Some(ns) }.run("dnsmasq", &refs).await.map(|_| ())
}

/// The identity of the DHCP server a plan asks for on a VNI: its address, MAC and subnet. A
/// subnet deleted and another made with the same VNI between two reconcile passes needs a new
/// server (the old one's address and MAC would be dropped by the new port's anti-spoofing).
pub fn identity(s: &SubnetPlan, d: &DhcpPlan) -> String {
    format!("{} {} {}", d.ip, d.mac, s.cidr)
}

/// The identity the running server was made for (`None`: no server, or made before this
/// was recorded).
pub fn recorded_identity(state: &Path, vni: u32) -> Option<String> {
    std::fs::read_to_string(Files::new(state, vni).dir().join("server")).ok()
}

/// Records the identity of the server just made.
pub fn record_identity(state: &Path, vni: u32, identity: &str) -> std::io::Result<()> {
    let f = Files::new(state, vni);
    std::fs::create_dir_all(f.dir())?;
    std::fs::write(f.dir().join("server"), identity)
}

/// Every dnsmasq serving from files under `dir`, found by its command line whatever its pid
/// file says (one whose pid file was lost would otherwise outlive its namespace).
pub fn servers_under(dir: &Path) -> Vec<i32> {
    ultracloud_runtime::process::find_with_path_arg("dnsmasq", "--pid-file", dir)
}

/// Stops a subnet's dnsmasq (waiting for it to exit) and removes its files.
pub fn stop(state: &Path, vni: u32) {
    let f = Files::new(state, vni);
    let mut pids = servers_under(f.dir());
    pids.extend(f.running().filter(|p| !pids.contains(p)));
    ultracloud_runtime::process::stop(&pids, std::time::Duration::from_secs(2));
    let _ = std::fs::remove_dir_all(f.dir());
}

/// Retires a subnet's DHCP server on this host: its dnsmasq stopped (found by its files), then
/// every process still in its namespace killed — a server whose pid file was lost, or one a
/// racing start left behind when the VNI was reused within a second, would otherwise keep
/// running in a namespace nothing tracks — and the namespace deleted (its veth with it).
pub async fn retire(state: &Path, host: &str, vni: u32) -> Result<(), CommandError> {
    stop(state, vni);
    let ns = namespace(host, vni);
    if !HostNs::namespaces().await?.contains(&ns) {
        return Ok(());
    }
    // The namespace is the agent's own (`pndhcp-…`): whatever runs in it, the agent started.
    let pids = HostNs::pids_in(&ns).await?;
    if !pids.is_empty() {
        tracing::warn!(namespace = %ns, ?pids, "processes left in a retired DHCP namespace; stopping them");
        ultracloud_runtime::process::stop(&pids, std::time::Duration::from_secs(2));
    }
    HostNs::delete_namespace(&ns).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_of_gone_or_moved_ports_are_stale() {
        let d = DhcpPlan {
            ip: "10.0.0.2".parse().unwrap(),
            mac: "52:54:00:00:00:02".into(),
            leases: vec![("52:54:00:00:00:09".into(), "10.0.0.9".parse().unwrap())],
        };
        let file =
            "1 52:54:00:00:00:09 10.0.0.9 * *\n1 52:54:00:00:00:07 10.0.0.9 * *\n1 52:54:00:00:00:08 10.0.0.8 * *\n";
        assert_eq!(
            stale_leases(file, &d),
            vec!["1 52:54:00:00:00:07 10.0.0.9 * *", "1 52:54:00:00:00:08 10.0.0.8 * *"]
        );
    }

    #[test]
    fn files_hold_leases_and_options() {
        let d = DhcpPlan {
            ip: "10.0.0.2".parse().unwrap(),
            mac: "52:54:00:00:00:02".into(),
            leases: vec![("52:54:00:00:00:09".into(), "10.0.0.9".parse().unwrap())],
        };
        assert_eq!(hosts_file(&d), "52:54:00:00:00:09,10.0.0.9\n");
        let s = SubnetPlan {
            id: "s".into(),
            vni: 1000,
            cidr: "10.0.0.0/24".parse().unwrap(),
            gateway: Some("10.0.0.1".parse().unwrap()),
            dns_servers: vec!["10.0.0.53".parse().unwrap()],
            mtu: 1450,
            peers: vec![],
            dhcp: Some(d),
            ports: vec![],
        };
        let o = opts_file(&s);
        assert!(
            o.contains("option:router,10.0.0.1")
                && o.contains("option:mtu,1450")
                && o.contains("option:dns-server,10.0.0.53")
        );
        assert_eq!(namespace("node04", 1000), "pndhcp-node04-3e8");
    }
}
