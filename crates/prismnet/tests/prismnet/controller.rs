//! The controller over a real flaredb and iam: tenant scoping, validation, and IPAM that never
//! hands out one address twice, even with several controller replicas allocating at once.

use crate::support;

use std::collections::BTreeSet;

use reqwest::Method as M;
use serde_json::json;
use ultracloud_prismnet::model::Owner;
use ultracloud_prismnet::ops::{self, NewPort};
use ultracloud_prismnet::store::StoreError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_are_scoped_validated_and_refuse_to_lose_things() {
    let s = support::Stack::start().await;
    let acme = s.tenant("acme", "web").await;
    let globex = s.tenant("globex", "app").await;
    let base = "/v1/tenants/acme/projects/web";

    let (st, v) =
        s.call(M::POST, &format!("{base}/vpcs"), &acme, Some(json!({"name": "net", "cidr": "10.0.0.0/16"}))).await;
    assert_eq!(st, 201, "{v}");
    let (st, v) =
        s.call(M::POST, &format!("{base}/vpcs"), &acme, Some(json!({"name": "bad", "cidr": "10.0.0.1/16"}))).await;
    assert_eq!(st, 422, "{v}");
    assert!(v.to_string().contains("10.0.0.0/16"), "the error names the network meant: {v}");
    // A misspelt field is refused, naming it, rather than silently dropped.
    let typo = json!({"name": "typo", "vpc": "net", "cidr": "10.0.9.0/24", "dns_server": ["10.0.0.53"]});
    let (st, v) = s.call(M::POST, &format!("{base}/subnets"), &acme, Some(typo)).await;
    assert!(st == 400 || st == 422, "{st} {v}");
    assert!(v.to_string().contains("dns_server"), "the error names the unknown field: {v}");
    let subnet = json!({"name": "s1", "vpc": "net", "cidr": "10.0.1.0/24", "dns_servers": ["10.0.0.53"]});
    let (st, v) = s.call(M::POST, &format!("{base}/subnets"), &acme, Some(subnet)).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["gateway"], "10.0.1.1");
    assert!(v["vni"].as_u64().unwrap() >= 1000);
    let (st, v) = s
        .call(
            M::POST,
            &format!("{base}/subnets"),
            &acme,
            Some(json!({"name": "s2", "vpc": "net", "cidr": "10.0.1.128/25"})),
        )
        .await;
    assert_eq!(st, 409, "overlapping subnets in a VPC are refused: {v}");
    let (st, v) = s
        .call(
            M::POST,
            &format!("{base}/subnets"),
            &acme,
            Some(json!({"name": "s3", "vpc": "net", "cidr": "192.168.0.0/24"})),
        )
        .await;
    assert_eq!(st, 400, "outside the VPC: {v}");
    let (st, v) = s
        .call(M::POST, &format!("{base}/ports"), &acme, Some(json!({"subnet": "s1", "fixed_ips": ["10.0.2.9"]})))
        .await;
    assert_eq!(st, 400, "{v}");
    let (st, port) =
        s.call(M::POST, &format!("{base}/ports"), &acme, Some(json!({"subnet": "s1", "name": "web-1"}))).await;
    assert_eq!(st, 201, "{port}");
    assert_eq!(port["fixed_ips"][0], "10.0.1.2", "the lowest free address after the gateway");
    assert_eq!(port["security_groups"].as_array().unwrap().len(), 1, "the project's default group");
    let (st, v) = s
        .call(M::POST, &format!("{base}/ports"), &acme, Some(json!({"subnet": "s1", "fixed_ips": ["10.0.1.2"]})))
        .await;
    assert_eq!(st, 409, "a taken address: {v}");

    // Another tenant: same CIDR is fine; acme's resources are invisible and untouchable.
    let gbase = "/v1/tenants/globex/projects/app";
    let (st, _) =
        s.call(M::POST, &format!("{gbase}/vpcs"), &globex, Some(json!({"name": "net", "cidr": "10.0.0.0/16"}))).await;
    assert_eq!(st, 201);
    assert_eq!(s.call(M::GET, &format!("{base}/subnets"), &globex, None).await.0, 403);
    let (st, v) = s.call(M::POST, &format!("{gbase}/ports"), &globex, Some(json!({"subnet": port["subnet"]}))).await;
    assert_eq!(st, 404, "another tenant's subnet does not exist for globex: {v}");
    let (st, v) = s.call(M::GET, &format!("{gbase}/ports"), &globex, None).await;
    assert_eq!((st, v["items"].as_array().unwrap().len()), (200, 0));

    // A subnet in use stays; a released address is reused.
    let (st, v) = s.call(M::DELETE, &format!("{base}/subnets/s1"), &acme, None).await;
    assert_eq!(st, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("web-1"), "names the ports: {v}");
    let (st, _) = s.call(M::DELETE, &format!("{base}/ports/{}", port["id"].as_str().unwrap()), &acme, None).await;
    assert_eq!(st, 204);
    let (_, again) = s.call(M::POST, &format!("{base}/ports"), &acme, Some(json!({"subnet": "s1"}))).await;
    assert_eq!(again["fixed_ips"][0], "10.0.1.2", "reused");
    s.call(M::DELETE, &format!("{base}/ports/{}", again["id"].as_str().unwrap()), &acme, None).await;
    assert_eq!(s.call(M::DELETE, &format!("{base}/vpcs/net"), &acme, None).await.0, 409, "the VPC has a subnet");
    assert_eq!(s.call(M::DELETE, &format!("{base}/subnets/s1"), &acme, None).await.0, 204);
    assert_eq!(s.call(M::DELETE, &format!("{base}/vpcs/net"), &acme, None).await.0, 204);
    let (st, v) = s.call(M::GET, "/v1/openapi.json", &acme, None).await;
    assert_eq!((st, v["openapi"].as_str()), (200, Some("3.0.3")));
}

