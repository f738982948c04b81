//! The controller over real flaredb, iam and prismnet (no QEMU): images, placement, NICs from
//! prismnet, tenant isolation and bad input. A worker is registered by hand, as its agent would.

use crate::support;

use base64::Engine;
use reqwest::Method as M;
use serde_json::{Value, json};

async fn register(c: &support::Compute, host: &str, vcpus: u32, memory_mib: u32) {
    let token = c.s.node_token(host).await;
    let body = json!({"vcpus": vcpus, "memory_mib": memory_mib, "accel": "tcg", "agent_url": "http://127.0.0.1:9", "address": "127.0.0.1"});
    let (st, v) = c.vmc(M::PUT, &format!("/v1/hosts/{host}"), &token, Some(body)).await;
    assert_eq!(st, 204, "{v}");
}

fn image_file(dir: &std::path::Path) -> (String, String) {
    let path = dir.join("disk.qcow2");
    std::fs::write(&path, b"QFI\xfb not really a qcow2, but it has the magic").unwrap();
    let d = sha256_hex(&std::fs::read(&path).unwrap());
    (format!("file://{}", path.display()), d)
}

/// In acme/web: the image "g" and the subnet "s" (in the VPC "n").
async fn image_and_subnet(c: &support::Compute, acme: &str) {
    let base = "/v1/tenants/acme/projects/web";
    let (url, sha) = image_file(c.s.dir.path());
    let (st, v) =
        c.vmc(M::POST, &format!("{base}/images"), acme, Some(json!({"name": "g", "url": url, "sha256": sha}))).await;
    assert_eq!(st, 201, "{v}");
    let (st, v) =
        c.s.call(M::POST, &format!("{base}/vpcs"), acme, Some(json!({"name": "n", "cidr": "10.0.0.0/16"}))).await;
    assert_eq!(st, 201, "{v}");
    let subnet = json!({"name": "s", "vpc": "n", "cidr": "10.0.1.0/24"});
    let (st, v) = c.s.call(M::POST, &format!("{base}/subnets"), acme, Some(subnet)).await;
    assert_eq!(st, 201, "{v}");
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_nics_isolation_and_bad_input() {
    let c = support::Compute::start().await;
    let acme = c.s.tenant("acme", "web").await;
    let globex = c.s.tenant("globex", "app").await;
    let (url, sha) = image_file(c.s.dir.path());
    let base = "/v1/tenants/acme/projects/web";

    // Images: the hash is checked; the format is detected.
    let (st, v) = c
        .vmc(
            M::POST,
            &format!("{base}/images"),
            &acme,
            Some(json!({"name": "g", "url": url, "sha256": "0".repeat(64)})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("SHA-256"), "{v}");
    let (st, v) =
        c.vmc(M::POST, &format!("{base}/images"), &acme, Some(json!({"name": "g", "url": url, "format": "raw"}))).await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("is qcow2, not raw"), "{v}");
    let (st, v) =
        c.vmc(M::POST, &format!("{base}/images"), &acme, Some(json!({"name": "g", "url": "ftp://x/y"}))).await;
    assert_eq!(st, 400, "{v}");
    // Images never come from the platform's own files or networks.
    for url in ["file:///etc/shadow", "http://127.0.0.1:8480/v1/auth/token", "http://169.254.169.254/latest"] {
        let (st, v) = c.vmc(M::POST, &format!("{base}/images"), &acme, Some(json!({"name": "x", "url": url}))).await;
        assert_eq!(st, 403, "{url}: {v}");
    }
    let (st, img) =
        c.vmc(M::POST, &format!("{base}/images"), &acme, Some(json!({"name": "g", "url": url, "sha256": sha}))).await;
    assert_eq!(st, 201, "{img}");
    assert_eq!(img["format"], "qcow2");
    assert_eq!(img["disk"]["sha256"], sha.as_str());

    // A network to put NICs in (prismnet), for both tenants.
    let net = |t: &'static str, p: &'static str, token: String| {
        let c = &c;
        async move {
            let b = format!("/v1/tenants/{t}/projects/{p}");
            let (st, v) =
                c.s.call(M::POST, &format!("{b}/vpcs"), &token, Some(json!({"name": "n", "cidr": "10.0.0.0/16"})))
                    .await;
            assert_eq!(st, 201, "{v}");
            let (st, v) =
                c.s.call(
                    M::POST,
                    &format!("{b}/subnets"),
                    &token,
                    Some(json!({"name": "s", "vpc": "n", "cidr": "10.0.1.0/24"})),
                )
                .await;
            assert_eq!(st, 201, "{v}");
            v["id"].as_str().unwrap().to_owned()
        }
    };
    net("acme", "web", acme.clone()).await;
    let globex_subnet = net("globex", "app", globex.clone()).await;

    // No worker yet: a clear refusal.
    let vm = |name: &str, extra: Value| {
        let mut b = json!({"name": name, "image": "g", "nics": [{"subnet": "s"}]});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    let (st, v) = c.vmc(M::POST, &format!("{base}/vms"), &acme, Some(vm("a", json!({})))).await;
    assert_eq!(st, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("no worker is available"), "{v}");

    register(&c, "w1", 4, 2048).await;
    register(&c, "w2", 4, 1024).await;

    // Bad input, each named.
    let bad = [
        (vm("b", json!({"image": "nope"})), 404, "image \"nope\" not found"),
        (
            vm("b", json!({"memory_mib": 1_000_000})),
            409,
            "no worker can fit 1 vCPU(s) and 1000000 MiB: the roomiest, w1, has 4 vCPU(s) and 2048 MiB free",
        ),
        (vm("b", json!({"nics": [{"subnet": globex_subnet}]})), 400, "not found in acme/web"),
        (vm("b", json!({"user_data": "!!! not base64 !!!"})), 400, "user_data is not valid base64"),
        (
            vm("b", json!({"nics": [{"port": "../../../globex/projects/app/ports/p"}]})),
            400,
            "nics[0].port \"../../../globex/projects/app/ports/p\": an ID or a name",
        ),
        (vm("B", json!({})), 400, "name \"B\""),
        (vm("b", json!({"vcpus": 0})), 400, "vcpus 0"),
        (json!({"name": "b", "image": "g", "bogus": 1}), 422, "unknown field `bogus`"),
    ];
    for (body, status, needle) in bad {
        let (st, v) = c.vmc(M::POST, &format!("{base}/vms"), &acme, Some(body.clone())).await;
        assert_eq!(st, status, "{body} → {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{body}: {msg:?} should name {needle:?}");
    }
    // A refused VM leaves no port behind.
    let (_, ports) = c.s.call(M::GET, &format!("{base}/ports"), &acme, None).await;
    assert!(ports["items"].as_array().unwrap().iter().all(|p| p["device_owner"] != "compute:vm"), "{ports}");

    // A good VM: placed on the roomiest worker, with a port bound there as a tap.
    let ud = base64::engine::general_purpose::STANDARD.encode(br#"{"hostname": "a"}"#);
    let (st, a) = c
        .vmc(M::POST, &format!("{base}/vms"), &acme, Some(vm("a", json!({"user_data": ud, "anti_affinity": "web"}))))
        .await;
    assert_eq!(st, 201, "{a}");
    assert_eq!(a["host"], "w1");
    assert_eq!(a["state"], "pending");
    let port_id = a["nics"][0]["port"].as_str().unwrap();
    let (_, port) = c.s.call(M::GET, &format!("{base}/ports/{port_id}"), &acme, None).await;
    assert_eq!(port["binding"], json!({"host": "w1", "plug": {"kind": "tap"}}));
    assert_eq!(port["device_owner"], format!("compute:vm/{}", a["id"].as_str().unwrap()));
    assert_eq!(a["addresses"][0], port["fixed_ips"][0]);
    // Anti-affinity spreads the next one.
    let (st, b) = c
        .vmc(M::POST, &format!("{base}/vms"), &acme, Some(vm("b", json!({"anti_affinity": "web", "memory_mib": 128}))))
        .await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(b["host"], "w2");
    let (st, v) = c.vmc(M::POST, &format!("{base}/vms"), &acme, Some(vm("a", json!({})))).await;
    assert_eq!(st, 409, "names are unique: {v}");

    // Tenants see only their own.
    let (st, _) = c.vmc(M::GET, &format!("{base}/vms"), &globex, None).await;
    assert_eq!(st, 403);
    let (st, list) = c.vmc(M::GET, "/v1/tenants/globex/projects/app/vms", &globex, None).await;
    assert_eq!((st, list["items"].as_array().unwrap().len()), (200, 0));
    let (st, _) = c.vmc(M::GET, "/v1/hosts/w1/plan", &acme, None).await;
    assert_eq!(st, 403, "a tenant cannot read a worker's plan");
    let (st, _) = c.vmc(M::GET, &format!("{base}/vms"), "not-a-token", None).await;
    assert_eq!(st, 401);

    // The worker's plan carries the VM and its image.
    let token = c.s.node_token("w1").await;
    let (st, plan) = c.vmc(M::GET, "/v1/hosts/w1/plan", &token, None).await;
    assert_eq!(st, 200, "{plan}");
    assert_eq!(plan["vms"].as_array().unwrap().len(), 1);
    assert_eq!(plan["vms"][0]["image"]["name"], "g");

    // Actions; an image in use stays.
    let (st, v) = c.vmc(M::POST, &format!("{base}/vms/a/reboot"), &acme, None).await;
    assert_eq!((st, v["reboot_seq"].as_u64()), (200, Some(1)), "{v}");
    let (st, v) = c.vmc(M::POST, &format!("{base}/vms/a/stop"), &acme, None).await;
    assert_eq!((st, v["power"].as_str()), (200, Some("stopped")), "{v}");
    let (st, v) = c.vmc(M::POST, &format!("{base}/vms/a/reboot"), &acme, None).await;
    assert_eq!(st, 409, "a stopped VM is not rebooted: {v}");
    // Actions honour If-Match: a stale revision is refused (412) and changes nothing; the
    // current one applies, and the answer carries the next ETag.
    let (_, now) = c.vmc(M::GET, &format!("{base}/vms/a"), &acme, None).await;
    let rev = now["meta"]["revision"].as_u64().unwrap();
    let act_if = |action: &'static str, rev: u64| {
        let (c, path, acme) = (&c, format!("{base}/vms/a/{action}"), acme.clone());
        async move {
            let tag = format!("\"{rev}\"");
            c.s.call_at(&c.vmc, M::POST, &path, &acme, &[("if-match", tag.as_str())], None).await
        }
    };
    let (st, v) = act_if("start", rev - 1).await;
    assert_eq!((st, v["error"]["code"].as_str()), (412, Some("precondition_failed")), "{v}");
    let (_, still) = c.vmc(M::GET, &format!("{base}/vms/a"), &acme, None).await;
    assert_eq!((still["power"].as_str(), &still["meta"]["revision"]), (Some("stopped"), &json!(rev)), "{still}");
    let (st, v) = act_if("start", rev).await;
    assert_eq!((st, v["power"].as_str(), v["meta"]["revision"].as_u64()), (200, Some("running"), Some(rev + 1)), "{v}");
    let (st, v) = act_if("stop", rev + 1).await;
    assert_eq!((st, v["power"].as_str()), (200, Some("stopped")), "{v}");
    let (st, _) = c.vmc(M::DELETE, &format!("{base}/images/g"), &acme, None).await;
    assert_eq!(st, 409);

    // Volumes attach to stopped VMs of their worker.
    let (st, vol) =
        c.vmc(M::POST, &format!("{base}/volumes"), &acme, Some(json!({"name": "data", "size_gib": 1}))).await;
    assert_eq!(st, 201, "{vol}");
    let (st, v) = c.vmc(M::POST, &format!("{base}/volumes/data/attach"), &acme, Some(json!({"vm": "b"}))).await;
    assert_eq!(st, 409, "b is running: {v}");
    let (st, v) = c.vmc(M::POST, &format!("{base}/volumes/data/attach"), &acme, Some(json!({"vm": "a"}))).await;
    assert_eq!((st, v["host"].as_str()), (200, Some("w1")), "{v}");
    let (st, _) = c.vmc(M::DELETE, &format!("{base}/volumes/data"), &acme, None).await;
    assert_eq!(st, 409, "attached volumes stay");

    // The agent reports; deleting finishes when it says the VM is torn down.
    let report = |vm: &Value, state: &str| {
        let (c, token, id) = (&c, token.clone(), vm["id"].as_str().unwrap().to_owned());
        let body = json!({"state": state, "host": "w1"});
        async move { c.vmc(M::PUT, &format!("/v1/hosts/w1/vms/{id}/status"), &token, Some(body)).await.0 }
    };
    assert_eq!(report(&a, "stopped").await, 204);
    let (st, v) = c.vmc(M::DELETE, &format!("{base}/vms/a"), &acme, None).await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(report(&a, "deleted").await, 204);
    let (st, _) = c.vmc(M::GET, &format!("{base}/vms/a"), &acme, None).await;
    assert_eq!(st, 404);
    let (_, port) = c.s.call(M::GET, &format!("{base}/ports/{port_id}"), &acme, None).await;
    assert!(port["error"].is_object(), "the VM's port went with it: {port}");
    let (_, vol) = c.vmc(M::GET, &format!("{base}/volumes/data"), &acme, None).await;
    assert!(vol["attached_to"].is_null(), "{vol}");
    let (_, events) = c.vmc(M::GET, &format!("{base}/vms/b/events"), &acme, None).await;
    assert_eq!(events["items"][0]["kind"], "created");
    let (st, doc) = c.vmc(M::GET, "/v1/openapi.json", "", None).await;
    assert_eq!((st, doc["info"]["title"].as_str()), (200, Some("plasmavmc")));
}

/// A live migration as the controller sees it, driven by hand-made agent reports: refused for a
/// VM that is not running; the ports stand by on the target; the target's listening addresses
/// reach the migration record (and so the source's plan); a failure calls it off and takes the
/// ports off standby; the source's account is kept once; the target's arrival moves the VM and
/// its ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_migration_follows_the_agents_reports() {
    let c = support::Compute::start().await;
    let acme = c.s.tenant("acme", "web").await;
    let base = "/v1/tenants/acme/projects/web";
    register(&c, "w1", 4, 4096).await;
    register(&c, "w2", 4, 4096).await;
    image_and_subnet(&c, &acme).await;
    let body = json!({"name": "m", "image": "g", "memory_mib": 128, "nics": [{"subnet": "s"}], "host": "w1"});
    let (st, vm) = c.vmc(M::POST, &format!("{base}/vms"), &acme, Some(body)).await;
    assert_eq!(st, 201, "{vm}");
    let (id, port) = (vm["id"].as_str().unwrap().to_owned(), vm["nics"][0]["port"].as_str().unwrap().to_owned());
    let report = |host: &'static str, body: Value| {
        let (c, id) = (&c, id.clone());
        async move {
            let token = c.s.node_token(host).await;
            c.vmc(M::PUT, &format!("/v1/hosts/{host}/vms/{id}/status"), &token, Some(body)).await.0
        }
    };
    let show = async || c.vmc(M::GET, &format!("{base}/vms/m"), &acme, None).await.1;
    let binding = async || c.s.call(M::GET, &format!("{base}/ports/{port}"), &acme, None).await.1["binding"].clone();
    let live = json!({"target": "w2", "live": true});

    let (st, v) = c.vmc(M::POST, &format!("{base}/vms/m/migrate"), &acme, Some(live.clone())).await;
    assert_eq!(st, 409, "not running yet: {v}");
    assert_eq!(report("w1", json!({"state": "running", "host": "w1", "guest_ready": true})).await, 204);
    let (st, v) = c.vmc(M::POST, &format!("{base}/vms/m/migrate"), &acme, Some(live.clone())).await;
    assert_eq!((st, v["migration"]["kind"].as_str()), (200, Some("live")), "{v}");
    assert_eq!(binding().await, json!({"host": "w1", "plug": {"kind": "tap"}, "standby": "w2"}));
    let (_, plan) = c.vmc(M::GET, "/v1/hosts/w2/plan", &c.s.node_token("w2").await, None).await;
    assert_eq!(plan["vms"][0]["source"]["guest_ready"], true, "{plan}");

    // The target listens; the source learns where. Then the target fails: called off.
    let incoming = json!({"migration": "127.0.0.1:61001", "nbd": "127.0.0.1:61002"});
    let listening =
        json!({"state": "migrating", "host": "w2", "migration_step": "target-listening", "incoming": incoming});
    assert_eq!(report("w2", listening.clone()).await, 204);
    assert_eq!(show().await["migration"]["incoming"], incoming);
    let (_, plan) = c.vmc(M::GET, "/v1/hosts/w1/plan", &c.s.node_token("w1").await, None).await;
    assert_eq!(plan["vms"][0]["vm"]["migration"]["incoming"], incoming, "{plan}");
    let failed =
        json!({"state": "migrating", "host": "w2", "migration_step": "failed", "message": "the incoming QEMU exited"});
    assert_eq!(report("w2", failed).await, 204);
    let v = show().await;
    assert!(v["migration"].is_null() && v["host"] == "w1", "{v}");
    assert_eq!(binding().await, json!({"host": "w1", "plug": {"kind": "tap"}}), "off standby");
    let (_, events) = c.vmc(M::GET, &format!("{base}/vms/m/events"), &acme, None).await;
    assert!(events.to_string().contains("the incoming QEMU exited"), "{events}");

    // Again, to the end: the source hands over (its account kept once), the target arrives.
    let (st, _) = c.vmc(M::POST, &format!("{base}/vms/m/migrate"), &acme, Some(live)).await;
    assert_eq!(st, 200);
    assert_eq!(report("w2", listening).await, 204);
    let handed = json!({"state": "migrating", "host": "w1", "migration_step": "handed-over", "guest_ready": true,
        "message": "handed over to w2: memory migrated in 500 ms (90 MiB sent), guest paused 150 ms"});
    assert_eq!(report("w1", handed.clone()).await, 204);
    assert_eq!(report("w2", json!({"state": "migrating", "host": "w2", "migration_step": "target-done"})).await, 204);
    assert_eq!(report("w1", handed).await, 204, "a late report of the old host is taken and ignored");
    let v = show().await;
    assert!(v["migration"].is_null() && v["host"] == "w2", "{v}");
    assert_eq!((v["state"].as_str(), v["status"]["guest_ready"].as_bool()), (Some("running"), Some(true)), "{v}");
    assert_eq!(binding().await, json!({"host": "w2", "plug": {"kind": "tap"}}));
    let (_, events) = c.vmc(M::GET, &format!("{base}/vms/m/events"), &acme, None).await;
    let kinds: Vec<&str> = events["items"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "handed-over").count(), 1, "{events}");
    assert!(kinds.contains(&"migrated"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creates_never_overfill_a_worker() {
    let c = support::Compute::start().await;
    let acme = c.s.tenant("acme", "web").await;
    let base = "/v1/tenants/acme/projects/web";
    // Room for exactly two 256 MiB VMs.
    register(&c, "w1", 8, 512).await;
    image_and_subnet(&c, &acme).await;

    // Six at once: each reads the same free room before any is recorded.
    let creates = (0..6).map(|i| {
        let (c, acme) = (&c, acme.clone());
        async move {
            let body = json!({"name": format!("r{i}"), "image": "g", "memory_mib": 256, "nics": [{"subnet": "s"}]});
            c.vmc(M::POST, &format!("{base}/vms"), &acme, Some(body)).await
        }
    });
    let answers = futures::future::join_all(creates).await;
    let created = answers.iter().filter(|(st, _)| *st == 201).count();
    assert_eq!(created, 2, "two fit, no more: {answers:?}");
    for (st, v) in answers.iter().filter(|(st, _)| *st != 201) {
        assert_eq!(*st, 409, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("no worker can fit"), "{v}");
    }
    let (_, vms) = c.vmc(M::GET, &format!("{base}/vms"), &acme, None).await;
    assert_eq!(vms["items"].as_array().unwrap().len(), 2, "{vms}");
    // The refused ones left no port behind.
    let (_, ports) = c.s.call(M::GET, &format!("{base}/ports"), &acme, None).await;
    assert_eq!(ports["items"].as_array().unwrap().len(), 2, "{ports}");
}

/// Hostile callers — another tenant's member and viewer, and the VM's own tenant where only
/// the platform may act — with every scope header variant: refused on every agent route
/// (hosts, plans with user data, status, console writes, the watch), on the tenant's VM by ID
/// and by name, and on a worker's disk server. A node's credential acts only for its own host,
/// and a disk leaves a worker only for the node its VM is moving to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_callers_never_reach_plans_statuses_consoles_or_disks() {
    use std::sync::Arc;
    use ultracloud_plasmavmc::agent::qemu::{Accel, VmPaths};
    use ultracloud_plasmavmc::agent::volumes::LocalQcow2;
    use ultracloud_plasmavmc::agent::{self, Worker};

    let c = support::Compute::start().await;
    let acme = c.s.tenant("acme", "web").await;
    let acme_viewer = c.s.user("acme", "web", "acme-viewer", "viewer").await;
    let globex = c.s.tenant("globex", "app").await;
    let globex_viewer = c.s.user("globex", "app", "globex-viewer", "viewer").await;
    let base = "/v1/tenants/acme/projects/web";
    register(&c, "w1", 4, 2048).await;
    register(&c, "w2", 4, 2048).await;
    image_and_subnet(&c, &acme).await;
    let ud = base64::engine::general_purpose::STANDARD.encode(br#"{"secret": "acme's user data"}"#);
    let body = json!({"name": "v", "image": "g", "nics": [{"subnet": "s"}], "host": "w1", "user_data": ud});
    let (st, vm) = c.vmc(M::POST, &format!("{base}/vms"), &acme, Some(body)).await;
    assert_eq!(st, 201, "{vm}");
    let id = vm["id"].as_str().unwrap().to_owned();
    let (w1, w2) = (c.s.node_token("w1").await, c.s.node_token("w2").await);
    let call = |m: M, path: String, token: String, h: &'static [(&'static str, &'static str)], body: Option<Value>| {
        let c = &c;
        async move { c.s.call_at(&c.vmc, m, &path, &token, h, body).await }
    };
    let evil = json!({"vcpus": 64, "memory_mib": 65536, "accel": "kvm", "agent_url": "http://203.0.113.9:1", "address": "203.0.113.9"});
    let forged = json!({"state": "running", "host": "w1", "migration_step": "target-done"});
    let tenants = [
        ("acme member", &acme),
        ("acme viewer", &acme_viewer),
        ("globex member", &globex),
        ("globex viewer", &globex_viewer),
    ];
    let agent_routes = |host: &str| {
        [
            (M::GET, "/v1/hosts".to_owned(), None),
            (M::PUT, format!("/v1/hosts/{host}"), Some(evil.clone())),
            (M::GET, format!("/v1/hosts/{host}/plan"), None),
            (M::PUT, format!("/v1/hosts/{host}/vms/{id}/status"), Some(forged.clone())),
            (M::PUT, format!("/v1/hosts/{host}/vms/{id}/console"), Some(json!("forged console"))),
            (M::GET, "/v1/watch?after=0".to_owned(), None),
        ]
    };
    for h in support::HEADER_VARIANTS {
        for (who, token) in tenants {
            for (m, path, body) in agent_routes("w1") {
                let (st, v) = call(m.clone(), path.clone(), token.clone(), h, body).await;
                assert_eq!(st, 403, "{who} {m} {path} {h:?}: {v}");
            }
        }
        for (who, token) in &tenants[2..] {
            for (m, path) in [
                (M::GET, format!("{base}/vms/{id}")),
                (M::GET, format!("{base}/vms/v")),
                (M::GET, format!("{base}/vms")),
                (M::GET, format!("{base}/vms/v/console")),
                (M::GET, format!("{base}/vms/v/events")),
                (M::GET, format!("{base}/events")),
                (M::POST, format!("{base}/vms/v/stop")),
                (M::DELETE, format!("{base}/vms/v")),
                (M::GET, format!("{base}/images/g")),
            ] {
                let (st, v) = call(m.clone(), path.clone(), (*token).clone(), h, None).await;
                assert_eq!(st, 403, "{who} {m} {path} {h:?}: {v}");
            }
        }
        // Label changes: refused to other tenants, to the tenant's own viewer and to a node.
        let label = || Some(json!({"labels": {"owned": "yes"}}));
        for (who, token) in tenants.iter().skip(1).map(|(w, t)| (*w, (*t).clone())).chain([("node w1", w1.clone())]) {
            for kind in ["vms/v", "images/g", "volumes/data"] {
                let path = format!("{base}/{kind}/metadata");
                let (st, v) = call(M::PATCH, path.clone(), token.clone(), h, label()).await;
                assert_eq!(st, 403, "{who} PATCH {path} {h:?}: {v}");
            }
        }
        // w2's credential names only w2, and w1's VM is not on w2.
        for (m, path, body) in agent_routes("w1").into_iter().skip(1).take(4) {
            let (st, v) = call(m.clone(), path.clone(), w2.clone(), h, body).await;
            assert_eq!(st, 403, "node w2 {m} {path} {h:?}: {v}");
        }
        let (st, v) =
            call(M::PUT, format!("/v1/hosts/w2/vms/{id}/console"), w2.clone(), h, Some(json!("forged"))).await;
        assert_eq!(st, 404, "w2 writes no console of a VM on w1: {v}");
        let (st, v) = call(M::GET, "/v1/hosts".into(), w1.clone(), h, None).await;
        assert_eq!(st, 403, "agents do not list the fleet: {v}");
        let (st, v) = call(M::GET, format!("{base}/vms/v"), w1.clone(), h, None).await;
        assert_eq!(st, 403, "a node reads no tenant API: {v}");
    }
    let (_, vm) = c.vmc(M::GET, &format!("{base}/vms/v"), &acme, None).await;
    assert!(vm["meta"]["labels"].get("owned").is_none(), "no refused label landed: {vm}");
    let (st, vm) =
        c.vmc(M::PATCH, &format!("{base}/vms/v/metadata"), &acme, Some(json!({"labels": {"env": "prod"}}))).await;
    assert_eq!(
        (st, &vm["meta"]["labels"]["env"], &vm["state"]),
        (200, &json!("prod"), &json!("pending")),
        "the VM's view: {vm}"
    );
    // Nothing a refused caller sent took effect.
    let (st, plan) = call(M::GET, "/v1/hosts/w1/plan".into(), w1.clone(), &[], None).await;
    assert_eq!(st, 200, "{plan}");
    assert_eq!(plan["vms"][0]["vm"]["user_data"], ud.as_str(), "the plan is the worker's own to read");
    let (_, hosts) = c.vmc(M::GET, "/v1/hosts", &c.s.admin, None).await;
    assert!(!hosts.to_string().contains("203.0.113.9"), "no hijacked registration: {hosts}");
    let (_, v) = c.vmc(M::GET, &format!("{base}/vms/v"), &acme, None).await;
    assert_ne!(v["state"], "running", "no forged status: {v}");
    let (_, console) = c.vmc(M::GET, &format!("{base}/vms/v/console"), &acme, None).await;
    assert!(!console.to_string().contains("forged"), "no forged console: {console}");

    // w1's disk server: the VM's root disk leaves only for the node it moves to.
    let dir = c.s.dir.path().join("w1");
    let root = VmPaths::new(&dir, &id).root_disk();
    std::fs::create_dir_all(root.parent().unwrap()).unwrap();
    std::fs::write(&root, b"acme's disk").unwrap();
    let worker = Arc::new(Worker {
        name: "w1".into(),
        data_dir: dir.clone(),
        netns: None,
        qemu: "/usr/bin/qemu-system-x86_64".into(),
        qemu_img: "/usr/bin/qemu-img".into(),
        accel: Accel::Tcg,
        vcpus: 4,
        memory_mib: 2048,
        address: "127.0.0.1".parse().unwrap(),
        agent_url: String::new(),
        volumes: LocalQcow2 { dir: dir.join("volumes"), qemu_img: "/usr/bin/qemu-img".into() },
        outgoing: Default::default(),
        images: Default::default(),
        migration_tls: None,
    });
    let guard = ultracloud_iam::guard::Guard::connect(ultracloud_iam::guard::GuardConfig {
        endpoints: vec![c.s.iam.clone()],
        api_key: c.s.node_key("w1").await,
    })
    .unwrap();
    let disks = format!("http://{}", support::serve(agent::transfer::router(worker.clone(), &guard)).await);
    std::mem::forget(guard);
    let disk = format!("/v1/vms/{id}/disks/root");
    let fetch = |token: String, h: &'static [(&'static str, &'static str)]| {
        let (c, disks, disk) = (&c, disks.clone(), disk.clone());
        async move { c.s.call_at(&disks, M::GET, &disk, &token, h, None).await }
    };
    for h in support::HEADER_VARIANTS {
        for (who, token) in tenants {
            assert_eq!(fetch(token.clone(), h).await.0, 403, "{who} {h:?}");
        }
        assert_eq!(fetch(w2.clone(), h).await.0, 403, "the VM is not moving to w2 {h:?}");
    }
    worker.outgoing.lock().unwrap().insert(id.clone(), "w2".into());
    let (st, body) = fetch(w2.clone(), &[]).await;
    assert_eq!((st, body), (200, Value::String("acme's disk".into())), "the migration's target copies it");
    assert_eq!(fetch(globex.clone(), &[]).await.0, 403, "still no tenant");
}
