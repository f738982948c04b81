//! The admin listener over real HTTP on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report in tests

use std::time::Duration;

use axum::Router;
use axum::routing::post;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use ultracloud_runtime::ServiceContext;
use ultracloud_runtime::data_dir::DataDir;
use ultracloud_runtime::error::{ApiJson, ErrorBody};

async fn start(dir: &tempfile::TempDir) -> (ServiceContext, std::net::SocketAddr) {
    let ctx =
        ServiceContext::with_parts("demo", DataDir::lock(dir.path().join("d")).unwrap(), CancellationToken::new());
    let admin = ctx.start_admin("127.0.0.1:0".parse().unwrap(), Router::new()).await.unwrap();
    (ctx, admin.local_addr)
}

#[tokio::test]
async fn health_version_and_unknown_routes() {
    let dir = tempfile::tempdir().unwrap();
    let (_ctx, addr) = start(&dir).await;
    let health: serde_json::Value = reqwest::get(format!("http://{addr}/healthz")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let version: serde_json::Value =
        reqwest::get(format!("http://{addr}/version")).await.unwrap().json().await.unwrap();
    assert_eq!(version["service"], "demo");
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    let missing = reqwest::get(format!("http://{addr}/nope")).await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: ErrorBody = missing.json().await.unwrap();
    assert_eq!(body.error.code, "not_found");
}

#[tokio::test]
async fn readiness_reflects_dependency_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, addr) = start(&dir).await;
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = up.clone();
    ctx.readiness.add("dependency:flaredb", move || {
        let ok = flag.load(std::sync::atomic::Ordering::SeqCst);
        async move { if ok { Ok(()) } else { Err("flaredb unreachable".to_owned()) } }
    });
    let resp = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(resp.status(), 503);
    let report: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(report["checks"][0]["name"], "dependency:flaredb");
    assert_eq!(report["checks"][0]["detail"], "flaredb unreachable");
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(reqwest::get(format!("http://{addr}/readyz")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn metrics_count_requests_by_route_in_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let (_ctx, addr) = start(&dir).await;
    for _ in 0..3 {
        reqwest::get(format!("http://{addr}/healthz")).await.unwrap();
    }
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("ultracloud_http_requests_total{") && l.contains("route=\"/healthz\""))
        .unwrap_or_else(|| panic!("no healthz counter in:\n{text}"));
    assert!(line.contains("service=\"demo\"") && line.contains("status=\"200\""), "{line}");
    assert!(line.ends_with(" 3"), "{line}");
    assert!(text.contains("ultracloud_http_request_duration_seconds_bucket{"), "{text}");
    assert!(text.trim_end().ends_with("# EOF"));
}

#[tokio::test]
async fn made_up_methods_share_one_label() {
    let dir = tempfile::tempdir().unwrap();
    let (_ctx, addr) = start(&dir).await;
    let client = reqwest::Client::new();
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("X{i}").as_bytes()).unwrap();
        client.request(method, format!("http://{addr}/healthz")).send().await.unwrap();
    }
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    let counters: Vec<&str> = text.lines().filter(|l| l.starts_with("ultracloud_http_requests_total{")).collect();
    assert!(counters.iter().all(|l| !l.contains("method=\"X")), "{text}");
    let other: u64 = counters
        .iter()
        .filter(|l| l.contains("method=\"other\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(other, 20, "{text}");
}

#[tokio::test]
async fn api_json_errors_name_the_problem() {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct CreateVm {
        name: String,
        memory_mib: u32,
    }
    async fn create(ApiJson(_vm): ApiJson<CreateVm>) -> &'static str {
        "ok"
    }
    let dir = tempfile::tempdir().unwrap();
    let ctx =
        ServiceContext::with_parts("demo", DataDir::lock(dir.path().join("d")).unwrap(), CancellationToken::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route("/v1/vms", post(create));
    let shutdown = ctx.shutdown.clone();
    let server = tokio::spawn(async move { ctx.serve_api(listener, router).await });

    let client = reqwest::Client::new();
    let post = |body: &'static str| {
        client.post(format!("http://{addr}/v1/vms")).header("content-type", "application/json").body(body).send()
    };
    let resp = post(r#"{"name":"a","memory_mib":"lots"}"#).await.unwrap();
    assert_eq!(resp.status(), 422);
    let body: ErrorBody = resp.json().await.unwrap();
    assert_eq!(body.error.code, "invalid_request");
    assert!(body.error.message.contains("memory_mib"), "{}", body.error.message);

    let resp = post(r#"{"name":"a","memory_mib":1,"colour":"red"}"#).await.unwrap();
    let body: ErrorBody = resp.json().await.unwrap();
    assert!(body.error.message.contains("colour"), "{}", body.error.message);

    let resp = post("{not json").await.unwrap();
    assert_eq!(resp.status(), 400);

    assert_eq!(post(r#"{"name":"a","memory_mib":1}"#).await.unwrap().text().await.unwrap(), "ok");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn admin_port_in_use_fails_naming_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let ctx =
        ServiceContext::with_parts("demo", DataDir::lock(dir.path().join("d")).unwrap(), CancellationToken::new());
    let err = ctx.start_admin(addr, Router::new()).await.unwrap_err();
    let msg = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(msg.contains(&addr.to_string()) && msg.contains("admin API"), "{msg}");
}