/// Three "controller replicas" (separate clients) create 24 ports at once in a subnet with
/// 13 free addresses: exactly 13 succeed, with 13 distinct addresses; the rest are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_allocation_never_hands_out_an_address_twice() {
    let s = support::Stack::start().await;
    let owner = Owner { tenant: "t".into(), project: "p".into() };
    let store = ultracloud_prismnet::store::open(ultracloud_flaredb::Client::new(vec![s.db.to_string()]).unwrap());
    ops::create_vpc(
        &store,
        &owner,
        &ops::NewVpc {
            name: "v".into(),
            cidr: "10.9.0.0/16".parse().unwrap(),
            labels: Default::default(),
            annotations: Default::default(),
        },
    )
    .await
    .unwrap();
    let subnet = ops::NewSubnet {
        name: "small".into(),
        vpc: "v".into(),
        cidr: "10.9.0.0/28".parse().unwrap(),
        gateway: None,
        no_gateway: false,
        dhcp: Some(false),
        dns_servers: vec![],
        pools: vec![],
        labels: Default::default(),
        annotations: Default::default(),
    };
    ops::create_subnet(&store, &owner, &subnet).await.unwrap();
    let mut tasks = Vec::new();
    for replica in 0..3 {
        let store = ultracloud_prismnet::store::open(ultracloud_flaredb::Client::new(vec![s.db.to_string()]).unwrap());
        let owner = owner.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..8 {
                let req = NewPort {
                    subnet: "small".into(),
                    name: format!("r{replica}-{i}"),
                    security_groups: Some(vec![]),
                    ..Default::default()
                };
                got.push(ops::create_port(&store, &owner, &req, ops::By::Tenant).await);
            }
            got
        }));
    }
    let mut addresses = Vec::new();
    let mut refused = 0;
    for t in tasks {
        for r in t.await.unwrap() {
            match r {
                Ok(p) => addresses.extend(p.fixed_ips),
                Err(StoreError::Conflict(m)) if m.contains("no free address") => refused += 1,
                Err(e) => panic!("unexpected: {e}"),
            }
        }
    }
    let distinct: BTreeSet<_> = addresses.iter().collect();
    assert_eq!(distinct.len(), addresses.len(), "an address was handed out twice: {addresses:?}");
    assert_eq!(addresses.len(), 13, "a /28 minus the gateway holds 13 ports");
    assert_eq!(refused, 24 - 13);
}

