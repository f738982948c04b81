//! The dataplane, for real, inside network namespaces this test creates: two "hosts" on an
//! underlay bridge, a prismnet agent for each, and "VMs" (namespaces plugged by veth ports)
//! that get their addresses from dnsmasq with busybox udhcpc. Proves: DHCP hands out the
//! assigned address; VMs on two hosts reach each other over VXLAN; security groups allow and
//! block exactly what their rules say; spoofed source addresses and MACs are dropped; two
//! tenants with the same CIDR stay apart; deleting a port removes its device; an agent
//! restart leaves devices (and traffic) alone.
//!
//! Needs root, `ip`, `nft`, `dnsmasq` and `busybox` (scripts/test.sh installs them); skipped
//! with a message otherwise, and failed under `CI=true`.

use crate::support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use reqwest::Method as M;
use serde_json::{Value, json};
use ultracloud_prismnet::agent::{self, AgentHost};
use ultracloud_prismnet::client::Prismnet;

fn sh(args: &[&str]) -> (bool, String) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn must(args: &[&str]) -> String {
    let (ok, out) = sh(args);
    assert!(ok, "{} failed: {out}", args.join(" "));
    out
}

fn missing_prerequisite() -> Option<String> {
    if !nix_is_root() {
        return Some("not root".into());
    }
    for tool in ["ip", "nft", "dnsmasq", "busybox"] {
        if !sh(&["sh", "-c", &format!("command -v {tool}")]).0 {
            return Some(format!("{tool} is not installed"));
        }
    }
    if !std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists() {
        return Some("br_netfilter is not loaded".into());
    }
    None
}

fn nix_is_root() -> bool {
    sh(&["id", "-u"]).1.trim() == "0"
}

/// Stops the test's agents on drop (before the namespaces go, so none is recreated).
struct Agents(std::sync::Mutex<Vec<tokio_util::sync::CancellationToken>>);

impl Drop for Agents {
    fn drop(&mut self) {
        for t in self.0.lock().unwrap().iter() {
            t.cancel();
        }
        // A reconcile pass in flight finishes before the agent sees the cancellation.
        std::thread::sleep(Duration::from_millis(1500));
    }
}

/// The namespaces of one test run; all removed on drop (with whatever runs inside).
struct Lab {
    tag: String,
}

impl Lab {
    fn ns(&self, name: &str) -> String {
        format!("pnt{}{name}", self.tag)
    }

    fn host(&self, name: &str) -> String {
        format!("h{}{name}", self.tag)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let (_, list) = sh(&["ip", "netns", "list"]);
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            let ours = ns.starts_with(&format!("pnt{}", self.tag)) || ns.starts_with(&format!("pndhcp-h{}", self.tag));
            if ours {
                let (_, pids) = sh(&["ip", "netns", "pids", ns]);
                for pid in pids.lines() {
                    let _ = sh(&["kill", "-9", pid.trim()]);
                }
                let _ = sh(&["ip", "netns", "del", ns]);
            }
        }
    }
}

