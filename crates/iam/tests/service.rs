//! iam replicas over a real flaredb node on 127.0.0.1: bootstrap, login and throttling, tenant
//! isolation, token tampering, and a token of one replica accepted by another.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report in tests

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use ultracloud_iam::password::Cost;
use ultracloud_iam::service::{Iam, IamConfig, api};

async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    addr
}

async fn flaredb(dir: &std::path::Path) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ultracloud_flaredb::FlaredbConfig { listen: addr, ..Default::default() };
    let node =
        ultracloud_flaredb::node::Node::start(config, dir, tokio_util::sync::CancellationToken::new()).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, ultracloud_flaredb::server::router(node)).await.unwrap() });
    addr
}

async fn replica(db: SocketAddr) -> (Arc<Iam>, String) {
    let config = IamConfig { flaredb_endpoints: db.to_string(), ..Default::default() };
    let iam = Iam::start(config, Cost { memory_kib: 1024, iterations: 1 }).await.unwrap();
    let addr = serve(api::router(iam.clone())).await;
    (iam, format!("http://{addr}"))
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn login(&self, user: &str, password: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, "/v1/auth/token", None, Some(json!({"username": user, "password": password})))
            .await
    }

    async fn token(&self, user: &str, password: &str) -> String {
        let (s, v) = self.login(user, password).await;
        assert_eq!(s, 200, "{v}");
        v["access_token"].as_str().unwrap().to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated_and_tokens_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("db")).unwrap();
    let db = flaredb(&dir.path().join("db")).await;
    let (iam, base) = replica(db).await;
    let secrets = dir.path().join("iam");
    std::fs::create_dir_all(&secrets).unwrap();
    let file = iam.bootstrap(&secrets).await.unwrap().expect("first start writes the password file");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let admin_pw = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(iam.bootstrap(&secrets).await.unwrap().is_none(), "bootstrap happens once");

    let api = Api { http: reqwest::Client::new(), base };
    let admin = api.token("admin", &admin_pw).await;
    use reqwest::Method as M;
    for t in ["acme", "globex"] {
        let (s, v) = api.call(M::POST, "/v1/tenants", Some(&admin), Some(json!({"id": t, "display_name": t}))).await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, _) = api.call(M::POST, "/v1/tenants", Some(&admin), Some(json!({"id": "acme", "display_name": "x"}))).await;
    assert_eq!(s, 409);
    let (s, v) =
        api.call(M::POST, "/v1/tenants", Some(&admin), Some(json!({"id": "Bad Name", "display_name": "x"}))).await;
    assert_eq!(s, 400, "{v}");
    for (user, tenant) in [("alice", "acme"), ("bob", "globex")] {
        let (s, v) = api
            .call(
                M::POST,
                "/v1/users",
                Some(&admin),
                Some(json!({"name": user, "tenant": tenant, "password": "a long password"})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let b = json!({"subject": format!("user:{user}"), "role": "tenant-admin", "scope": {"kind": "tenant", "tenant": tenant}});
        let (s, v) = api.call(M::POST, "/v1/bindings", Some(&admin), Some(b)).await;
        assert_eq!(s, 201, "{v}");
    }
    let alice = api.token("alice", "a long password").await;
    let bob = api.token("bob", "a long password").await;

    // Lists never show other tenants; reads and writes across tenants are refused.
    let (s, v) = api.call(M::GET, "/v1/tenants", Some(&alice), None).await;
    assert_eq!(s, 200);
    assert_eq!(v["items"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect::<Vec<_>>(), ["acme"]);
    let (s, _) = api.call(M::GET, "/v1/tenants/globex", Some(&alice), None).await;
    assert_eq!(s, 403);
    let (s, _) = api.call(M::GET, "/v1/tenants/nonexistent", Some(&alice), None).await;
    assert_eq!(s, 403, "a denied caller cannot probe for tenants");
    let (s, v) = api.call(M::POST, "/v1/tenants/acme/projects", Some(&alice), Some(json!({"id": "web"}))).await;
    assert_eq!(s, 201, "{v}");
    let (s, _) = api.call(M::POST, "/v1/tenants/acme/projects", Some(&bob), Some(json!({"id": "evil"}))).await;
    assert_eq!(s, 403);
    let (s, v) = api.call(M::GET, "/v1/tenants/acme/projects", Some(&bob), None).await;
    assert_eq!((s, v["items"].as_array().unwrap().len()), (200, 0), "{v}");
    let (s, _) = api.call(M::POST, "/v1/tenants", Some(&alice), Some(json!({"id": "mine", "display_name": "x"}))).await;
    assert_eq!(s, 403, "tenant admins cannot create tenants");
    let (s, v) = api
        .call(
            M::POST,
            "/v1/authorize",
            Some(&alice),
            Some(json!({"subject": "user:bob", "action": "compute.vm.create", "scope": {"kind": "project", "tenant": "acme", "project": "web"}})),
        )
        .await;
    assert_eq!((s, v["allowed"].as_bool()), (200, Some(false)), "{v}");

    // Tokens: missing, tampered, alg none.
    let (s, _) = api.call(M::GET, "/v1/tenants", None, None).await;
    assert_eq!(s, 401);
    let mut parts: Vec<String> = alice.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].chars().rev().collect();
    let (s, _) = api.call(M::GET, "/v1/tenants", Some(&parts.join(".")), None).await;
    assert_eq!(s, 401);
    use base64::Engine;
    let none = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
    let forged = format!("{none}.{}.", alice.split('.').nth(1).unwrap());
    let (s, v) = api.call(M::GET, "/v1/tenants", Some(&forged), None).await;
    assert_eq!(s, 401, "{v}");

    // Another replica over the same flaredb accepts the first one's tokens.
    let (_iam2, base2) = replica(db).await;
    let api2 = Api { http: reqwest::Client::new(), base: base2 };
    let (s, v) = api2.call(M::GET, "/v1/tenants", Some(&alice), None).await;
    assert_eq!((s, v["items"].as_array().map(Vec::len)), (200, Some(1)), "{v}");

    // Brute force: five free failures, then the user (and the source) are throttled.
    for _ in 0..6 {
        assert_eq!(api.login("alice", "wrong password!").await.0, 401);
    }
    let (s, v) = api.login("alice", "a long password").await;
    assert_eq!(s, 429, "even the right password waits: {v}");
    let (s, _) = api.login("nobody", "whatever it is").await;
    assert_eq!(s, 429, "the guessing source is throttled too");
}
