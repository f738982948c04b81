//! Three iam replicas behind one flaredb, and a service guarded by `Guard::require`:
//! tokens of one replica are accepted by all; a revocation or an unbinding on one replica is
//! honoured by the others and by the guard within a bounded time; key rotation keeps old
//! tokens valid.

use crate::support;

use std::time::Duration;

use axum::routing::get;
use serde_json::json;
use support::{Api, World, project_scope, tenant_scope, within};
use ultracloud_iam::guard::{Guard, GuardConfig, Principal};

/// The documented bound: the watch round trip (a replica polls flaredb every 200 ms) with a
/// wide margin for a loaded 2-core machine.
const PROPAGATION: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_tokens_revocations_and_keys() {
    let w = World::start().await;
    w.tenant("acme").await;
    let alice = w.user("alice", "acme", "member", project_scope("acme", "web")).await;
    let (_r2, api2) = support::replica(w.db).await;
    let (_r3, api3) = support::replica(w.db).await;
    for api in [&w.api, &api2, &api3] {
        assert_eq!(api.get("/v1/auth/whoami", &alice).await.0, 200, "{}", api.base);
    }

    // Logout through replica 2: replicas 1 and 3 refuse the token within the bound.
    let (s, _) = api2.post("/v1/auth/logout", &alice, json!({})).await;
    assert_eq!(s, 204);
    for api in [&w.api, &api3] {
        let took = within(PROPAGATION, "revocation on another replica", || {
            let (api, alice) = (api.clone(), alice.clone());
            async move { api.get("/v1/auth/whoami", &alice).await.0 == 401 }
        })
        .await;
        println!("revocation honoured by {} after {took:?}", api.base);
    }

    // Rotation on one replica: new tokens carry the new key and every replica accepts them;
    // tokens signed before stay valid until they expire.
    let before = w.api.token("alice", "a long password").await;
    w.iam.store.rotate_keys(ultracloud_iam::service::now_secs(), w.iam.config.token_lifetime_secs).await.unwrap();
    w.iam.reload_keys().await.unwrap();
    let after = w.api.token("alice", "a long password").await;
    let kid = |t: &str| t.split('.').next().unwrap().to_owned();
    assert_ne!(kid(&before), kid(&after), "signed with the new key");
    for api in [&w.api, &api2, &api3] {
        assert_eq!(api.get("/v1/auth/whoami", &before).await.0, 200, "old token at {}", api.base);
        assert_eq!(api.get("/v1/auth/whoami", &after).await.0, 200, "new token at {}", api.base);
    }
    let (s, v) = api3.call(reqwest::Method::GET, "/.well-known/jwks.json", None, None).await;
    assert_eq!((s, v["keys"].as_array().unwrap().len()), (200, 2), "both keys published during overlap: {v}");
}

/// A stand-in for another UltraCloud service: one guarded resource collection.
async fn guarded_service(guard: &std::sync::Arc<Guard>) -> Api {
    async fn list(p: Principal) -> axum::Json<serde_json::Value> {
        axum::Json(json!({"caller": p.claims.sub, "scope": p.scope}))
    }
    async fn create(p: Principal) -> (http::StatusCode, axum::Json<serde_json::Value>) {
        (http::StatusCode::CREATED, axum::Json(json!({"created_by": p.claims.sub})))
    }
    let router = axum::Router::new()
        .route("/v1/tenants/{tenant}/projects/{project}/vms", get(list).route_layer(guard.require("compute.vm.list")))
        .route(
            "/v1/tenants/{tenant}/projects/{project}/vms/new",
            axum::routing::post(create).route_layer(guard.require("compute.vm.create")),
        );
    let addr = support::serve(router).await;
    Api { http: reqwest::Client::new(), base: format!("http://{addr}") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_enforces_policy_and_follows_changes() {
    let w = World::start().await;
    for t in ["acme", "globex"] {
        w.tenant(t).await;
    }
    let member = w.user("mel", "acme", "member", project_scope("acme", "web")).await;
    let viewer = w.user("vic", "acme", "viewer", tenant_scope("acme")).await;
    let outsider = w.user("olga", "globex", "tenant-admin", tenant_scope("globex")).await;
    let guard =
        Guard::connect(GuardConfig { endpoints: vec![w.api.base.clone()], api_key: w.platform_key.clone() }).unwrap();
    let svc = guarded_service(&guard).await;
    let vms = "/v1/tenants/acme/projects/web/vms";

    let (s, v) = svc.call(reqwest::Method::GET, vms, None, None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("unauthenticated")), "{v}");
    let (s, v) = svc.get(vms, &member).await;
    assert_eq!((s, v["caller"].as_str()), (200, Some("user:mel")), "{v}");
    assert_eq!(v["scope"], project_scope("acme", "web"));
    assert_eq!(svc.post(&format!("{vms}/new"), &member, json!({})).await.0, 201);
    assert_eq!(svc.get("/v1/tenants/acme/projects/db/vms", &member).await.0, 403, "another project");
    assert_eq!(svc.get(vms, &viewer).await.0, 200, "viewers list");
    let (s, v) = svc.post(&format!("{vms}/new"), &viewer, json!({})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")), "viewers do not create: {v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("compute.vm.create"), "the reason names the action");
    assert_eq!(svc.get(vms, &outsider).await.0, 403, "another tenant");
    assert_eq!(svc.get("/v1/tenants/globex/projects/web/vms", &outsider).await.0, 200);
    let forged = format!("{}.{}.AAAA", member.split('.').next().unwrap(), member.split('.').nth(1).unwrap());
    assert_eq!(svc.get(vms, &forged).await.0, 401);

    // An unbinding at iam reaches the guard's cache within the bound.
    let (s, v) = w.api.get("/v1/bindings?subject=user:vic", &w.admin).await;
    assert_eq!(s, 200, "{v}");
    let id = v["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(w.api.delete(&format!("/v1/bindings/user:vic/{id}"), &w.admin).await, 204);
    let took = within(PROPAGATION, "unbinding reaching the guard", || {
        let (svc, viewer) = (svc.clone(), viewer.clone());
        async move { svc.get(vms, &viewer).await.0 == 403 }
    })
    .await;
    println!("unbinding honoured by the guard after {took:?}");

    // So does a logout.
    assert_eq!(w.api.post("/v1/auth/logout", &member, json!({})).await.0, 204);
    let took = within(PROPAGATION, "logout reaching the guard", || {
        let (svc, member) = (svc.clone(), member.clone());
        async move { svc.get(vms, &member).await.0 == 401 }
    })
    .await;
    println!("logout honoured by the guard after {took:?}");

    // The service's own token (service-to-service calls) comes from its API key.
    let token = guard.tokens().token().await.unwrap();
    let (s, v) = w.api.get("/v1/auth/whoami", &token).await;
    assert_eq!((s, v["claims"]["sub"].as_str()), (200, Some("sa:platform")), "{v}");
}
