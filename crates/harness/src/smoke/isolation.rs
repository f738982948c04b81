//! The isolation check: a second tenant's member and viewer probe the smoke tenant's VM, its
//! port, the worker's plans, statuses and console routes, the watch and the worker's disk
//! server — with every scope-header variant — and must be refused everywhere; so must the
//! smoke tenant's own member on the platform-only routes and port fields.

use std::time::Duration;

use anyhow::{Context, ensure};
use reqwest::Method;
use serde_json::{Value, json};

use super::Seen;
use crate::lab::Lab;
use crate::topology::{Node, ports};

/// The scope headers a hostile caller might add; scope comes from the path alone.
const HEADERS: &[&[(&str, &str)]] = &[
    &[],
    &[("x-ultracloud-tenant", "smoke")],
    &[("x-ultracloud-tenant", "smoke"), ("x-ultracloud-project", "compute")],
    &[("x-ultracloud-tenant", "system")],
];

/// What the probes aim at: the smoke tenant's VM (by name and ID), its port, its worker.
pub(super) struct Target<'a> {
    /// The admin's token (makes the intruders).
    pub admin: &'a str,
    /// The VM's name and ID.
    pub vm: (&'a str, &'a str),
    /// Its port's ID.
    pub port: &'a str,
    /// The worker it runs on.
    pub worker: &'a Node,
}

/// A user of `tenant` with `role` in its project `probe` (made once; the lab keeps it).
async fn user(
    http: &reqwest::Client,
    iam: &str,
    admin: &str,
    tenant: &str,
    name: &str,
    role: &str,
) -> anyhow::Result<String> {
    let password = format!("{name}-smoke-password");
    let scope = json!({"kind": "project", "tenant": tenant, "project": "probe"});
    for (path, body) in [
        ("/v1/tenants".to_owned(), json!({"id": tenant})),
        (format!("/v1/tenants/{tenant}/projects"), json!({"id": "probe"})),
        ("/v1/users".to_owned(), json!({"name": name, "tenant": tenant, "password": password})),
        ("/v1/bindings".to_owned(), json!({"subject": format!("user:{name}"), "role": role, "scope": scope})),
    ] {
        let r = http.post(format!("{iam}{path}")).bearer_auth(admin).json(&body).send().await?;
        ensure!(r.status().is_success() || r.status() == 409, "{path} answered {}", r.status());
    }
    let body = json!({"grant_type": "password", "username": name, "password": password});
    let v: Value = http.post(format!("{iam}/v1/auth/token")).json(&body).send().await?.json().await?;
    v["access_token"].as_str().map(str::to_owned).context("no access token for the intruder")
}

