//! Real VMs: QEMU guests (TCG) booted from the project's guest image on two "workers" —
//! network namespaces this test creates on an underlay bridge, each with a prismnet agent and a
//! plasmavmc agent. Proves: the VM gets its DHCP address and its HTTP endpoint answers from
//! another namespace on the subnet; reboot, stop and start; the agent restarted while the VM
//! runs (the VM keeps running and is managed again); a killed QEMU is restarted by the restart
//! policy; cold migration between workers keeps IP, MAC and a file written to the disk; live
//! migration keeps the guest running (its in-memory counter) and its disk, with memory and disks
//! crossing under mutual TLS (each worker holds its own certificate); delete leaves no
//! process, tap, DHCP entry or file behind.
//!
//! Needs root, `ip`, `nft`, `dnsmasq`, `busybox`, `curl`, `qemu-system-x86_64`, `qemu-img`,
//! `mke2fs`, the guest kernel (`ultracloud doctor --install`) and the static guest agent
//! (`scripts/test.sh` builds it); skipped with a message otherwise
//! (failed under `CI=true`).

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use reqwest::Method as M;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use ultracloud_plasmavmc::agent::qemu::Accel;
use ultracloud_plasmavmc::agent::volumes::LocalQcow2;
use ultracloud_plasmavmc::agent::{self, Worker};
use ultracloud_prismnet::agent::AgentHost;
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

fn guest_agent() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    [root.join(ultracloud_guest_image::STATIC_AGENT_TARGET_PATH)].into_iter().find(|p| p.is_file())
}

fn missing_prerequisite() -> Option<String> {
    if sh(&["id", "-u"]).1.trim() != "0" {
        return Some("not root".into());
    }
    for tool in ["ip", "nft", "dnsmasq", "busybox", "curl", "qemu-system-x86_64", "qemu-img", "mke2fs"] {
        if !sh(&["sh", "-c", &format!("command -v {tool}")]).0 {
            return Some(format!("{tool} is not installed"));
        }
    }
    if !Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists() {
        return Some("br_netfilter is not loaded".into());
    }
    if ultracloud_doctor::guest_kernel(&ultracloud_doctor::default_cache_dir()).is_none() {
        return Some("no guest kernel (run `ultracloud doctor --install`)".into());
    }
    if guest_agent().is_none() {
        return Some(format!("the static guest agent is not built ({})", ultracloud_guest_image::STATIC_AGENT_BUILD));
    }
    None
}

/// The namespaces of one run, removed on drop with whatever runs inside (QEMU included).
struct Lab {
    tag: String,
}

impl Lab {
    fn ns(&self, name: &str) -> String {
        format!("pvt{}{name}", self.tag)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let (_, list) = sh(&["ip", "netns", "list"]);
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if ns.starts_with(&format!("pvt{}", self.tag)) || ns.starts_with(&format!("pndhcp-pvt{}", self.tag)) {
                let (_, pids) = sh(&["ip", "netns", "pids", ns]);
                for pid in pids.lines() {
                    let _ = sh(&["kill", "-9", pid.trim()]);
                }
                let _ = sh(&["ip", "netns", "del", ns]);
            }
        }
    }
}

/// Stops the test's agents on drop (before the namespaces go).
struct Agents(std::sync::Mutex<Vec<CancellationToken>>);

impl Drop for Agents {
    fn drop(&mut self) {
        for t in self.0.lock().unwrap().iter() {
            t.cancel();
        }
        std::thread::sleep(Duration::from_millis(1500));
    }
}