async fn eventually(what: &str, bound: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(start.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn in_ns(ns: &str, args: &[&str]) -> (bool, String) {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    sh(&full)
}

/// Runs busybox udhcpc in `vm` and returns the address it configured.
fn dhcp(vm: &str, script: &str) -> String {
    let (ok, out) =
        in_ns(vm, &["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "8", "-T", "1", "-s", script]);
    assert!(ok, "udhcpc in {vm}: {out}");
    let (_, addr) = sh(&["ip", "-n", vm, "-4", "-o", "addr", "show", "eth0"]);
    addr
}

fn ping(vm: &str, ip: &str) -> bool {
    in_ns(vm, &["busybox", "ping", "-c", "1", "-W", "1", ip]).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_dhcp_vxlan_security_groups_spoofing_and_isolation() {
    if let Some(why) = missing_prerequisite() {
        ultracloud_runtime::prerequisite::missing(&why);
        return;
    }
    let tag = ultracloud_iam::credential::new_id()[..4].to_owned();
    let lab = Lab { tag };
    let s = support::Stack::start().await;
    let acme = s.tenant("acme", "web").await;
    let globex = s.tenant("globex", "app").await;

    // Underlay: two hosts on a bridge (inside namespaces only).
    let (u, ha, hb) = (lab.ns("u"), lab.ns("ha"), lab.ns("hb"));
    for ns in [&u, &ha, &hb] {
        must(&["ip", "netns", "add", ns]);
        must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    must(&["ip", "-n", &u, "link", "add", "br0", "type", "bridge"]);
    must(&["ip", "-n", &u, "link", "set", "br0", "up"]);
    for (ns, ip, port) in [(&ha, "192.168.77.1/24", "pa"), (&hb, "192.168.77.2/24", "pb")] {
        must(&["ip", "-n", &u, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns]);
        must(&["ip", "-n", &u, "link", "set", port, "master", "br0", "up"]);
        must(&["ip", "-n", ns, "addr", "add", ip, "dev", "eth0"]);
        must(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
    }
    // The "VMs".
    let vms: Vec<String> = ["va", "vb", "vc", "vd"].iter().map(|v| lab.ns(v)).collect();
    for vm in &vms {
        must(&["ip", "netns", "add", vm]);
        must(&["ip", "-n", vm, "link", "set", "lo", "up"]);
    }
    let script = s.dir.path().join("udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = bound ] && ip addr replace \"$ip/$mask\" dev \"$interface\"\nexit 0\n",
    )
    .unwrap();
    must(&["chmod", "+x", script.to_str().unwrap()]);
    let script = script.to_str().unwrap().to_owned();

    // Agents (declared after the lab: dropped, and so stopped, before it).
    let agents = Agents(std::sync::Mutex::new(Vec::new()));
    let keys = [("a", s.node_key(&lab.host("a")).await), ("b", s.node_key(&lab.host("b")).await)];
    let start_agent = |name: &str, ns: &str, ip: &str| {
        let host = AgentHost {
            name: lab.host(name),
            underlay_ip: ip.parse().unwrap(),
            underlay_dev: "eth0".into(),
            netns: Some(ns.to_owned()),
            state_dir: s.dir.path().join(name),
        };
        // The host's own node credential (its agent reads only that host's plan).
        let key = keys.iter().find(|(n, _)| *n == name).map(|(_, k)| k.clone()).unwrap();
        let tokens = ultracloud_iam::guard::TokenSource::new(vec![s.iam.clone()], key).unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let client = Prismnet::new(tokens.client(Prismnet::SERVICE, &[&s.ctl]).unwrap());
        tokio::spawn(agent::run(host.clone(), client, Arc::new(AtomicBool::new(false)), stop.clone()));
        agents.0.lock().unwrap().push(stop.clone());
        (host, stop)
    };
    let (host_a, stop_a) = start_agent("a", &ha, "192.168.77.1");
    let (_host_b, _stop_b) = start_agent("b", &hb, "192.168.77.2");

    // acme: one subnet, a VM on each host.
    let base = "/v1/tenants/acme/projects/web";
    let post = |path: String, token: String, body: Value| {
        let s = &s;
        async move {
            let (st, v) = s.call(M::POST, &path, &token, Some(body)).await;
            assert_eq!(st, 201, "{path}: {v}");
            v
        }
    };
    post(format!("{base}/vpcs"), acme.clone(), json!({"name": "net", "cidr": "10.0.0.0/16"})).await;
    post(format!("{base}/subnets"), acme.clone(), json!({"name": "s1", "vpc": "net", "cidr": "10.0.1.0/24"})).await;
    let bind = |host: &str, vm: &str| json!({"host": host, "plug": {"kind": "netns", "netns": vm}});
    // Addresses far from globex's below (whose DHCP servers take the lowest free ones), so
    // reaching "acme's address" from globex could only mean a leak.
    // Bindings are the platform's: the operator plugs these "VMs" in.
    let pa = post(
        format!("{base}/ports"),
        s.admin.clone(),
        json!({"subnet": "s1", "name": "a", "fixed_ips": ["10.0.1.100"], "binding": bind(&lab.host("a"), &vms[0])}),
    )
    .await;
    let pb = post(
        format!("{base}/ports"),
        s.admin.clone(),
        json!({"subnet": "s1", "name": "b", "fixed_ips": ["10.0.1.101"], "binding": bind(&lab.host("b"), &vms[1])}),
    )
    .await;
    let (ip_a, ip_b) =
        (pa["fixed_ips"][0].as_str().unwrap().to_owned(), pb["fixed_ips"][0].as_str().unwrap().to_owned());
    for vm in &vms[..2] {
        eventually("the port plugged into the VM", Duration::from_secs(30), || {
            sh(&["ip", "-n", vm, "link", "show", "eth0"]).0
        })
        .await;
    }

    // DHCP gives each VM its assigned address; they reach each other across VXLAN.
    let took = Instant::now();
    assert!(dhcp(&vms[0], &script).contains(&format!("{ip_a}/24")), "va got {ip_a}");
    assert!(dhcp(&vms[1], &script).contains(&format!("{ip_b}/24")), "vb got {ip_b}");
    println!("DHCP for two VMs took {:?}", took.elapsed());
    eventually("va reaches vb over VXLAN", Duration::from_secs(20), || ping(&vms[0], &ip_b)).await;
    assert!(ping(&vms[1], &ip_a), "and back");

    // Security groups: "open" lets anything in; spoofed sources are dropped anyway.
    let open = post(
        format!("{base}/security-groups"),
        acme.clone(),
        json!({"name": "open", "rules": [{"direction": "ingress", "protocol": "any", "remote_cidr": "0.0.0.0/0"}, {"direction": "egress", "protocol": "any"}]}),
    )
    .await;
    let patch = |port: &Value, groups: Vec<String>| {
        let (s, acme, id) = (&s, acme.clone(), port["id"].as_str().unwrap().to_owned());
        async move {
            let (st, v) =
                s.call(M::PATCH, &format!("{base}/ports/{id}"), &acme, Some(json!({"security_groups": groups}))).await;
            assert_eq!(st, 200, "{v}");
        }
    };
    patch(&pb, vec![open["id"].as_str().unwrap().to_owned()]).await;
    must(&["ip", "-n", &vms[0], "addr", "add", "10.0.1.200/24", "dev", "eth0"]);
    eventually("the open group applied", Duration::from_secs(20), || ping(&vms[0], &ip_b)).await;
    let spoofed = in_ns(&vms[0], &["busybox", "ping", "-c", "2", "-W", "1", "-I", "10.0.1.200", &ip_b]);
    assert!(!spoofed.0, "a spoofed source address is dropped: {}", spoofed.1);
    must(&["ip", "-n", &vms[0], "addr", "del", "10.0.1.200/24", "dev", "eth0"]);
    let real_mac = pa["mac"].as_str().unwrap();
    must(&["ip", "-n", &vms[0], "link", "set", "eth0", "address", "52:54:00:99:99:99"]);
    assert!(!ping(&vms[0], &ip_b), "a spoofed MAC is dropped");
    must(&["ip", "-n", &vms[0], "link", "set", "eth0", "address", real_mac]);
    eventually("the real MAC works again", Duration::from_secs(10), || ping(&vms[0], &ip_b)).await;

    // "web": only TCP 8080 in. ICMP and TCP 8081 are refused; 8080 answers.
    let web = post(
        format!("{base}/security-groups"),
        acme.clone(),
        json!({"name": "web", "rules": [{"direction": "ingress", "protocol": "tcp", "port_min": 8080}, {"direction": "egress", "protocol": "any"}]}),
    )
    .await;
    patch(&pb, vec![web["id"].as_str().unwrap().to_owned()]).await;
    let www = s.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from vb\n").unwrap();
    for port in ["8080", "8081"] {
        must(&["ip", "netns", "exec", &vms[1], "busybox", "httpd", "-p", port, "-h", www.to_str().unwrap()]);
    }
    eventually("the web group applied", Duration::from_secs(20), || !ping(&vms[0], &ip_b)).await;
    // (busybox wget crashes on some builds; nc speaks the HTTP request instead.)
    let fetch = |port: &str| {
        let cmd = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 {ip_b} {port}");
        in_ns(&vms[0], &["sh", "-c", &cmd])
    };
    let (ok, body) = fetch("8080");
    assert!(ok && body.contains("hello from vb"), "8080 is allowed: {body}");
    assert!(!fetch("8081").0, "8081 is not");

    // globex uses the same CIDR; its VMs reach each other and never acme's.
    let gbase = "/v1/tenants/globex/projects/app";
    post(format!("{gbase}/vpcs"), globex.clone(), json!({"name": "net", "cidr": "10.0.0.0/16"})).await;
    post(format!("{gbase}/subnets"), globex.clone(), json!({"name": "s1", "vpc": "net", "cidr": "10.0.1.0/24"})).await;
    let pc = post(
        format!("{gbase}/ports"),
        s.admin.clone(),
        json!({"subnet": "s1", "fixed_ips": ["10.0.1.50"], "binding": bind(&lab.host("a"), &vms[2])}),
    )
    .await;
    post(
        format!("{gbase}/ports"),
        s.admin.clone(),
        json!({"subnet": "s1", "fixed_ips": ["10.0.1.51"], "binding": bind(&lab.host("b"), &vms[3])}),
    )
    .await;
    for vm in &vms[2..] {
        eventually("globex's port plugged", Duration::from_secs(30), || {
            sh(&["ip", "-n", vm, "link", "show", "eth0"]).0
        })
        .await;
    }
    assert!(dhcp(&vms[2], &script).contains("10.0.1.50/24"));
    assert!(dhcp(&vms[3], &script).contains("10.0.1.51/24"));
    eventually("vc reaches vd", Duration::from_secs(20), || ping(&vms[2], "10.0.1.51")).await;
    assert!(!ping(&vms[2], &ip_a), "globex never reaches acme's VM on the same host");
    assert!(!ping(&vms[0], "10.0.1.51"), "nor acme globex's");

    // An agent restart leaves devices in place (same ifindex) and traffic flowing.
    let dev = ultracloud_prismnet::agent::nft::port_dev(pc["id"].as_str().unwrap());
    let index =
        |ns: &str| sh(&["ip", "-n", ns, "-o", "link", "show", &dev]).1.split(':').next().unwrap_or_default().to_owned();
    let before = index(&ha);
    stop_a.cancel();
    let (_host_a2, _stop_a2) = start_agent("a", &ha, "192.168.77.1");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(index(&ha), before, "the restarted agent did not recreate the port");
    assert!(ping(&vms[2], "10.0.1.51"), "traffic still flows");

    // Deleting a port removes its device from the host.
    let (st, _) = s.call(M::DELETE, &format!("{gbase}/ports/{}", pc["id"].as_str().unwrap()), &s.admin, None).await;
    assert_eq!(st, 204);
    eventually("the deleted port's device is gone", Duration::from_secs(20), || {
        !sh(&["ip", "-n", &ha, "link", "show", &dev]).0
    })
    .await;
    let _ = host_a;
}

/// A subnet removed and another made with its VNI within a second: retiring the old DHCP
/// server stops the dnsmasq the agent started and every other process in its namespace (a
/// server nothing tracks any more) before the namespace goes, and a new server starts at once.
#[tokio::test]
async fn a_reused_vni_retires_every_process_of_the_old_dhcp_namespace() {
    use ultracloud_prismnet::agent::dnsmasq;
    use ultracloud_prismnet::plan::{DhcpPlan, SubnetPlan};
    if let Some(why) = missing_prerequisite() {
        ultracloud_runtime::prerequisite::missing(&why);
        return;
    }
    let lab = Lab { tag: ultracloud_iam::credential::new_id()[..4].to_owned() };
    let state = tempfile::tempdir().unwrap();
    let host = lab.host("r");
    let vni = 0x4242;
    let ns = dnsmasq::namespace(&host, vni);
    let near = format!("pnr{}", lab.tag);
    let subnet = SubnetPlan {
        id: "s".into(),
        vni,
        cidr: "10.9.0.0/24".parse().unwrap(),
        gateway: None,
        dns_servers: vec![],
        mtu: 1450,
        peers: vec![],
        dhcp: None,
        ports: vec![],
    };
    let d = DhcpPlan { ip: "10.9.0.2".parse().unwrap(), mac: "52:54:00:09:00:02".into(), leases: vec![] };
    // The agent's namespace for the server: dhcp0 and dnsmasq on it.
    let make_server = || async {
        must(&["ip", "netns", "add", &ns]);
        // As the agent makes it: a veth whose far end is dhcp0 (deleting the namespace takes both).
        must(&["ip", "link", "add", &near, "type", "veth", "peer", "name", "dhcp0", "netns", &ns]);
        must(&["ip", "-n", &ns, "addr", "add", "10.9.0.2/24", "dev", "dhcp0"]);
        must(&["ip", "-n", &ns, "link", "set", "dhcp0", "up"]);
        dnsmasq::ensure(state.path(), &host, &subnet, &d).await.unwrap();
        eventually("dnsmasq running", Duration::from_secs(5), || {
            dnsmasq::Files::new(state.path(), vni).running().is_some()
        })
        .await;
        dnsmasq::Files::new(state.path(), vni).running().unwrap()
    };
    let server = make_server().await;
    // A second process in the namespace that no pid file names.
    let mut stray = Command::new("ip").args(["netns", "exec", &ns, "sleep", "300"]).spawn().unwrap();
    eventually("the stray in the namespace", Duration::from_secs(5), || {
        sh(&["ip", "netns", "pids", &ns]).1.lines().count() >= 2
    })
    .await;

    dnsmasq::retire(state.path(), &host, vni).await.unwrap();
    let (_, namespaces) = sh(&["ip", "netns", "list"]);
    assert!(!namespaces.lines().any(|l| l.split_whitespace().next() == Some(ns.as_str())), "{ns} is left");
    // Gone, or a zombie its (re)parent has not reaped yet.
    let gone = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
    };
    assert!(gone(server), "dnsmasq {server} outlived its namespace");
    let exited = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        stray.try_wait().unwrap().is_some()
    });
    assert!(exited, "the untracked process in the namespace was not stopped");

    // The new subnet's server starts in a fresh namespace right away.
    let again = make_server().await;
    assert_ne!(again, server);
    dnsmasq::retire(state.path(), &host, vni).await.unwrap();
    assert!(gone(again), "dnsmasq {again} outlived its namespace");
}
