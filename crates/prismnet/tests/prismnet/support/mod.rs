//! A real flaredb node, an iam replica and a prismnet controller on 127.0.0.1, in-process.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report in tests

use std::net::SocketAddr;

use serde_json::{Value, json};
use ultracloud_iam::password::Cost;
use ultracloud_iam::service::{Iam, IamConfig};
use ultracloud_prismnet::server::{self, Controller};

/// Every variant of scope headers a hostile caller might add: none, the victim's tenant and
/// project, the platform's. Scope comes from the path alone, so none may change a decision.
pub const HEADER_VARIANTS: &[&[(&str, &str)]] = &[
    &[],
    &[("x-ultracloud-tenant", "acme")],
    &[("x-ultracloud-tenant", "acme"), ("x-ultracloud-project", "web")],
    &[("x-ultracloud-project", "web")],
    &[("x-ultracloud-tenant", "system")],
    &[("x-ultracloud-tenant", "")],
];

pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    addr
}

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub db: SocketAddr,
    pub iam: String,
    pub ctl: String,
    pub admin: String,
    pub platform_key: String,
    pub http: reqwest::Client,
    node_tokens: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl Stack {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let dbdir = dir.path().join("db");
        std::fs::create_dir_all(&dbdir).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let db = listener.local_addr().unwrap();
        let config = ultracloud_flaredb::FlaredbConfig { listen: db, ..Default::default() };
        let node = ultracloud_flaredb::node::Node::start(config, &dbdir, tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
        tokio::spawn(
            async move { axum::serve(listener, ultracloud_flaredb::server::router(node, false)).await.unwrap() },
        );

        let iam = Iam::start(
            IamConfig { flaredb_endpoints: db.to_string(), ..Default::default() },
            Cost { memory_kib: 1024, iterations: 1 },
        )
        .await
        .unwrap();
        let secrets = dir.path().join("iam");
        std::fs::create_dir_all(&secrets).unwrap();
        iam.bootstrap(&secrets).await.unwrap();
        let iam_url = format!("http://{}", serve(ultracloud_iam::service::api::router(iam)).await);
        let read = |n: &str| std::fs::read_to_string(secrets.join(n)).unwrap().trim().to_owned();
        let (admin_pw, platform_key) = (read("admin-password"), read("platform-api-key"));

        let guard = ultracloud_iam::guard::Guard::connect(ultracloud_iam::guard::GuardConfig {
            endpoints: vec![iam_url.clone()],
            api_key: platform_key.clone(),
        })
        .unwrap();
        let ctl = Controller::new(ultracloud_prismnet::store::open(
            ultracloud_flaredb::Client::new(vec![db.to_string()]).unwrap(),
        ));
        tokio::spawn(ctl.clone().watch_versions(tokio_util::sync::CancellationToken::new()));
        let router = server::router(ctl, &guard);
        std::mem::forget(guard); // lives as long as the test process
        let ctl_url = format!("http://{}", serve(router).await);

        let http = reqwest::Client::new();
        let v: Value = http
            .post(format!("{iam_url}/v1/auth/token"))
            .json(&json!({"grant_type": "password", "username": "admin", "password": admin_pw}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let admin = v["access_token"].as_str().unwrap().to_owned();
        Self { dir, db, iam: iam_url, ctl: ctl_url, admin, platform_key, http, node_tokens: Default::default() }
    }

    /// Creates a tenant with a project, and a user who is a member of that project.
    pub async fn tenant(&self, tenant: &str, project: &str) -> String {
        let post = |path: String, body: Value| {
            let (http, admin) = (self.http.clone(), self.admin.clone());
            async move { http.post(path).bearer_auth(admin).json(&body).send().await.unwrap().status().as_u16() }
        };
        assert_eq!(post(format!("{}/v1/tenants", self.iam), json!({"id": tenant})).await, 201);
        assert_eq!(post(format!("{}/v1/tenants/{tenant}/projects", self.iam), json!({"id": project})).await, 201);
        self.user(tenant, project, &format!("{tenant}-user"), "member").await
    }

    /// Creates user `name` of `tenant` holding `role` in its project; its access token.
    pub async fn user(&self, tenant: &str, project: &str, name: &str, role: &str) -> String {
        let post = |path: String, body: Value| {
            let (http, admin) = (self.http.clone(), self.admin.clone());
            async move { http.post(path).bearer_auth(admin).json(&body).send().await.unwrap().status().as_u16() }
        };
        let body = json!({"name": name, "tenant": tenant, "password": "a long password"});
        assert_eq!(post(format!("{}/v1/users", self.iam), body).await, 201);
        let b = json!({"subject": format!("user:{name}"), "role": role, "scope": {"kind": "project", "tenant": tenant, "project": project}});
        assert_eq!(post(format!("{}/v1/bindings", self.iam), b).await, 201);
        let v: Value = self
            .http
            .post(format!("{}/v1/auth/token", self.iam))
            .json(&json!({"grant_type": "password", "username": name, "password": "a long password"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }

    /// A request to `base` (a controller's URL) with `token` and the given extra headers:
    /// status and JSON body.
    pub async fn call_at(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.http.request(method, format!("{base}{path}")).bearer_auth(token);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let s = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (s, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A new API key of worker `host`'s own node account, made as an operator would: a
    /// platform service account bound to the node, with the node-agent role platform-wide.
    pub async fn node_key(&self, host: &str) -> String {
        let post = |path: &str, body: Value| {
            let r = self.http.post(format!("{}{path}", self.iam)).bearer_auth(&self.admin).json(&body);
            async move {
                let resp = r.send().await.unwrap();
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        let sa = format!("node-{host}");
        let (st, v) = post("/v1/service-accounts", json!({"id": sa, "node": host})).await;
        assert!(st == 201 || st == 409, "{v}");
        let (st, v) = post(
            "/v1/bindings",
            json!({"subject": format!("sa:{sa}"), "role": "node-agent", "scope": {"kind": "system"}}),
        )
        .await;
        assert!(st == 201 || st == 409, "{v}");
        let (st, v) = post("/v1/api-keys", json!({"owner": format!("sa:{sa}")})).await;
        assert_eq!(st, 201, "{v}");
        v["api_key"].as_str().unwrap().to_owned()
    }

    /// An access token of worker `host`'s node agent (what its agents send).
    pub async fn node_token(&self, host: &str) -> String {
        if let Some(t) = self.node_tokens.lock().unwrap().get(host) {
            return t.clone();
        }
        let key = self.node_key(host).await;
        let token =
            ultracloud_iam::guard::TokenSource::new(vec![self.iam.clone()], key).unwrap().token().await.unwrap();
        self.node_tokens.lock().unwrap().insert(host.to_owned(), token.clone());
        token
    }

    /// The platform service account's token (what the controllers send each other).
    pub async fn platform_token(&self) -> String {
        ultracloud_iam::guard::TokenSource::new(vec![self.iam.clone()], self.platform_key.clone())
            .unwrap()
            .token()
            .await
            .unwrap()
    }

    /// A call to the controller: status and JSON body.
    pub async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.ctl)).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap_or(Value::Null))
    }
}
