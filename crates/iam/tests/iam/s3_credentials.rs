//! S3 credentials: a project's members create and delete them, viewers list them without
//! secrets, only S3 gateways (the `object-gateway` role, platform-wide) read a secret, and
//! nobody from another tenant reaches any of it, whatever scope headers they add.

use crate::support;

use reqwest::Method as M;
use serde_json::{Value, json};
use support::{World, project_scope};

/// Scope headers a hostile caller might hope the server reads (it must read none).
const HEADER_VARIANTS: &[&[(&str, &str)]] = &[
    &[],
    &[("x-ultracloud-tenant", "acme")],
    &[("x-ultracloud-tenant", "acme"), ("x-ultracloud-project", "web")],
    &[("x-ultracloud-project", "web")],
    &[("x-ultracloud-tenant", "system")],
    &[("x-ultracloud-tenant", "")],
];

async fn call(w: &World, m: M, path: &str, token: &str, headers: &[(&str, &str)], body: Option<Value>) -> (u16, Value) {
    let mut r = w.api.http.request(m, format!("{}{path}", w.api.base)).bearer_auth(token);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_credentials_stay_in_their_project_and_only_gateways_read_secrets() {
    let w = World::start().await;
    for (t, p) in [("acme", "web"), ("globex", "app")] {
        w.tenant(t).await;
        let (s, v) = w.api.post(&format!("/v1/tenants/{t}/projects"), &w.admin, json!({"id": p})).await;
        assert_eq!(s, 201, "{v}");
    }
    let acme = w.user("acme-member", "acme", "member", project_scope("acme", "web")).await;
    let acme_viewer = w.user("acme-viewer", "acme", "viewer", project_scope("acme", "web")).await;
    let globex = w.user("globex-member", "globex", "member", project_scope("globex", "app")).await;
    let globex_viewer = w.user("globex-viewer", "globex", "viewer", project_scope("globex", "app")).await;
    // The gateways' own account, made by iam's bootstrap: the object-gateway role only.
    let key_file = w.dir.path().join("iam").join("s3-gateway-api-key");
    let gateway_key = std::fs::read_to_string(key_file).unwrap();
    let (s, v) = w.api.grant(json!({"grant_type": "api_key", "api_key": gateway_key.trim()})).await;
    assert_eq!(s, 200, "{v}");
    let gateway = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(w.api.get("/v1/tenants", &gateway).await.0, 200, "it reads the directory");
    let (s, v) = w.api.post("/v1/tenants", &gateway, json!({"id": "evil"})).await;
    assert_eq!(s, 403, "and changes nothing: {v}");

    let base = "/v1/tenants/acme/projects/web/s3-credentials";
    let (s, created) = w.api.post(base, &acme, json!({"description": "backups"})).await;
    assert_eq!(s, 201, "{created}");
    let key = created["access_key_id"].as_str().unwrap().to_owned();
    let secret = created["secret_access_key"].as_str().unwrap().to_owned();
    assert!(key.len() == 20 && key.starts_with("UC"), "{key}");
    assert_eq!(secret.len(), 40);
    assert_eq!((created["owner"].as_str(), created["project"].as_str()), (Some("user:acme-member"), Some("web")));

    let (s, v) = w.api.get(base, &acme_viewer).await;
    assert_eq!((s, v["items"][0]["access_key_id"].as_str()), (200, Some(key.as_str())), "{v}");
    assert!(!v.to_string().contains(&secret), "a list never shows a secret: {v}");
    assert_eq!(w.api.post(base, &acme_viewer, json!({})).await.0, 403, "viewers do not create keys");
    assert_eq!(w.api.delete(&format!("{base}/{key}"), &acme_viewer).await, 403);
    let (s, v) = w.api.post(base, &acme, json!({"description": "x".repeat(300)})).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = w.api.post(base, &acme, json!({"bogus": 1})).await;
    assert_eq!(s, 422, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("bogus"), "unknown fields are named: {v}");

    // Hostile callers, every header variant: another tenant's member and viewer reach nothing of
    // acme's; no tenant role reads a secret.
    let resolve = format!("/v1/s3-credentials/{key}");
    for h in HEADER_VARIANTS {
        for (who, token) in [("globex member", &globex), ("globex viewer", &globex_viewer)] {
            for (m, path, body) in [
                (M::POST, base.to_owned(), Some(json!({}))),
                (M::GET, base.to_owned(), None),
                (M::DELETE, format!("{base}/{key}"), None),
                (M::GET, resolve.clone(), None),
            ] {
                let (s, v) = call(&w, m.clone(), &path, token, h, body).await;
                assert_eq!(s, 403, "{who} {m} {path} {h:?}: {v}");
            }
            // Its own project's path does not reach acme's key either.
            let (s, v) =
                call(&w, M::DELETE, &format!("/v1/tenants/globex/projects/app/s3-credentials/{key}"), token, h, None)
                    .await;
            assert!(s == 404 || s == 403, "{who} {h:?}: {s} {v}");
        }
        for (who, token) in [("acme member", &acme), ("acme viewer", &acme_viewer)] {
            let (s, v) = call(&w, M::GET, &resolve, token, h, None).await;
            assert_eq!(s, 403, "{who} {h:?}: a secret is for gateways only: {v}");
        }
    }

    // The gateway reads the secret and the project the key acts in.
    let (s, v) = w.api.get(&resolve, &gateway).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["secret_access_key"].as_str(), Some(secret.as_str()));
    assert_eq!((v["tenant"].as_str(), v["project"].as_str()), (Some("acme"), Some("web")));
    let (s, v) = w.api.get("/v1/s3-credentials/not-a-key", &gateway).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(w.api.get("/v1/s3-credentials/UCAAAAAAAAAAAAAAAAAA", &gateway).await.0, 404);
    assert_eq!(w.api.post(base, &gateway, json!({})).await.0, 403, "a gateway creates no keys");

    // Deleted: gone for the gateway too. A project's deletion takes its keys with it.
    assert_eq!(w.api.delete(&format!("{base}/{key}"), &acme).await, 204);
    assert_eq!(w.api.get(&resolve, &gateway).await.0, 404);
    let (s, v) = w.api.post(base, &acme, json!({})).await;
    assert_eq!(s, 201, "{v}");
    let second = v["access_key_id"].as_str().unwrap().to_owned();
    assert_eq!(w.api.delete("/v1/tenants/acme/projects/web", &w.admin).await, 204);
    assert_eq!(w.api.get(&format!("/v1/s3-credentials/{second}"), &gateway).await.0, 404);
}