/// A live migration's target gets the port on standby (device made, not attached) and both
/// hosts peer for the subnet; the next binding moves it for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_target_holds_the_port_on_standby() {
    let s = support::Stack::start().await;
    let acme = s.tenant("acme", "web").await;
    let base = "/v1/tenants/acme/projects/web";
    for (host, ip) in [("h1", "192.0.2.1"), ("h2", "192.0.2.2")] {
        let (st, v) = s.call(M::PUT, &format!("/v1/hosts/{host}"), &s.admin, Some(json!({"underlay_ip": ip}))).await;
        assert!(st < 300, "{v}");
    }
    s.call(M::POST, &format!("{base}/vpcs"), &acme, Some(json!({"name": "net", "cidr": "10.0.0.0/16"}))).await;
    s.call(
        M::POST,
        &format!("{base}/subnets"),
        &acme,
        Some(json!({"name": "s1", "vpc": "net", "cidr": "10.0.1.0/24"})),
    )
    .await;
    let tap = |host: &str, standby: Option<&str>| json!({"binding": {"host": host, "plug": {"kind": "tap"}, "standby": standby}});
    let (st, port) = s
        .call(
            M::POST,
            &format!("{base}/ports"),
            &s.admin,
            Some(json!({"subnet": "s1", "binding": {"host": "h1", "plug": {"kind": "tap"}}})),
        )
        .await;
    assert_eq!(st, 201, "{port}");
    let url = format!("{base}/ports/{}", port["id"].as_str().unwrap());
    let (st, v) = s.call(M::PATCH, &url, &s.admin, Some(tap("h1", Some("h1")))).await;
    assert_eq!(st, 400, "standby on its own host: {v}");
    let netns = json!({"binding": {"host": "h1", "plug": {"kind": "netns", "netns": "vm1"}, "standby": "h2"}});
    let (st, v) = s.call(M::PATCH, &url, &s.admin, Some(netns)).await;
    assert_eq!(st, 400, "a veth cannot stand by: {v}");
    let (st, v) = s.call(M::PATCH, &url, &s.admin, Some(tap("h1", Some("h2")))).await;
    assert_eq!((st, v["binding"]["standby"].as_str()), (200, Some("h2")), "{v}");

    let plan = |host: &'static str| {
        let s = &s;
        async move { s.call(M::GET, &format!("/v1/hosts/{host}/plan"), &s.admin, None).await.1 }
    };
    let (p1, p2) = (plan("h1").await, plan("h2").await);
    assert_eq!(p1["subnets"][0]["ports"][0]["standby"], false, "{p1}");
    assert_eq!(p2["subnets"][0]["ports"][0]["standby"], true, "{p2}");
    assert_eq!(p1["subnets"][0]["peers"], json!(["192.0.2.2"]), "{p1}");
    assert_eq!(p2["subnets"][0]["peers"], json!(["192.0.2.1"]), "{p2}");

    let (st, v) = s.call(M::PATCH, &url, &s.admin, Some(tap("h2", None))).await;
    assert_eq!(st, 200, "{v}");
    assert!(v["binding"].get("standby").is_none(), "{v}");
    let (p1, p2) = (plan("h1").await, plan("h2").await);
    assert_eq!(p2["subnets"][0]["ports"][0]["standby"], false, "attached on the new host: {p2}");
    let on_h1 = p1["subnets"].as_array().unwrap().iter().flat_map(|s| s["ports"].as_array().unwrap().clone());
    assert_eq!(on_h1.count(), 0, "gone from the old host: {p1}");
}

