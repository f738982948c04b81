//! Smoke checks of prismnet: a subnet spanning the two workers, a "VM" on each (a namespace
//! plugged by a veth port), DHCP from the workers' dnsmasq, and traffic across VXLAN.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use super::control_plane::iam_login;
use super::{Runner, Seen};
use crate::lab::{Lab, wait_until};
use crate::sys;
use crate::topology::{Node, Role, ports};

const BOUND: Duration = Duration::from_secs(60);

/// Every check, in order.
pub async fn run(lab: &Lab, r: &mut Runner) {
    r.check("prismnet: a subnet spanning node04 and node05, VMs reach each other", spanning(lab)).await;
}

struct Api {
    http: reqwest::Client,
    token: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, url: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.request(method, url).bearer_auth(&self.token).timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| url.to_owned())?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    async fn create(&self, url: &str, body: Value) -> anyhow::Result<Value> {
        let (s, v) = self.call(reqwest::Method::POST, url, Some(body)).await?;
        ensure!(s == 201, "{url} answered {s}: {v}");
        Ok(v)
    }
}

fn vm_ns(n: &Node) -> String {
    format!("uclab-vm-{}", n.name)
}

async fn spanning(lab: &Lab) -> anyhow::Result<Seen> {
    let cp = lab.topo.control_plane();
    let workers: Vec<&Node> = lab.topo.nodes.iter().filter(|n| n.role == Role::Worker).collect();
    ensure!(workers.len() >= 2, "need two workers");
    let api = Api { http: ultracloud_tls::client::http_client(), token: iam_login(lab, cp[0]).await? };
    let iam = format!("https://{}", cp[0].addr(ports::IAM));
    for (url, body) in [
        (format!("{iam}/v1/tenants"), json!({"id": "smoke"})),
        (format!("{iam}/v1/tenants/smoke/projects"), json!({"id": "net"})),
    ] {
        let (s, v) = api.call(reqwest::Method::POST, &url, Some(body)).await?;
        ensure!(s == 201 || s == 409, "{url} answered {s}: {v}");
    }
    let base = format!("https://{}/v1/tenants/smoke/projects/net", cp[0].addr(ports::PRISMNET));
    let tag = &ultracloud_iam::credential::new_id()[..6];
    let (vpc, subnet) = (format!("v{tag}"), format!("s{tag}"));
    api.create(&format!("{base}/vpcs"), json!({"name": vpc, "cidr": "10.77.0.0/16"})).await?;
    api.create(&format!("{base}/subnets"), json!({"name": subnet, "vpc": vpc, "cidr": "10.77.1.0/24"})).await?;
    let mut ports = Vec::new();
    let outcome = async {
        for w in &workers[..2] {
            let ns = vm_ns(w);
            let _ = sys::ip(&["netns", "del", &ns]);
            sys::ip(&["netns", "add", &ns])?;
            sys::ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let body = json!({"subnet": subnet, "name": w.name, "binding": {"host": w.name, "plug": {"kind": "netns", "netns": ns}}});
            ports.push(api.create(&format!("{base}/ports"), body).await?);
        }
        let start = Instant::now();
        for w in &workers[..2] {
            let ns = vm_ns(w);
            wait_until(BOUND, &format!("the port plugged into {ns}"), || async {
                sys::ip(&["-n", &ns, "link", "show", "eth0"]).is_ok()
            })
            .await?;
        }
        let plugged = start.elapsed();
        let script = lab.dir.join("udhcpc.sh");
        std::fs::write(&script, "#!/bin/sh\n[ \"$1\" = bound ] && ip addr replace \"$ip/$mask\" dev \"$interface\"\nexit 0\n")?;
        sys::run("chmod", &["+x", &script.display().to_string()])?;
        let dhcp_start = Instant::now();
        for (w, port) in workers[..2].iter().zip(&ports) {
            let ns = vm_ns(w);
            let want = port["fixed_ips"][0].as_str().unwrap_or_default().to_owned();
            sys::in_ns(&ns, "busybox", &["udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "10", "-T", "1", "-s", &script.display().to_string()])
                .with_context(|| format!("DHCP in {ns}"))?;
            let addr = sys::ip(&["-n", &ns, "-4", "-o", "addr", "show", "eth0"])?;
            ensure!(addr.contains(&format!("{want}/24")), "{ns} got {addr}, expected {want}");
        }
        let dhcp = dhcp_start.elapsed();
        let target = ports[1]["fixed_ips"][0].as_str().unwrap_or_default().to_owned();
        let ping_start = Instant::now();
        let from = vm_ns(workers[0]);
        wait_until(BOUND, "a ping across the workers", || async {
            sys::in_ns(&from, "busybox", &["ping", "-c", "1", "-W", "1", &target]).is_ok()
        })
        .await?;
        anyhow::Ok((plugged, dhcp, ping_start.elapsed(), target))
    }
    .await;
    // Clean up whatever happened: ports, subnet, VPC, the VM namespaces.
    for p in &ports {
        let _ = api
            .call(reqwest::Method::DELETE, &format!("{base}/ports/{}", p["id"].as_str().unwrap_or_default()), None)
            .await;
    }
    let _ = api.call(reqwest::Method::DELETE, &format!("{base}/subnets/{subnet}"), None).await;
    let _ = api.call(reqwest::Method::DELETE, &format!("{base}/vpcs/{vpc}"), None).await;
    for w in &workers[..2] {
        let ns = vm_ns(w);
        for pid in sys::pids_in(&ns) {
            sys::kill(pid);
        }
        let _ = sys::ip(&["netns", "del", &ns]);
    }
    let (plugged, dhcp, ping, target) = outcome?;
    if target.is_empty() {
        bail!("the port has no address");
    }
    Ok(Seen::new(format!(
        "ports plugged by the agents after {:.1}s; both VMs got their addresses by DHCP in {:.1}s; {} → {target} answered after {:.2}s",
        plugged.as_secs_f64(),
        dhcp.as_secs_f64(),
        workers[0].name,
        ping.as_secs_f64()
    ))
    .figure("ports_plugged_s", plugged)
    .figure("dhcp_s", dhcp)
    .figure("first_ping_s", ping))
}