async fn eventually<T>(what: &str, bound: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            println!("{what}: {:.1} s", start.elapsed().as_secs_f64());
            return v;
        }
        assert!(start.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// An HTTP request from inside namespace `ns` (curl), returning the body.
fn curl(ns: &str, method: &str, url: &str, body: Option<&str>) -> Option<String> {
    let mut args = vec!["ip", "netns", "exec", ns, "curl", "-sf", "-m", "3", "-X", method, url];
    if let Some(b) = body {
        args.extend(["--data-binary", b]);
    }
    let (ok, out) = sh(&args);
    ok.then_some(out)
}

fn qemu_running(id: &str) -> bool {
    sh(&["pgrep", "-f", &format!("ultracloud-{id},")]).0
}

struct Workers<'a> {
    c: &'a support::Compute,
    /// Issues each worker's certificate (live migration runs under TLS).
    ca: ultracloud_tls::CertAuthority,
    lab: &'a Lab,
    agents: &'a Agents,
    data: PathBuf,
}

impl Workers<'_> {
    async fn prismnet_agent(&self, name: &str, ip: &str) -> AgentHost {
        let host = AgentHost {
            name: self.lab.ns(name),
            underlay_ip: ip.parse().unwrap(),
            underlay_dev: "eth0".into(),
            netns: Some(self.lab.ns(name)),
            state_dir: self.data.join(format!("prismnet-{name}")),
        };
        let key = self.c.s.node_key(&self.lab.ns(name)).await;
        let tokens = ultracloud_iam::guard::TokenSource::new(vec![self.c.s.iam.clone()], key).unwrap();
        let stop = CancellationToken::new();
        let client = Prismnet::new(tokens.client(Prismnet::SERVICE, &[&self.c.s.ctl]).unwrap());
        tokio::spawn(ultracloud_prismnet::agent::run(
            host.clone(),
            client,
            Arc::new(AtomicBool::new(false)),
            stop.clone(),
        ));
        self.agents.0.lock().unwrap().push(stop);
        host
    }

    /// Starts a plasmavmc agent for worker `name`; returns its stop token.
    async fn vm_agent(&self, name: &str, ip: &str) -> CancellationToken {
        let data_dir = self.data.join(format!("plasmavmc-{name}"));
        std::fs::create_dir_all(&data_dir).unwrap();
        // The worker's own node credential, for its controller calls and its disk server.
        let guard = ultracloud_iam::guard::Guard::connect(ultracloud_iam::guard::GuardConfig {
            endpoints: vec![self.c.s.iam.clone()],
            api_key: self.c.s.node_key(&self.lab.ns(name)).await,
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut req = ultracloud_tls::IssueRequest::new(name, ultracloud_tls::Role::Worker);
        req.ips = vec![ip.parse().unwrap()];
        let held = self.ca.issue(&req, &data_dir.join("tls")).unwrap();
        let tls = ultracloud_tls::ClusterTls::load(&held).unwrap();
        let migration_tls = agent::migration_tls::MigrationTls::write(&tls, &data_dir.join("qemu-tls")).unwrap();
        let worker = Arc::new(Worker {
            name: self.lab.ns(name),
            data_dir: data_dir.clone(),
            netns: Some(self.lab.ns(name)),
            qemu: "/usr/bin/qemu-system-x86_64".into(),
            qemu_img: "/usr/bin/qemu-img".into(),
            accel: Accel::Tcg,
            vcpus: 8,
            memory_mib: 2048,
            address: ip.parse().unwrap(),
            agent_url: format!("http://{}", listener.local_addr().unwrap()),
            volumes: LocalQcow2 { dir: data_dir.join("volumes"), qemu_img: "/usr/bin/qemu-img".into() },
            outgoing: Default::default(),
            images: ultracloud_plasmavmc::image_fetch::ImagePolicy {
                file_dirs: vec![self.c.s.dir.path().to_path_buf()],
                ..Default::default()
            },
            migration_tls: Some(migration_tls),
        });
        let stop = CancellationToken::new();
        let router = agent::transfer::router(worker.clone(), &guard);
        let s2 = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).with_graceful_shutdown(s2.cancelled_owned()).await;
        });
        let ctl = agent::Controller::new(&self.c.vmc, guard.tokens().clone()).unwrap();
        tokio::spawn(agent::run(worker, ctl, Arc::new(AtomicBool::new(false)), stop.clone()));
        self.agents.0.lock().unwrap().push(stop.clone());
        stop
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_boot_answer_restart_migrate_and_leave_nothing_behind() {
    if let Some(why) = missing_prerequisite() {
        ultracloud_runtime::prerequisite::missing(&why);
        return;
    }
    let lab = Lab { tag: ultracloud_iam::credential::new_id()[..4].to_owned() };
    let c = support::Compute::start().await;
    let acme = c.s.tenant("acme", "web").await;
    let data = c.s.dir.path().join("workers");

    // The guest image, built into this test's directory and imported.
    let image_dir = c.s.dir.path().join("guest-image");
    let mut opts = ultracloud_guest_image::BuildOptions::new(guest_agent().unwrap());
    opts.out_dir = image_dir.clone();
    opts.disk_size_mib = 64;
    let built = Instant::now();
    ultracloud_guest_image::build(&opts, |line| println!("build-guest: {line}")).unwrap();
    println!("guest image built in {:.1} s", built.elapsed().as_secs_f64());
    let m = ultracloud_guest_image::read_manifest(&image_dir).unwrap();
    let url = |f: &str| format!("file://{}", image_dir.join(f).display());
    let base = "/v1/tenants/acme/projects/web";
    let body = json!({
        "name": "guest", "url": url(&m.files.disk.file), "sha256": m.files.disk.sha256,
        "kernel_url": url(&m.files.kernel.file), "initrd_url": url(&m.files.initrd.file), "cmdline": m.cmdline,
    });
    let (st, v) = c.vmc(M::POST, &format!("{base}/images"), &acme, Some(body)).await;
    assert_eq!(st, 201, "{v}");

    // Underlay: two workers on a bridge; a probe namespace stands in for another tenant VM.
    let (u, w1, w2, probe) = (lab.ns("u"), lab.ns("w1"), lab.ns("w2"), lab.ns("p"));
    for ns in [&u, &w1, &w2, &probe] {
        must(&["ip", "netns", "add", ns]);
        must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    must(&["ip", "-n", &u, "link", "add", "br0", "type", "bridge"]);
    must(&["ip", "-n", &u, "link", "set", "br0", "up"]);
    for (ns, ip, port) in [(&w1, "192.168.78.1/24", "p1"), (&w2, "192.168.78.2/24", "p2")] {
        must(&["ip", "-n", &u, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns]);
        must(&["ip", "-n", &u, "link", "set", port, "master", "br0", "up"]);
        must(&["ip", "-n", ns, "addr", "add", ip, "dev", "eth0"]);
        must(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
    }
    let agents = Agents(std::sync::Mutex::new(Vec::new()));
    let ca = ultracloud_tls::CertAuthority::create("vms test CA").unwrap();
    let workers = Workers { c: &c, ca, lab: &lab, agents: &agents, data: data.clone() };
    let pn1 = workers.prismnet_agent("w1", "192.168.78.1").await;
    workers.prismnet_agent("w2", "192.168.78.2").await;
    let mut stop_w1 = workers.vm_agent("w1", "192.168.78.1").await;
    workers.vm_agent("w2", "192.168.78.2").await;

    // A tenant network; the probe on it, on worker 1.
    let call = |m: M, path: String, body: Option<Value>| {
        let (c, acme) = (&c, acme.clone());
        async move { c.vmc(m, &path, &acme, body).await }
    };
    let (st, v) =
        c.s.call(M::POST, &format!("{base}/vpcs"), &acme, Some(json!({"name": "n", "cidr": "10.9.0.0/16"}))).await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = c
        .s
        .call(M::POST, &format!("{base}/subnets"), &acme, Some(json!({"name": "s", "vpc": "n", "cidr": "10.9.1.0/24"})))
        .await;
    assert_eq!(st, 201, "{v}");
    let probe_port = json!({"subnet": "s", "name": "probe", "binding": {"host": pn1.name, "plug": {"kind": "netns", "netns": probe}}});
    // A binding is the platform's: the operator plugs the probe in.
    let (st, v) = c.s.call(M::POST, &format!("{base}/ports"), &c.s.admin, Some(probe_port)).await;
    assert_eq!(st, 201, "{v}");
    let probe_ip = v["fixed_ips"][0].as_str().unwrap().to_owned();
    eventually("the probe plugged", Duration::from_secs(30), async || {
        sh(&["ip", "-n", &probe, "link", "show", "eth0"]).0.then_some(())
    })
    .await;
    must(&["ip", "-n", &probe, "addr", "add", &format!("{probe_ip}/24"), "dev", "eth0"]);

    // Create: placed on worker 1, boots, gets its address by DHCP, answers over the subnet.
    let created = Instant::now();
    let ud = base64_encode(br#"{"hostname": "web-1"}"#);
    // With a volume, which every migration carries along.
    let (st, v) = call(M::POST, format!("{base}/volumes"), Some(json!({"name": "data", "size_gib": 1}))).await;
    assert_eq!(st, 201, "{v}");
    let vol_file = |w: &str| data.join(format!("plasmavmc-{w}/volumes/{}.qcow2", v["id"].as_str().unwrap()));
    let (st, vm) = call(M::POST, format!("{base}/vms"), Some(json!({"name": "web-1", "image": "guest", "memory_mib": 192, "nics": [{"subnet": "s"}], "volumes": ["data"], "user_data": ud, "host": w1, "stop_timeout_s": 20}))).await;
    assert_eq!(st, 201, "{vm}");
    let id = vm["id"].as_str().unwrap().to_owned();
    let (ip, mac) =
        (vm["addresses"][0].as_str().unwrap().to_owned(), vm["nics"][0]["mac"].as_str().unwrap().to_owned());
    let show = async || call(M::GET, format!("{base}/vms/web-1"), None).await.1;
    let ready = async |what: &str| {
        eventually(what, Duration::from_secs(240), async || {
            let v = show().await;
            (v["state"] == "running" && v["status"]["guest_ready"] == true).then_some(v)
        })
        .await
    };
    ready("created → guest ready").await;
    let answers = async |what: &str| {
        eventually(what, Duration::from_secs(60), async || curl(&probe, "GET", &format!("http://{ip}/health"), None))
            .await
    };
    answers("guest HTTP answers").await;
    println!("create → guest answers: {:.1} s", created.elapsed().as_secs_f64());
    let addrs = curl(&probe, "GET", &format!("http://{ip}/addrs"), None).unwrap();
    assert!(addrs.contains(&ip) && addrs.to_lowercase().contains(&mac), "the guest has its port's IP and MAC: {addrs}");
    assert!(addrs.contains("web-1"), "user data reached the guest: {addrs}");
    for n in 1..=2 {
        let v: Value =
            serde_json::from_str(&curl(&probe, "POST", &format!("http://{ip}/visit"), None).unwrap()).unwrap();
        assert_eq!(v["visits"], n);
    }
    let (_, console) = call(M::GET, format!("{base}/vms/web-1/console"), None).await;
    assert!(console.as_str().unwrap_or_default().contains("ULTRACLOUD-GUEST-READY"), "console: {console}");

    // The agent restarted while the VM runs: same QEMU, managed again.
    let pid = show().await["status"]["pid"].as_u64().unwrap();
    stop_w1.cancel();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(qemu_running(&id), "the VM outlives its agent");
    stop_w1 = workers.vm_agent("w1", "192.168.78.1").await;
    let (st, _) = call(M::POST, format!("{base}/vms/web-1/reboot"), None).await;
    assert_eq!(st, 200);
    eventually("the restarted agent carries out a reboot", Duration::from_secs(60), async || {
        (show().await["status"]["reboot_seq"] == 1).then_some(())
    })
    .await;
    assert_eq!(show().await["status"]["pid"].as_u64(), Some(pid), "rebooted in place, not restarted");
    answers("answers after the reboot").await;
    let v: Value = serde_json::from_str(&curl(&probe, "GET", &format!("http://{ip}/state"), None).unwrap()).unwrap();
    assert_eq!(v["visits"], 0, "a reboot clears the guest's memory");

    // A killed QEMU is a crash: the restart policy (on-failure) starts it again.
    must(&["kill", "-9", &pid.to_string()]);
    eventually("restarted after a crash", Duration::from_secs(240), async || {
        let v = show().await;
        (v["status"]["restarts"] == 1 && v["status"]["guest_ready"] == true).then_some(())
    })
    .await;
    answers("answers after the crash restart").await;

    // Stop (graceful) and start.
    let (st, _) = call(M::POST, format!("{base}/vms/web-1/stop"), None).await;
    assert_eq!(st, 200);
    let stopped = eventually("stopped", Duration::from_secs(60), async || {
        let v = show().await;
        (v["state"] == "stopped").then_some(v)
    })
    .await;
    println!("stop: {}", stopped["status"]["message"]);
    assert!(!qemu_running(&id));
    let (st, _) = call(M::POST, format!("{base}/vms/web-1/start"), None).await;
    assert_eq!(st, 200);
    ready("started again → ready").await;
    answers("answers after start").await;

    // A file on the disk; cold migration to worker 2 keeps it, the IP and the MAC.
    assert!(curl(&probe, "PUT", &format!("http://{ip}/files/note"), Some("written before the move")).is_some());
    let migrated = Instant::now();
    let (st, v) = call(M::POST, format!("{base}/vms/web-1/migrate"), Some(json!({"target": w2}))).await;
    assert_eq!(st, 200, "{v}");
    eventually("cold-migrated and ready on worker 2", Duration::from_secs(300), async || {
        let v = show().await;
        (v["host"] == w2.as_str()
            && v["migration"].is_null()
            && v["state"] == "running"
            && v["status"]["guest_ready"] == true)
            .then_some(())
    })
    .await;
    answers("answers from worker 2").await;
    println!("cold migration: {:.1} s", migrated.elapsed().as_secs_f64());
    let v = show().await;
    assert_eq!((v["addresses"][0].as_str(), v["nics"][0]["mac"].as_str()), (Some(ip.as_str()), Some(mac.as_str())));
    assert_eq!(
        curl(&probe, "GET", &format!("http://{ip}/files/note"), None).as_deref(),
        Some("written before the move")
    );
    let addrs = curl(&probe, "GET", &format!("http://{ip}/addrs"), None).unwrap();
    assert!(addrs.to_lowercase().contains(&mac), "{addrs}");
    eventually("worker 1 cleaned up", Duration::from_secs(30), async || {
        (!data.join("plasmavmc-w1/vms").join(&id).exists() && !vol_file("w1").exists()).then_some(())
    })
    .await;
    assert!(vol_file("w2").exists(), "the volume moved along");

    // Live migration back to worker 1: the guest never stops — its in-memory counter and a file
    // written on worker 2 come along, and it answers at the same address.
    assert!(curl(&probe, "PUT", &format!("http://{ip}/files/note2"), Some("written on worker 2")).is_some());
    for n in 1..=3 {
        let v: Value =
            serde_json::from_str(&curl(&probe, "POST", &format!("http://{ip}/visit"), None).unwrap()).unwrap();
        assert_eq!(v["visits"], n);
    }
    let source_pid = show().await["status"]["pid"].as_u64().unwrap();
    let (st, v) = call(M::POST, format!("{base}/vms/web-1/migrate"), Some(json!({"target": w1, "live": true}))).await;
    assert_eq!(st, 200, "{v}");
    let live = Instant::now();
    let moved = eventually("live-migrated to worker 1", Duration::from_secs(300), async || {
        let v = show().await;
        (v["host"] == w1.as_str() && v["migration"].is_null() && v["state"] == "running").then_some(v)
    })
    .await;
    answers("answers from worker 1 after the live migration").await;
    println!("live migration (request → guest answers on worker 1): {:.1} s", live.elapsed().as_secs_f64());
    let v: Value = serde_json::from_str(&curl(&probe, "GET", &format!("http://{ip}/state"), None).unwrap()).unwrap();
    assert_eq!(v["visits"], 3, "the in-memory counter survived: the guest kept running: {v}");
    assert_eq!(
        curl(&probe, "GET", &format!("http://{ip}/files/note2"), None).as_deref(),
        Some("written on worker 2"),
        "the root disk's writes were mirrored"
    );
    assert_eq!(
        curl(&probe, "GET", &format!("http://{ip}/files/note"), None).as_deref(),
        Some("written before the move")
    );
    assert_eq!(
        (moved["addresses"][0].as_str(), moved["nics"][0]["mac"].as_str()),
        (Some(ip.as_str()), Some(mac.as_str()))
    );
    assert_eq!(moved["status"]["guest_ready"], true, "ready on arrival: {moved}");
    let (_, events) = call(M::GET, format!("{base}/vms/web-1/events"), None).await;
    let handed_over = events["items"].as_array().unwrap().iter().find(|e| e["kind"] == "handed-over").cloned();
    println!(
        "live migration, as the source saw it: {}",
        handed_over.as_ref().map(|e| e["message"].to_string()).unwrap_or_default()
    );
    assert!(handed_over.is_some_and(|e| e["message"].as_str().unwrap().contains("guest paused")), "{events}");
    eventually("worker 2 cleaned up", Duration::from_secs(30), async || {
        (!data.join("plasmavmc-w2/vms").join(&id).exists()
            && !Path::new(&format!("/proc/{source_pid}")).exists()
            && !vol_file("w2").exists())
        .then_some(())
    })
    .await;
    assert!(vol_file("w1").exists(), "the volume moved along");
    let v: Value = serde_json::from_str(&curl(&probe, "POST", &format!("http://{ip}/visit"), None).unwrap()).unwrap();
    assert_eq!(v["visits"], 4, "and counts on");

    // Delete: nothing left — process, tap, DHCP entry, files, port.
    let port = moved["nics"][0]["port"].as_str().unwrap().to_owned();
    let (st, v) = call(M::DELETE, format!("{base}/vms/web-1"), None).await;
    assert_eq!(st, 202, "{v}");
    eventually("deleted", Duration::from_secs(60), async || {
        (call(M::GET, format!("{base}/vms/web-1"), None).await.0 == 404).then_some(())
    })
    .await;
    assert!(!qemu_running(&id));
    assert!(!data.join("plasmavmc-w1/vms").join(&id).exists());
    let tap = ultracloud_prismnet::agent::nft::port_dev(&port);
    eventually("the taps are gone", Duration::from_secs(30), async || {
        (!sh(&["ip", "-n", &w1, "link", "show", &tap]).0 && !sh(&["ip", "-n", &w2, "link", "show", &tap]).0)
            .then_some(())
    })
    .await;
    let (st, _) = c.s.call(M::GET, &format!("{base}/ports/{port}"), &acme, None).await;
    assert_eq!(st, 404, "the port is gone");
    let (st, v) = call(M::DELETE, format!("{base}/volumes/data"), None).await;
    assert_eq!(st, 204, "detached with the VM, the volume can go: {v}");
    eventually("the volume file is gone", Duration::from_secs(30), async || (!vol_file("w1").exists()).then_some(()))
        .await;
    eventually("no DHCP entry for the MAC", Duration::from_secs(30), async || {
        let hosts = sh(&["sh", "-c", &format!("cat {}/prismnet-w*/dhcp/*/* 2>/dev/null", data.display())]).1;
        (!hosts.to_lowercase().contains(&mac)).then_some(())
    })
    .await;
    drop(stop_w1);
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}