/// A refusal inside a change aborts it: what the body wrote before refusing is not committed
/// (a VM refused on its second volume must not leave the first attached).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_aborts_what_the_change_wrote() {
    let s = support::Stack::start().await;
    let store = ultracloud_prismnet::store::open(ultracloud_flaredb::Client::new(vec![s.db.to_string()]).unwrap());
    let r: Result<(), StoreError> = store
        .change(async |t| {
            t.put(b"prismnet/test/first", b"written before the refusal");
            ops::refuse(StoreError::Conflict("the second step is refused".into()))
        })
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    assert_eq!(store.db.get(b"prismnet/test/first").await.unwrap(), None, "nothing of a refused change is kept");
}

/// Hostile callers — another tenant's member and viewer, and the tenant's own member and viewer
/// where the platform alone may act — with every scope header variant: refused on the agent
/// routes, on the tenant's resources by ID and by name, and on a port's platform-only fields.
/// A node's credential stays on its own host and reads no tenant data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_callers_are_refused_everywhere() {
    let s = support::Stack::start().await;
    let acme = s.tenant("acme", "web").await;
    let acme_viewer = s.user("acme", "web", "acme-viewer", "viewer").await;
    let globex = s.tenant("globex", "app").await;
    let globex_viewer = s.user("globex", "app", "globex-viewer", "viewer").await;
    let base = "/v1/tenants/acme/projects/web";
    let call = |m: M,
                path: String,
                token: String,
                h: &'static [(&'static str, &'static str)],
                body: Option<serde_json::Value>| {
        let s = &s;
        async move { s.call_at(&s.ctl, m, &path, &token, h, body).await }
    };
    let h1 = s.node_token("h1").await;
    let h2 = s.node_token("h2").await;
    let (st, v) = call(M::PUT, "/v1/hosts/h1".into(), h1.clone(), &[], Some(json!({"underlay_ip": "192.0.2.1"}))).await;
    assert_eq!(st, 204, "{v}");
    let (st, v) =
        s.call(M::POST, &format!("{base}/vpcs"), &acme, Some(json!({"name": "net", "cidr": "10.0.0.0/16"}))).await;
    assert_eq!(st, 201, "{v}");
    let subnet = json!({"name": "s1", "vpc": "net", "cidr": "10.0.1.0/24"});
    let (st, v) = s.call(M::POST, &format!("{base}/subnets"), &acme, Some(subnet)).await;
    assert_eq!(st, 201, "{v}");
    let (st, port) =
        s.call(M::POST, &format!("{base}/ports"), &acme, Some(json!({"subnet": "s1", "name": "p1"}))).await;
    assert_eq!(st, 201, "{port}");
    let id = port["id"].as_str().unwrap().to_owned();
    let tenants = [
        ("acme member", &acme),
        ("acme viewer", &acme_viewer),
        ("globex member", &globex),
        ("globex viewer", &globex_viewer),
    ];

    for h in support::HEADER_VARIANTS {
        // Agent routes: no tenant role holds a platform action.
        for (who, token) in tenants {
            for (m, path, body) in [
                (M::PUT, "/v1/hosts/h1", Some(json!({"underlay_ip": "192.0.2.66"}))),
                (M::PUT, "/v1/hosts/evil", Some(json!({"underlay_ip": "192.0.2.66"}))),
                (M::GET, "/v1/hosts/h1/plan", None),
                (M::GET, "/v1/watch?after=0", None),
            ] {
                let (st, v) = call(m.clone(), path.into(), token.clone(), h, body).await;
                assert_eq!(st, 403, "{who} {m} {path} {h:?}: {v}");
            }
        }
        // Another tenant's resources, by ID and by name, read, changed or deleted.
        for (who, token) in &tenants[2..] {
            for (m, path, body) in [
                (M::GET, format!("{base}/ports/{id}"), None),
                (M::GET, format!("{base}/ports/p1"), None),
                (M::GET, format!("{base}/ports"), None),
                (M::GET, format!("{base}/events"), None),
                (M::GET, format!("{base}/subnets/s1"), None),
                (M::GET, format!("{base}/vpcs/net"), None),
                (M::PATCH, format!("{base}/ports/{id}"), Some(json!({"security_groups": []}))),
                (M::PATCH, format!("{base}/ports/{id}/metadata"), Some(json!({"labels": {"owned": "yes"}}))),
                (M::PATCH, format!("{base}/vpcs/net/metadata"), Some(json!({"labels": {"owned": "yes"}}))),
                (M::PATCH, format!("{base}/subnets/s1/metadata"), Some(json!({"annotations": {"x": "y"}}))),
                (M::PATCH, format!("{base}/routers/r1/metadata"), Some(json!({"labels": {"owned": "yes"}}))),
                (M::PATCH, format!("{base}/security-groups/default/metadata"), Some(json!({"labels": {"o": "y"}}))),
                (M::PATCH, format!("{base}/service-ips/sip/metadata"), Some(json!({"labels": {"owned": "yes"}}))),
                (M::DELETE, format!("{base}/ports/{id}"), None),
                (M::DELETE, format!("{base}/subnets/s1"), None),
            ] {
                let (st, v) = call(m.clone(), path.clone(), (*token).clone(), h, body).await;
                assert_eq!(st, 403, "{who} {m} {path} {h:?}: {v}");
            }
            // Through its own project, acme's ID is simply not there.
            let (st, v) =
                call(M::GET, format!("/v1/tenants/globex/projects/app/ports/{id}"), globex.clone(), h, None).await;
            assert_eq!(st, 404, "{who}: {v}");
        }
        // Platform-only fields, refused even to the port's own tenant.
        let netns = json!({"host": "h1", "plug": {"kind": "netns", "netns": "host-root"}});
        for (m, path, body) in [
            (M::POST, format!("{base}/ports"), json!({"subnet": "s1", "binding": netns})),
            (M::POST, format!("{base}/ports"), json!({"subnet": "s1", "device_owner": "compute:vm/vm-x"})),
            (M::POST, format!("{base}/ports"), json!({"subnet": "s1", "device_owner": "network:dhcp"})),
            (M::PATCH, format!("{base}/ports/{id}"), json!({"binding": netns})),
            (
                M::PATCH,
                format!("{base}/ports/{id}"),
                json!({"binding": {"host": "h1", "plug": {"kind": "tap"}, "standby": "h2"}}),
            ),
            (M::PATCH, format!("{base}/ports/{id}"), json!({"binding": null})),
            (M::PATCH, format!("{base}/ports/{id}"), json!({"device_owner": "network:dhcp"})),
        ] {
            for (who, token) in &tenants[..2] {
                let (st, v) = call(m.clone(), path.clone(), (*token).clone(), h, Some(body.clone())).await;
                assert_eq!(st, 403, "{who} {m} {path} {body} {h:?}: {v}");
            }
        }
        // Labels are a change: the tenant's own viewer and a node may not make it.
        for (who, token) in [("acme viewer", &acme_viewer), ("node h1", &h1)] {
            for kind in ["ports", "vpcs", "subnets", "routers", "security-groups", "service-ips"] {
                let path = format!("{base}/{kind}/{}/metadata", if kind == "ports" { id.as_str() } else { "net" });
                let body = Some(json!({"labels": {"owned": "yes"}}));
                let (st, v) = call(M::PATCH, path.clone(), token.clone(), h, body).await;
                assert_eq!(st, 403, "{who} PATCH {path} {h:?}: {v}");
            }
        }
        // A node's credential: its own host only, and no tenant data.
        for (m, path) in [(M::GET, "/v1/hosts/h1/plan"), (M::PUT, "/v1/hosts/h1")] {
            let (st, v) = call(m.clone(), path.into(), h2.clone(), h, Some(json!({"underlay_ip": "192.0.2.66"}))).await;
            assert_eq!(st, 403, "node h2 {m} {path} {h:?}: {v}");
        }
        let (st, v) = call(M::GET, format!("{base}/ports/{id}"), h1.clone(), h, None).await;
        assert_eq!(st, 403, "a node reads no tenant data {h:?}: {v}");
        let (st, v) =
            call(M::PATCH, format!("{base}/ports/{id}"), h1.clone(), h, Some(json!({"binding": netns}))).await;
        assert_eq!(st, 403, "a node binds no port {h:?}: {v}");
    }

    // The platform may; and then the port is the platform's.
    let (st, v) = call(M::GET, "/v1/hosts/h1/plan".into(), h1.clone(), &[], None).await;
    assert_eq!(st, 200, "{v}");
    let body = json!({"binding": {"host": "h1", "plug": {"kind": "tap"}}, "device_owner": "compute:vm/vm-x"});
    let (st, v) = s.call(M::PATCH, &format!("{base}/ports/{id}"), &s.admin, Some(body)).await;
    assert_eq!(st, 200, "{v}");
    for body in [json!({"device_owner": ""}), json!({"device_owner": "mine"})] {
        let (st, v) = s.call(M::PATCH, &format!("{base}/ports/{id}"), &acme, Some(body)).await;
        assert_eq!(st, 403, "a platform-owned port keeps its owner: {v}");
    }
    let (st, v) = s.call(M::DELETE, &format!("{base}/ports/{id}"), &acme, None).await;
    assert_eq!(st, 403, "a platform-owned port goes with its owner: {v}");
    let (_, after) = s.call(M::GET, &format!("{base}/ports/{id}"), &acme, None).await;
    assert_eq!(after["binding"], json!({"host": "h1", "plug": {"kind": "tap"}}), "nothing a refused caller sent stuck");
    let (_, plan) = call(M::GET, "/v1/hosts/h1/plan".into(), h1, &[], None).await;
    assert!(!plan.to_string().contains("192.0.2.66"), "no refused registration took effect: {plan}");
}