/// Runs every probe; each must be refused (403, or 404 through the intruder's own project).
pub(super) async fn check(lab: &Lab, t: Target<'_>) -> anyhow::Result<Seen> {
    let cp = lab.topo.control_plane()[0];
    let http = ultracloud_tls::client::http_client_builder().timeout(Duration::from_secs(10)).build()?;
    let iam = format!("https://{}", cp.addr(ports::IAM));
    let member = user(&http, &iam, t.admin, "intruder", "intruder-member", "member").await?;
    let viewer = user(&http, &iam, t.admin, "intruder", "intruder-viewer", "viewer").await?;
    let own = user(&http, &iam, t.admin, "smoke", "smoke-member", "member").await?;
    let vmc = format!("https://{}", cp.addr(ports::PLASMAVMC));
    let net = format!("https://{}", cp.addr(ports::PRISMNET));
    let disks = format!("https://{}", t.worker.addr(ports::PLASMAVMC_AGENT));
    let (name, id, port, host) = (t.vm.0, t.vm.1, t.port, t.worker.name.as_str());
    let base = "/v1/tenants/smoke/projects/compute";
    let status = json!({"state": "running", "host": host, "migration_step": "target-done"});
    let registration = json!({"vcpus": 64, "memory_mib": 65536, "accel": "kvm", "agent_url": "http://10.231.0.99:1", "address": "10.231.0.99"});
    let binding = json!({"binding": {"host": host, "plug": {"kind": "netns", "netns": "intruder"}}});
    // Routes the platform alone may use: refused to every tenant, the smoke tenant included.
    let platform: Vec<(Method, String, String, Option<Value>)> = vec![
        (Method::GET, vmc.clone(), "/v1/hosts".into(), None),
        (Method::PUT, vmc.clone(), format!("/v1/hosts/{host}"), Some(registration.clone())),
        (Method::GET, vmc.clone(), format!("/v1/hosts/{host}/plan"), None),
        (Method::PUT, vmc.clone(), format!("/v1/hosts/{host}/vms/{id}/status"), Some(status)),
        (Method::PUT, vmc.clone(), format!("/v1/hosts/{host}/vms/{id}/console"), Some(json!("forged"))),
        (Method::GET, vmc.clone(), "/v1/watch?after=0".into(), None),
        (Method::PUT, net.clone(), format!("/v1/hosts/{host}"), Some(json!({"underlay_ip": "10.231.0.99"}))),
        (Method::GET, net.clone(), format!("/v1/hosts/{host}/plan"), None),
        (Method::GET, net.clone(), "/v1/watch?after=0".into(), None),
        (Method::GET, disks.clone(), format!("/v1/vms/{id}/disks/root"), None),
        (Method::PATCH, net.clone(), format!("{base}/ports/{port}"), Some(binding)),
        (Method::DELETE, net.clone(), format!("{base}/ports/{port}"), None),
    ];
    // The smoke tenant's resources: refused to the intruder.
    let mut theirs: Vec<(Method, String, String, Option<Value>)> = Vec::new();
    for vm in [name, id] {
        for (m, path) in [
            (Method::GET, format!("{base}/vms/{vm}")),
            (Method::GET, format!("{base}/vms/{vm}/console")),
            (Method::GET, format!("{base}/vms/{vm}/events")),
            (Method::POST, format!("{base}/vms/{vm}/stop")),
            (Method::DELETE, format!("{base}/vms/{vm}")),
        ] {
            theirs.push((m, vmc.clone(), path, None));
        }
    }
    theirs.push((Method::GET, vmc.clone(), format!("{base}/vms"), None));
    theirs.push((Method::GET, net.clone(), format!("{base}/ports/{port}"), None));
    theirs.push((Method::PATCH, net.clone(), format!("{base}/ports/{port}"), Some(json!({"security_groups": []}))));
    let mut probes = 0;
    let mut send = async |token: &str, who: &str, m: &Method, url: String, body: &Option<Value>, h: &[(&str, &str)]| {
        let mut req = http.request(m.clone(), &url).bearer_auth(token);
        for (k, v) in h {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let st = req.send().await.with_context(|| format!("{m} {url}"))?.status().as_u16();
        probes += 1;
        ensure!(st == 403, "{who}: {m} {url} {h:?} answered {st}, not 403");
        anyhow::Ok(())
    };
    for h in HEADERS {
        for (who, token) in [("intruder member", &member), ("intruder viewer", &viewer), ("smoke member", &own)] {
            for (m, base_url, path, body) in &platform {
                send(token, who, m, format!("{base_url}{path}"), body, h).await?;
            }
        }
        for (who, token) in [("intruder member", &member), ("intruder viewer", &viewer)] {
            for (m, base_url, path, body) in &theirs {
                send(token, who, m, format!("{base_url}{path}"), body, h).await?;
            }
        }
    }
    // Through its own project, the smoke tenant's VM is not there at all.
    let r = http.get(format!("{vmc}/v1/tenants/intruder/projects/probe/vms/{id}")).bearer_auth(&member).send().await?;
    ensure!(r.status() == 404, "the intruder's own path answered {} for another tenant's VM", r.status());
    Ok(Seen::new(format!(
        "{} probes refused (2 intruders + the tenant's own member, {} header variants)",
        probes + 1,
        HEADERS.len()
    )))
}
