//! Shared pieces of iam's integration tests: a real flaredb node and iam replicas on
//! 127.0.0.1, and a small JSON client.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report in tests

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ultracloud_iam::password::Cost;
use ultracloud_iam::service::{Iam, IamConfig, api};

/// Serves `router` on an ephemeral loopback port.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    addr
}

/// A one-node flaredb in `dir`.
pub async fn flaredb(dir: &std::path::Path) -> SocketAddr {
    std::fs::create_dir_all(dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ultracloud_flaredb::FlaredbConfig { listen: addr, ..Default::default() };
    let node =
        ultracloud_flaredb::node::Node::start(config, dir, tokio_util::sync::CancellationToken::new()).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, ultracloud_flaredb::server::router(node, false)).await.unwrap() });
    addr
}

/// An iam replica over `db` (cheap password hashing: tests are not about argon2's cost).
pub async fn replica(db: SocketAddr) -> (Arc<Iam>, Api) {
    let config = IamConfig { flaredb_endpoints: db.to_string(), ..Default::default() };
    let iam = Iam::start(config, Cost { memory_kib: 1024, iterations: 1 }).await.unwrap();
    let addr = serve(api::router(iam.clone())).await;
    (iam, Api { http: reqwest::Client::new(), base: format!("http://{addr}") })
}

/// A flaredb node and one bootstrapped replica; returns the admin's token and the platform key.
pub struct World {
    pub dir: tempfile::TempDir,
    pub db: SocketAddr,
    pub iam: Arc<Iam>,
    pub api: Api,
    pub admin: String,
    pub admin_password: String,
    pub platform_key: String,
}

impl World {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = flaredb(&dir.path().join("db")).await;
        let (iam, api) = replica(db).await;
        let secrets = dir.path().join("iam");
        std::fs::create_dir_all(&secrets).unwrap();
        let files = iam.bootstrap(&secrets).await.unwrap();
        assert_eq!(files.len(), 3, "the admin password, the platform and the S3 gateway keys: {files:?}");
        let read = |name: &str| std::fs::read_to_string(secrets.join(name)).unwrap().trim().to_owned();
        let admin_password = read("admin-password");
        let platform_key = read("platform-api-key");
        let admin = api.token("admin", &admin_password).await;
        Self { dir, db, iam, api, admin, admin_password, platform_key }
    }

    /// Creates tenants, users in them, and binds each user `role` at `scope`.
    pub async fn user(&self, name: &str, tenant: &str, role: &str, scope: Value) -> String {
        let (s, v) = self
            .api
            .post("/v1/users", &self.admin, json!({"name": name, "tenant": tenant, "password": "a long password"}))
            .await;
        assert_eq!(s, 201, "{v}");
        let (s, v) = self
            .api
            .post("/v1/bindings", &self.admin, json!({"subject": format!("user:{name}"), "role": role, "scope": scope}))
            .await;
        assert_eq!(s, 201, "{v}");
        self.api.token(name, "a long password").await
    }

    pub async fn tenant(&self, id: &str) {
        let (s, v) = self.api.post("/v1/tenants", &self.admin, json!({"id": id, "display_name": id})).await;
        assert_eq!(s, 201, "{v}");
    }
}

pub fn tenant_scope(t: &str) -> Value {
    json!({"kind": "tenant", "tenant": t})
}

pub fn project_scope(t: &str, p: &str) -> Value {
    json!({"kind": "project", "tenant": t, "project": p})
}

/// A JSON client of one replica.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub async fn call(
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

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> u16 {
        self.call(reqwest::Method::DELETE, path, Some(token), None).await.0
    }

    pub async fn grant(&self, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, "/v1/auth/token", None, Some(body)).await
    }

    /// The same API, reached from another loopback source address (a client elsewhere, as the
    /// login throttle sees it).
    pub fn from(&self, source: &str) -> Api {
        let local: std::net::IpAddr = source.parse().unwrap();
        Api { http: reqwest::Client::builder().local_address(local).build().unwrap(), base: self.base.clone() }
    }

    pub async fn login(&self, user: &str, password: &str) -> (u16, Value) {
        self.grant(json!({"grant_type": "password", "username": user, "password": password})).await
    }

    pub async fn token(&self, user: &str, password: &str) -> String {
        let (s, v) = self.login(user, password).await;
        assert_eq!(s, 200, "{v}");
        v["access_token"].as_str().unwrap().to_owned()
    }
}

/// Waits until `check` holds (polling every 50 ms) and returns how long that took; fails
/// after `bound`.
pub async fn within<F, Fut>(bound: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < bound, "{what} did not happen within {bound:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Names of the items of a page.
pub fn ids(v: &Value, field: &str) -> Vec<String> {
    v["items"].as_array().unwrap().iter().map(|i| i[field].as_str().unwrap().to_owned()).collect()
}