/// The kit's API conventions through a real service: idempotent creates, stamps, labels and
/// selectors, pagination, ETag/If-Match, and the audit trail.
#[tokio::test]
async fn api_conventions_idempotency_labels_paging_etags_and_audit() {
    let s = support::Stack::start().await;
    let acme = s.tenant("acme", "web").await;
    let base = "/v1/tenants/acme/projects/web";
    let call = |m: M, path: String, h: &'static [(&'static str, &'static str)], body: Option<serde_json::Value>| {
        let (s, acme) = (&s, &acme);
        async move { s.call_at(&s.ctl, m, &path, acme, h, body).await }
    };

    // A retried create returns the first answer; the key with another request is refused.
    let key: &[(&str, &str)] = &[("idempotency-key", "create-net-1")];
    let vpc = json!({"name": "net", "cidr": "10.0.0.0/16", "labels": {"env": "prod"}});
    let (st, first) = call(M::POST, format!("{base}/vpcs"), key, Some(vpc.clone())).await;
    assert_eq!(st, 201, "{first}");
    let (st, again) = call(M::POST, format!("{base}/vpcs"), key, Some(vpc)).await;
    assert_eq!((st, &again["id"]), (201, &first["id"]), "{again}");
    let (st, v) = call(M::POST, format!("{base}/vpcs"), key, Some(json!({"name": "n2", "cidr": "10.1.0.0/16"}))).await;
    assert_eq!(st, 422, "{v}");
    let (_, vpcs) = call(M::GET, format!("{base}/vpcs"), &[], None).await;
    assert_eq!(vpcs["items"].as_array().unwrap().len(), 1, "one VPC for three requests: {vpcs}");

    // Stamps: revision 1, made by the caller, labels kept.
    let meta = &first["meta"];
    assert_eq!(meta["revision"], 1, "{first}");
    assert!(meta["created_by"].as_str().unwrap().starts_with("user:"), "{first}");
    assert!(meta["created_at_ms"].as_u64().unwrap() > 0, "{first}");
    assert_eq!(meta["labels"]["env"], "prod");
    let (st, v) = call(
        M::POST,
        format!("{base}/vpcs"),
        &[],
        Some(json!({"name": "n3", "cidr": "10.2.0.0/16", "labels": {"bad key": "x"}})),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("bad key"), "{v}");

    // Labels, selectors and pages.
    for i in 0..5 {
        let labels = if i % 2 == 0 { json!({"tier": "web"}) } else { json!({}) };
        let (st, v) = call(
            M::POST,
            format!("{base}/security-groups"),
            &[],
            Some(json!({"name": format!("g{i}"), "labels": labels})),
        )
        .await;
        assert_eq!(st, 201, "{v}");
    }
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["items"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap().to_owned()).collect()
    };
    let mut seen = Vec::new();
    let mut path = format!("{base}/security-groups?limit=2");
    let mut pages = 0;
    loop {
        let (st, v) = call(M::GET, path.clone(), &[], None).await;
        assert_eq!(st, 200, "{v}");
        assert!(v["items"].as_array().unwrap().len() <= 2);
        seen.extend(names(&v));
        pages += 1;
        match v["next_page_token"].as_str() {
            Some(t) => path = format!("{base}/security-groups?limit=2&page_token={t}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!((seen, pages), (vec!["g0", "g1", "g2", "g3", "g4"].into_iter().map(String::from).collect(), 3));
    let (_, v) = call(M::GET, format!("{base}/security-groups?selector=tier%3Dweb"), &[], None).await;
    let mut web = names(&v);
    web.sort();
    assert_eq!(web, ["g0", "g2", "g4"], "{v}");
    let (_, v) = call(M::GET, format!("{base}/security-groups?selector=!tier"), &[], None).await;
    assert_eq!(names(&v).len(), 2, "{v}");
    let (_, v) = call(M::GET, format!("{base}/security-groups?name=g3"), &[], None).await;
    assert_eq!(names(&v), ["g3"], "{v}");
    for bad in ["limit=0", "limit=5000", "page_token=%21%21", "selector=a%20b", "colour=red"] {
        let (st, v) = call(M::GET, format!("{base}/security-groups?{bad}"), &[], None).await;
        assert_eq!(st, 400, "{bad}: {v}");
    }

    // ETag / If-Match: a stale revision is refused (412) and changes nothing.
    let rules = json!({"rules": [{"direction": "ingress", "protocol": "tcp", "port_min": 22}]});
    let (st, v) =
        call(M::PUT, format!("{base}/security-groups/g0"), &[("if-match", "\"1\"")], Some(rules.clone())).await;
    assert_eq!((st, &v["meta"]["revision"]), (200, &json!(2)), "{v}");
    let (st, v) =
        call(M::PUT, format!("{base}/security-groups/g0"), &[("if-match", "\"1\"")], Some(rules.clone())).await;
    assert_eq!(st, 412, "{v}");
    let (st, v) =
        call(M::PUT, format!("{base}/security-groups/g0"), &[("if-match", "soon")], Some(rules.clone())).await;
    assert_eq!(st, 400, "{v}");
    let (_, v) = call(M::GET, format!("{base}/security-groups/g0"), &[], None).await;
    assert_eq!(v["meta"]["revision"], 2, "{v}");
    assert_eq!(v["meta"]["labels"]["tier"], "web", "labels survive an update: {v}");

    // Labels change after creation: a merge patch (null removes), If-Match, stamped and audited.
    let patch_meta = json!({"labels": {"tier": null, "env": "prod"}, "annotations": {"owner": "ops"}});
    let (st, v) = call(
        M::PATCH,
        format!("{base}/security-groups/g0/metadata"),
        &[("if-match", "\"1\"")],
        Some(patch_meta.clone()),
    )
    .await;
    assert_eq!(st, 412, "a stale revision: {v}");
    let (st, v) =
        call(M::PATCH, format!("{base}/security-groups/g0/metadata"), &[("if-match", "\"2\"")], Some(patch_meta)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["meta"]["labels"], json!({"env": "prod"}), "{v}");
    assert_eq!(
        (v["meta"]["annotations"]["owner"].as_str(), v["meta"]["revision"].as_u64()),
        (Some("ops"), Some(3)),
        "{v}"
    );
    assert_eq!(v["rules"].as_array().map(Vec::len), Some(1), "the group's own fields stay: {v}");
    let (st, v) =
        call(M::PATCH, format!("{base}/security-groups/g0/metadata"), &[], Some(json!({"labels": {"bad key": "x"}})))
            .await;
    assert_eq!(st, 400, "{v}");
    let (st, v) =
        call(M::PATCH, format!("{base}/security-groups/g0/metadata"), &[], Some(json!({"revision": 9}))).await;
    assert_eq!(st, 422, "only labels and annotations: {v}");
    let (_, v) = call(M::GET, format!("{base}/security-groups?selector=env%3Dprod"), &[], None).await;
    assert_eq!(names(&v), ["g0"], "selectors see the new label: {v}");
    let (st, v) =
        call(M::PATCH, format!("{base}/vpcs/net/metadata"), &[], Some(json!({"labels": {"env": "prod"}}))).await;
    assert_eq!((st, &v["meta"]["labels"]["env"]), (200, &json!("prod")), "{v}");

    // The audit trail: every change, who made it, oldest first, paged like any list.
    let (st, v) = call(M::GET, format!("{base}/events"), &[], None).await;
    assert_eq!(st, 200, "{v}");
    let events = v["items"].as_array().unwrap();
    let summary: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().into(),
                e["kind"].as_str().unwrap().into(),
                e["name"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(summary.first(), Some(&("created".into(), "vpc".into(), "net".into())), "{v}");
    assert_eq!(summary.last(), Some(&("updated".into(), "vpc".into(), "net".into())), "{v}");
    assert_eq!(summary.len(), 9, "1 VPC, 5 groups, 1 rules update, 2 label patches: {v}");
    assert!(events.iter().all(|e| e["actor"].as_str().unwrap().starts_with("user:")), "{v}");
    let (_, v) = call(M::GET, format!("{base}/events?limit=4"), &[], None).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 4);
    assert!(v["next_page_token"].is_string(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_expire_after_their_retention() {
    use ultracloud_resource::audit::{self, Action, Event};
    let s = support::Stack::start().await;
    let store = ultracloud_prismnet::store::open(ultracloud_flaredb::Client::new(vec![s.db.to_string()]).unwrap());
    let day = 86_400_000;
    let now = ultracloud_runtime::clock::now_ms();
    // Three projects with events from 40, 35 and 1 days ago (and one only recent ones).
    let projects: Vec<Owner> = [("t1", "p1"), ("t1", "p2"), ("t2", "p1"), ("t3", "new")]
        .iter()
        .map(|(t, p)| Owner { tenant: (*t).into(), project: (*p).into() })
        .collect();
    let mut kept = Vec::new();
    for (n, owner) in projects.iter().enumerate() {
        let ages: &[u64] = if owner.project == "new" { &[1] } else { &[40, 35, 1] };
        for (i, age) in ages.iter().enumerate() {
            let e = Event {
                at_ms: now - age * day,
                actor: "user:u".into(),
                action: Action::Created,
                kind: "vpc".into(),
                id: format!("vpc-{n}-{i}"),
                name: String::new(),
                revision: 1,
            };
            let key = e.key("prismnet", owner);
            store.db.put(&key, &serde_json::to_vec(&e).unwrap()).await.unwrap();
            if *age < 30 {
                kept.push(key);
            }
        }
    }
    assert_eq!(audit::expire(&store, now - 30 * day).await.unwrap(), 6, "two old events in each of three projects");
    let left: Vec<Vec<u8>> = store
        .db
        .scan(b"prismnet/event/", Some(b"prismnet/event0"), 0, false)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(left, kept);
    assert_eq!(audit::expire(&store, now - 30 * day).await.unwrap(), 0, "a second pass finds nothing");
}
